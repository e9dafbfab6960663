"""
The server's state on a host (``service_snapshot``), and the one operation that decides its
unit: running, enabled, restarted when what it reads at start changed (its config, password,
unit, sandbox, the modules it loads) or when the packages it imports did (``restarts``),
under ``restart_policy``.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import operation

from .. import settings, sign_in, snapshot
from . import collaboration, layout, resource_usage, restarts
from .account import Account

# What the server reads at start (the proxy secret: as its systemd credential): a change to
# any of them needs a restart.
RESTART_PATHS = [
    layout.CONFIG_FILE,
    layout.LOGIN_HANDLER_FILE,
    layout.SIGN_IN_FILE,
    layout.ACTIVITY_FILE,
    layout.PASSWORD_FILE,
    layout.UNIT_FILE,
    layout.SANDBOX_DROPIN,
    sign_in.PROXY_SECRET,
]


def restart_pending(state: snapshot.Snapshot, unit: str, paths: list[str]) -> list[str]:
    """
    What the running server (``unit``) has not picked up yet, from the concern's snapshot:
    each of ``paths`` changed after its main process started (empty when it is not running). A run
    interrupted between writing a file and restarting leaves exactly this behind. (That
    systemd still has an old copy of a unit file calls for a daemon-reload, not a restart:
    ``snapshot.service`` does it.)
    """
    current = state.unit(unit)
    # systemd's own start time, to the microsecond: `ps -o lstart` is derived from the boot
    # time truncated to a second and can read up to a second early, which made a file
    # written just before a restart look newer than the process.
    return state.newer_than(paths, current.started) if current.main_pid > 0 and current.started else []


def service_snapshot(user: str, notebook_dir: str, prefix: str) -> snapshot.Snapshot:
    """The server's host state: its paths, its unit, its account, what is in its prefix."""
    return snapshot.Snapshot(
        paths=[
            notebook_dir,
            settings.home_of(user),
            layout.CONFIG_DIR,
            layout.MIGRATED_MARKER,
            layout.CONFIG_FILE,
            layout.LOGIN_HANDLER_FILE,
            layout.SIGN_IN_FILE,
            layout.ACTIVITY_FILE,
            layout.KERNEL_DIR,
            layout.USER_KERNELS,
            f"{layout.USER_KERNELS}/kernels",
            layout.KERNEL_SPEC,
            layout.GUARD_FILE,
            layout.CELL_CHECK,
            layout.CELL_CHECK_CLIENT,
            layout.UNIT_FILE,
            layout.SANDBOX_DROPIN,
            layout.LIMITS_DROPIN,
            layout.OWED,
            layout.MEMORY_MAX_FILE,
            resource_usage.overrides_path(prefix),
        ],
        secret_paths=[layout.PASSWORD_FILE, sign_in.PROXY_SECRET],
        units=[layout.UNIT, layout.RESTART_TIMER],
        probes={
            "account": Account(user),
            "resource_usage": resource_usage.probe(prefix),
            "collaboration": collaboration.probe(prefix),
        },
    )


def running(
    state: snapshot.Snapshot,
    updates: snapshot.Snapshot,
    policy: str,
    hours: float,
    restart_for: list,
    reload_for: list,
):
    """
    The server running and enabled; systemd's units reloaded for ``reload_for`` (operations
    that wrote a unit); restarted (``restarts.restart_commands``, under ``policy``) for
    ``restart_for`` (operations that wrote what it reads at start), for what an interrupted
    run left unapplied, and for a change to its own packages (``updates``, read when this runs:
    after every install). A restart already deferred is not owed a second time.
    """

    def waiting() -> bool:
        return policy != "now" and restarts.deferred(state)

    def owed() -> list[str]:
        if waiting():
            return []
        return restart_pending(state, layout.UNIT, RESTART_PATHS) + restarts.server_updates(updates)

    return snapshot.service(
        name="Jupyter running with its current config and packages",
        service=layout.UNIT,
        daemon_reload=snapshot.Changes(*reload_for),
        restarted=snapshot.Changes(*restart_for, owed=owed),
        restart_commands=restarts.restart_commands(policy, hours, updates=lambda: restarts.server_updates(updates)),
        note=lambda: "its restart waits until nothing is busy" if waiting() else None,
        state=state,
    )


@operation()
def notebooks_kept(state: snapshot.Snapshot, notebook_dir: str):
    """
    Says, when the single server still runs, that it stops and where its notebooks stay.

    + state: the server's snapshot (before the server is stopped)
    + notebook_dir: where they are
    """
    if state.unit(layout.UNIT).active in ("active", "activating", "reloading"):
        logger.warning(
            f"{host.name}: per_person_servers is on: the single server stops; its notebooks stay in "
            f"{notebook_dir} (per_person_servers = False serves them again)"
        )
    host.noop(f"the single server's notebooks stay in {notebook_dir}")
    return
    yield


def set_aside(state: snapshot.Snapshot, notebook_dir: str):
    """The single server stopped and disabled, its files and notebooks kept (per_person_servers:
    the hub serves the base URL)."""
    notebooks_kept(name="The single server's notebooks kept", state=state, notebook_dir=notebook_dir)
    return snapshot.service(
        name="The single server stopped (per_person_servers: each person has their own)",
        service=layout.UNIT,
        running=False,
        enabled=False,
        state=state,
    )
