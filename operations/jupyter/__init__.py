"""
Jupyter Notebook as a systemd service, listening on loopback for Apache: the server concern,
one module per job.

- ``layout``: every path and unit of the server;
- ``account``: the notebook account (and the host check that refuses one not the deploy's);
- ``server``: its config and kernel spec; ``unit``: its unit, sandbox and limits;
- ``restarts``: restarts that wait until nothing is busy, and what the server says it runs;
- ``resource_usage``: the UI's memory display; ``collaboration``: real-time collaboration;
- ``service``: its state on a host and the one operation that decides its unit.

The server runs as an unprivileged system user with no login shell, reads its configuration
from ``/etc/jupyter`` (root-owned: the notebook user can read but not change it) and is
restarted only when what it reads at start, or the packages it imports, changed.
``install_jupyter`` is the concern's packaged deploy; ``install_restarts`` (the restart
machinery) runs before anything restarts the server, the conda switch included. The names
below are what other concerns use.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from .. import settings, snapshot
from . import collaboration, layout, resource_usage, restarts, service
from .account import (
    ACCOUNT_COMMENT,
    NOLOGIN,
    Account,
    AccountOrigin,
    account,
    check_account,
    install_account,
    made_by_deploy,
)
from .layout import (
    CELL_CHECK,
    CELL_CHECK_CLIENT,
    CONFIG_DIR,
    CONFIG_FILE,
    GUARD_DIR,
    GUARD_FILE,
    KERNEL_SPEC,
    LIMITS_DROPIN,
    LOGIN_HANDLER_FILE,
    PASSWORD_FILE,
    SANDBOX_DROPIN,
    UNIT,
    UNIT_FILE,
)
from .restarts import install_restarts
from .server import cull_interval, install_server_files, install_tools, kernel_spec, server_config, ws_ping_interval_ms
from .service import RESTART_PATHS, restart_pending, service_snapshot
from .unit import (
    METADATA_ADDRESSES,
    OOM_SCORE_ADJUST,
    TASKS_MAX,
    apply_limits,
    cpu_quota,
    install_unit,
    limits_dropin,
    limits_values,
    memory_limits,
    sandbox_dropin,
    unit_file,
)

__all__ = [
    "ACCOUNT_COMMENT",
    "CELL_CHECK",
    "CELL_CHECK_CLIENT",
    "CONFIG_DIR",
    "CONFIG_FILE",
    "GUARD_DIR",
    "GUARD_FILE",
    "KERNEL_SPEC",
    "LIMITS_DROPIN",
    "LOGIN_HANDLER_FILE",
    "METADATA_ADDRESSES",
    "NOLOGIN",
    "OOM_SCORE_ADJUST",
    "PASSWORD_FILE",
    "RESTART_PATHS",
    "SANDBOX_DROPIN",
    "TASKS_MAX",
    "UNIT",
    "UNIT_FILE",
    "Account",
    "AccountOrigin",
    "account",
    "check_account",
    "cpu_quota",
    "cull_interval",
    "install_jupyter",
    "install_restarts",
    "kernel_spec",
    "limits_dropin",
    "limits_values",
    "made_by_deploy",
    "memory_limits",
    "restart_pending",
    "sandbox_dropin",
    "server_config",
    "service_snapshot",
    "unit_file",
    "ws_ping_interval_ms",
]


@deploy(
    "Jupyter Notebook service",
    data_defaults=settings.defaults(
        "server_name",
        "jupyter_base_url",
        "jupyter_port",
        "jupyter_user",
        "notebook_dir",
        "jupyter_password_hash",
        "jupyter_terminals",
        "conda_prefix",
        "memory_limit",
        "cpu_limit",
        "cull_idle_kernels_after",
        "apache_proxy_timeout",
        "max_request_size",
        "restart_policy",
        "restart_deadline",
        "auth",
        "collaboration",
        "per_person_servers",
    ),
)
def install_jupyter():
    """The account, the server's files and unit, its memory display and collaboration, and the
    server running with all of them (restarted only on change). One snapshot: each step
    decides from the host as the run found it."""
    user = host.data.jupyter_user
    notebook_dir = host.data.notebook_dir
    prefix = host.data.conda_prefix
    home = settings.home_of(user)
    # An existing account that the deploy did not make was refused by host_checks, first.
    state = service_snapshot(user, notebook_dir, prefix)
    if host.data.per_person_servers:
        # The hub serves the base URL (operations/hub/); everything of the single server is
        # kept as it is, so switching back serves it again with its notebooks.
        service.set_aside(state, notebook_dir)
        return
    install_account(state, user, notebook_dir, home)
    read_at_start = install_server_files(state, host.data, settings.server_name(host), user, prefix, home)
    install_tools(state)
    unit, sandbox, limits = install_unit(state, host.data, user, prefix, notebook_dir)
    display = resource_usage.installed(
        name="Memory display for the notebook UI (jupyter-resource-usage)", prefix=prefix, state=state
    )
    collaborating = collaboration.installed(
        name="Real-time collaboration (jupyter-collaboration)"
        if host.data.collaboration
        else "No real-time collaboration",
        prefix=prefix,
        wanted=host.data.collaboration,
        state=state,
    )
    resource_usage.display_on(
        name="The memory display on by default (the prefix's JupyterLab overrides.json)", prefix=prefix, state=state
    )
    apply_limits(host.data, limits)
    # Restarted for what the server reads at start (also when an interrupted earlier run wrote
    # it and never restarted: the snapshot says so) and for a change to the packages it imports
    # (the fleet's, installed before this concern, and those above); a stopped server starts
    # with them. A restart ends every kernel: with restart_policy 'when-idle' it waits until
    # nothing is busy (restarts.py), and a restart already deferred is not owed a second time.
    service.running(
        state,
        restarts.updates_snapshot(prefix),
        host.data.restart_policy,
        host.data.restart_deadline,
        restart_for=[*read_at_start, unit, sandbox, display, collaborating],
        reload_for=[unit, sandbox, limits],
    )
    resource_usage.memory_limit_file(
        name="Memory limit the notebook UI shows (the unit's MemoryMax)",
        unit=layout.UNIT,
        state=state,
        changed=snapshot.Changes(limits),
    )
