"""
Jupyter's restarts: a restart ends every kernel, so it waits until nothing is busy.

With ``restart_policy = 'when-idle'`` (the default) a restart the run owes Jupyter goes
through ``files/jupyter-restart-when-idle``: done at once when no kernel is executing and no
terminal is running a command (the server says so on loopback: ``files/jupyter_activity.py``),
else deferred, with one line in the run's output, to a root-owned timer that restarts once
nothing has been busy for a minute, or at ``restart_deadline`` hours whatever happens. A later
run sees the owed restart and owes no second one. ``'now'`` restarts in the run.

What this module offers the Jupyter concern: the paths and units to put in its snapshot, the
files to install (``install``), the commands its service operation runs instead of
``systemctl restart`` (``restart_commands``), and whether a restart is already deferred.
"""

from __future__ import annotations

import re
import shlex

from pyinfra import host
from pyinfra.api import FunctionCommand, StringCommand, deploy, operation

from . import records, settings, snapshot, system
from .render import FILES

SCRIPT = "/usr/local/lib/jupyter-deploy/jupyter-restart-when-idle"
UNIT = "jupyter-restart-when-idle"
SERVICE_FILE = f"/etc/systemd/system/{UNIT}.service"
TIMER_FILE = f"/etc/systemd/system/{UNIT}.timer"
TIMER = f"{UNIT}.timer"
# Root's (in records.STATE_DIR, written 0600): the owed restart, the line for the run's output.
OWED = f"{records.STATE_DIR}/restart-owed"
REPORT = f"{records.STATE_DIR}/restart-report"
# files/jupyter_activity.py, loaded by the server as an extension from its config dir (the
# Jupyter concern installs it there), and run as a script for the installed versions.
ACTIVITY_MODULE = "jupyter_activity"
ACTIVITY_FILE = f"/etc/jupyter/{ACTIVITY_MODULE}.py"
ACTIVITY_PATH = "/jupyter-deploy/activity"
JUPYTER_UNIT = "jupyter.service"

PATHS = [SCRIPT, SERVICE_FILE, TIMER_FILE, OWED]
UNITS = [TIMER]


def packages(data) -> list[str]:
    """The script finds the server's port (ss) and asks it over HTTP (curl)."""
    return ["curl", "iproute2"]


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
        script, activity = q(SCRIPT), q(ACTIVITY_FILE)
        return f"test -x {script} && test -f {activity} && {script} versions {q(self.prefix)} {activity}"

    def parse(self, lines):
        found: dict[str, dict[str, str]] = {"running": {}, "installed": {}}
        for line in lines:
            words = line.split()
            if len(words) == 3 and words[0] in found and _NAME.fullmatch(words[1]) and _VERSION.fullmatch(words[2]):
                found[words[0]][words[1]] = words[2]
        return found


def server_updates(state: snapshot.Snapshot) -> list[str]:
    """Each of the server's packages whose installed version is not the one the running server
    loaded, as "name old -> new" (empty when either side cannot be read: a server that is not
    running, or predates the extension, reads its packages when it starts)."""
    versions = state.probe("versions")
    running, installed = versions["running"], versions["installed"]
    if not running or not installed:
        return []
    return [
        f"{name} {running.get(name, '(none)')} -> {installed.get(name, '(removed)')}"
        for name in sorted(running.keys() | installed.keys())
        if running.get(name) != installed.get(name)
    ]


def deferred(state: snapshot.Snapshot, unit: str) -> bool:
    """A restart of the running ``unit`` is deferred and its timer waits: nothing more to owe."""
    current = state.unit(unit)
    return bool(
        current.main_pid > 0
        and state.newer_than([OWED], current.started)
        and state.unit(TIMER).active in ("active", "activating")
    )


def restart_commands(policy: str, hours: float, updates=None) -> list:
    """What Jupyter's service operation runs for a restart, then shows the line it wrote.
    ``updates``: a function returning the server's changed packages, said first."""

    def say_updates():
        for update in updates() if updates else []:
            host.log(f"Jupyter server update: {update}")

    commands: list = [FunctionCommand(say_updates, (), {})] if updates else []
    if policy == "now":
        command = StringCommand(SCRIPT, "now", shlex.quote(REPORT))
    else:
        command = StringCommand(SCRIPT, "request", shlex.quote(str(hours)), shlex.quote(REPORT))
    return [*commands, command, system.shown_report(REPORT)]


def install(state: snapshot.Snapshot):
    """The script and its units (the timer is started by the script only); returns the
    operations whose change calls for a daemon-reload."""
    snapshot.script(name="Deferred restart script", dest=SCRIPT, src=FILES / UNIT, state=state)
    system_file = {"user": "root", "group": "root", "mode": "644", "state": state, "create_remote_dir": True}
    service = snapshot.put(
        name="Deferred restart service",
        src=FILES / f"{UNIT}.service",
        dest=SERVICE_FILE,
        **system_file,
    )
    timer = snapshot.put(name="Deferred restart timer", src=FILES / f"{UNIT}.timer", dest=TIMER_FILE, **system_file)
    return service, timer


def updates_snapshot(prefix: str) -> snapshot.Snapshot:
    """What the server-updates step reads, after the packages are in: the server's packages
    installed and running, whether Jupyter runs and a restart is already owed."""
    return snapshot.Snapshot(paths=[OWED], units=[JUPYTER_UNIT, TIMER], probes={"versions": ServerVersions(prefix)})


@operation()
def server_updates_applied(policy: str, hours: float, state: snapshot.Snapshot):
    """
    Jupyter restarted (under ``policy``) when a package it imports changed since it started.

    + policy: ``restart_policy``; 'when-idle' waits until nothing is busy
    + hours: ``restart_deadline``
    + state: ``updates_snapshot``
    """
    updates = server_updates(state)
    if not updates or state.unit(JUPYTER_UNIT).main_pid <= 0:
        host.noop("Jupyter runs the server packages that are installed")
        return
    if policy != "now" and deferred(state, JUPYTER_UNIT):
        host.noop(f"Jupyter's restart for {', '.join(updates)} waits until nothing is busy")
        return
    yield from restart_commands(policy, hours, updates=lambda: updates)


@deploy(
    "Jupyter server updates",
    data_defaults=settings.defaults("conda_prefix", "restart_policy", "restart_deadline"),
)
def restart_for_server_updates():
    """After every package is in (the distribution, the fleet's packages): a change to the
    server's own packages takes effect, with a restart under the policy."""
    server_updates_applied(
        name="Jupyter runs its installed server packages (restart when idle)",
        policy=host.data.restart_policy,
        hours=host.data.restart_deadline,
        state=updates_snapshot(host.data.conda_prefix),
    )
