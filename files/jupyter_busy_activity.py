# Managed by pyinfra (jupyter-apache-deploy): local edits are overwritten on the next run.
"""
A person's server tells the hub it is in use while a kernel is busy or a terminal runs a
command (a server extension, per_person_servers).

JupyterHub's idle culler stops a server whose last activity is older than
``cull_idle_servers_after``. A server reports activity from messages: a cell that computes for
hours and prints nothing sends none, and would look idle. Every ``INTERVAL`` seconds this marks
the server active while anything is busy (counted as jupyter_activity.py counts it for the
single server's restarts), so only a server with nothing running is ever culled. The
interval is the one the server reports to the hub at (``JUPYTERHUB_ACTIVITY_INTERVAL``, which
the deploy sets from ``cull_idle_servers_after``).
"""

import os
from datetime import UTC, datetime

from jupyter_activity import child_processes
from tornado.ioloop import PeriodicCallback

INTERVAL = int(os.environ.get("JUPYTERHUB_ACTIVITY_INTERVAL") or 300)
KEY = "jupyter-deploy-busy"


def busy(serverapp) -> bool:
    if any(kernel.get("execution_state") == "busy" for kernel in serverapp.kernel_manager.list_kernels()):
        return True
    terminals = getattr(serverapp.web_app.settings.get("terminal_manager"), "terminals", {}) or {}
    return any(
        (pid := getattr(getattr(terminal, "ptyproc", None), "pid", None)) and child_processes(pid)
        for terminal in list(terminals.values())
    )


def _jupyter_server_extension_points():
    return [{"module": "jupyter_busy_activity"}]


def _load_jupyter_server_extension(serverapp):
    def mark():
        if busy(serverapp):
            serverapp.web_app.settings.setdefault("last_activity_times", {})[KEY] = datetime.now(UTC)

    PeriodicCallback(mark, INTERVAL * 1000).start()
