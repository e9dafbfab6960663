"""
The notebook UI's memory display: what Jupyter and its kernels use against ``memory_limit``.

jupyter-resource-usage (pinned) is installed into the prefix when it is missing; the server
loads it from the prefix's own config (``jupyter_server_config.d``). The limit it shows is
read, at each of its requests, from ``layout.MEMORY_MAX_FILE``, which root writes from the unit's
``MemoryMax`` (``systemctl show``) whenever the limits change (and when the file is missing):
a researcher sees the limit the OOM killer enforces, and a new limit shows without a restart. No limit
(``memory_limit = None``: ``infinity``) shows none.

Used by the Jupyter concern (``operations/jupyter/``), which owns the unit and its limits.
"""

from __future__ import annotations

import hashlib
import json
import shlex

from pyinfra import host, logger
from pyinfra.api import StringCommand, operation

from .. import environment, snapshot
from . import layout

PACKAGE = "jupyter-resource-usage"
VERSION = "1.3.0"

# Notebook 7 has no status bar: the display is a top-bar item, off unless a setting turns it
# on. The server's default settings for every user come from the app settings dir's
# overrides.json (in the root-owned prefix; a user's own settings still win).
SETTING = "@jupyter-server/resource-usage:topbar-item"
OVERRIDES = json.dumps({SETTING: {"enable": True}}, indent=2) + "\n"


def overrides_path(prefix: str) -> str:
    return f"{prefix}/share/jupyter/lab/settings/overrides.json"


def probe(prefix: str) -> snapshot.Probe:
    """For the Jupyter concern's snapshot: the package's directory in the prefix, if any."""
    return snapshot.Lines(f"ls -d {shlex.quote(prefix)}/lib/python3*/site-packages/jupyter_resource_usage")


@operation()
def installed(prefix: str, state: snapshot.Snapshot):
    """
    jupyter-resource-usage in the prefix (any version already there is kept).

    + prefix: the conda prefix; its own pip installs the package
    + state: the Jupyter concern's snapshot, with ``probe`` as ``resource_usage``
    """
    if state.probe("resource_usage"):
        host.noop(f"{PACKAGE} is installed in {prefix}")
        return
    yield StringCommand(environment.pip_install(prefix), shlex.quote(f"{PACKAGE}=={VERSION}"))


@operation()
def memory_limit_file(unit: str, state: snapshot.Snapshot, changed):
    """
    ``layout.MEMORY_MAX_FILE`` holds the unit's ``MemoryMax`` (in bytes, or ``infinity``).

    + unit: the systemd unit whose limit is shown
    + state: the Jupyter concern's snapshot (with ``layout.MEMORY_MAX_FILE`` among its paths)
    + changed: a ``snapshot.Changes`` of the operations that set the unit's limits
    """
    if state.path(layout.MEMORY_MAX_FILE).kind == "file" and not changed():
        host.noop(f"{layout.MEMORY_MAX_FILE} holds the unit's MemoryMax")
        return
    q = shlex.quote
    path = q(layout.MEMORY_MAX_FILE)
    yield StringCommand(
        f"systemctl show -p MemoryMax --value {q(unit)} > {path}.new && chmod 644 {path}.new && mv {path}.new {path}"
    )


@operation()
def display_on(prefix: str, state: snapshot.Snapshot):
    """
    The display shown by default (``overrides.json`` in the prefix's app settings dir).

    + prefix: the conda prefix
    + state: the Jupyter concern's snapshot (with ``overrides_path(prefix)`` among its paths)

    An ``overrides.json`` the deploy did not write is left alone, with a warning saying what
    to add to it.
    """
    path = overrides_path(prefix)
    current = state.path(path)
    data = OVERRIDES.encode()
    if current.kind == "file" and current.detail == hashlib.sha256(data).hexdigest():
        host.noop(f"{path} turns the memory display on")
        return
    if current.kind is not None:
        logger.warning(
            f"{host.name}: {path} is not the deploy's: the memory display stays off unless it holds "
            f'"{SETTING}": {{"enable": true}}'
        )
        host.noop(f"{path} left as it is")
        return
    yield from snapshot.staged_upload(data, path, "root", "root", "644", create_remote_dir=True)
