"""
Jupyter's restarts: a restart ends every kernel, so it waits until nothing is busy.

With ``restart_policy = 'when-idle'`` (the default) a restart the run owes Jupyter goes
through ``files/jupyter-restart-when-idle``: done at once when no kernel is executing and no
terminal is running a command (the server says so on loopback: ``files/jupyter_activity.py``),
else deferred, with one line in the run's output, to a root-owned timer that restarts once
nothing has been busy for a minute, or at ``restart_deadline`` hours whatever happens. A later
run sees the owed restart and owes no second one. ``'now'`` restarts in the run. The script
makes that choice, for the deploy and for ``files/conda-switch`` alike (``restart POLICY``).

What this module offers: its packaged deploy (``install_restarts``: the script and its units,
run before anything restarts Jupyter), the script's command line with the paths it works on
(``script_command``, also for ``files/conda-switch``), the commands the server's service
operation runs instead of ``systemctl restart`` (``restart_commands``), whether a restart is
already deferred, and what the running server says it runs (``ServerVersions``,
``server_updates``).
"""

from __future__ import annotations

import re
import shlex

from pyinfra import host
from pyinfra.api import FunctionCommand, StringCommand, deploy

from .. import snapshot, system
from ..render import FILES, render
from . import layout


def packages(data) -> list[str]:
    """The script finds the server's port (ss) and asks it over HTTP (curl)."""
    return ["curl", "iproute2"]


def script_command() -> str:
    """``files/jupyter-restart-when-idle`` with the paths it works on, ready for a subcommand."""
    options = {
        "--unit": layout.UNIT,
        "--timer": layout.RESTART_TIMER,
        "--owed": layout.OWED,
        "--activity-path": layout.ACTIVITY_PATH,
    }
    return system.script_line(layout.RESTART_SCRIPT, options)


# What a distribution's name and version may look like; anything else from the server (whose
# answers the notebook user can shape) is dropped, never printed in the run's output.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}")


class ServerVersions(snapshot.Probe):
    """
    The server's packages as the running server loaded them (it says so on loopback) and as
    installed in ``prefix`` now (root runs the root-owned prefix's Python, isolated, on the
    root-owned file): ``{"running": {name: version}, "installed": {...}}``, both read only when
    the prefix's site-packages changed since the server started (else both empty: a no-op
    run's cost stays one stat).
    """

    def __init__(self, prefix: str):
        self.prefix = prefix

    def command(self):
        q = shlex.quote
        script, activity = q(layout.RESTART_SCRIPT), q(layout.ACTIVITY_FILE)
        return f"test -x {script} && test -f {activity} && {script_command()} versions {q(self.prefix)} {activity}"

    def parse(self, lines):
        return parse_versions(lines)


def parse_versions(lines) -> dict[str, dict[str, str]]:
    """The restart script's ``versions`` lines ("running NAME VERSION", "installed NAME
    VERSION"), keeping only names and versions that look like one."""
    found: dict[str, dict[str, str]] = {"running": {}, "installed": {}}
    for line in lines:
        words = line.split()
        if len(words) == 3 and words[0] in found and _NAME.fullmatch(words[1]) and _VERSION.fullmatch(words[2]):
            found[words[0]][words[1]] = words[2]
    return found


def version_changes(versions: dict[str, dict[str, str]]) -> list[str]:
    """Each package whose installed version is not the one the running server loaded, as
    "name old -> new" (empty when either side cannot be read: a server that is not running,
    or predates the extension, reads its packages when it starts). For the single server and
    each person's server alike."""
    running, installed = versions["running"], versions["installed"]
    if not running or not installed:
        return []
    return [
        f"{name} {running.get(name, '(none)')} -> {installed.get(name, '(removed)')}"
        for name in sorted(running.keys() | installed.keys())
        if running.get(name) != installed.get(name)
    ]


def server_updates(state: snapshot.Snapshot) -> list[str]:
    """The single server's ``version_changes``."""
    return version_changes(state.probe("versions"))


def deferred(state: snapshot.Snapshot) -> bool:
    """A restart of the running server is deferred and its timer waits: nothing more to owe."""
    current = state.unit(layout.UNIT)
    return bool(
        current.main_pid > 0
        and state.newer_than([layout.OWED], current.started)
        and state.unit(layout.RESTART_TIMER).active in ("active", "activating")
    )


def restart_commands(policy: str, hours: float, updates=None) -> list:
    """What the server's service operation runs for a restart under ``policy``, then shows the
    line the script wrote. ``updates``: a function returning the server's changed packages,
    said first."""

    def say_updates():
        for update in updates() if updates else []:
            host.log(f"Jupyter server update: {update}")

    q = shlex.quote
    commands: list = [FunctionCommand(say_updates, (), {})] if updates else []
    command = StringCommand(f"{script_command()} restart {q(policy)} {q(str(hours))} {q(layout.REPORT)}")
    return [*commands, command, system.shown_report(layout.REPORT)]


@deploy("Restarts that wait until nothing is busy")
def install_restarts():
    """
    The script and its units, before anything of the run restarts Jupyter (``files/conda-switch``
    restarts it through the script); systemd reloaded when a unit changed. The timer is started
    by the script only.
    """
    state = snapshot.Snapshot(paths=[layout.RESTART_SCRIPT, layout.RESTART_SERVICE_FILE, layout.RESTART_TIMER_FILE])
    snapshot.script(
        name="Deferred restart script", dest=layout.RESTART_SCRIPT, src=FILES / layout.RESTART_NAME, state=state
    )
    system_file = {"user": "root", "group": "root", "mode": "644", "state": state, "create_remote_dir": True}
    service = snapshot.put(
        name="Deferred restart service",
        src=snapshot.text(render("jupyter-restart-when-idle.service.j2", unit=layout.UNIT, command=script_command())),
        dest=layout.RESTART_SERVICE_FILE,
        **system_file,
    )
    timer = snapshot.put(
        name="Deferred restart timer",
        src=FILES / layout.RESTART_TIMER,
        dest=layout.RESTART_TIMER_FILE,
        **system_file,
    )
    snapshot.shell(
        name="Reload systemd's units (the restart timer's changed)",
        commands=["systemctl daemon-reload"],
        when=snapshot.Changes(service, timer),
    )


def updates_snapshot(prefix: str) -> snapshot.Snapshot:
    """What the server's restart asks once the packages are in: the server's packages installed
    and running (read when the service operation runs, after every install of the run)."""
    return snapshot.Snapshot(units=[layout.UNIT], probes={"versions": ServerVersions(prefix)})
