"""
People's servers restarted for what a deploy changed in them, each when nothing of that
person's is busy (``restart_policy``, ``restart_deadline``): the single server's choice
(``files/jupyter-restart-when-idle``), made for each person's server on its own by
``files/jupyterhub-restart-people``, which the hub's restart (``jupyterhub-restart-server``)
carries out. A server started after the change starts with it; a restart of the hub alone
(its own config) touches no person's server.

Owed to a running server: what it reads at start changed since it started (``INPUTS``: its
settings, the modules it loads, what the hub starts it with), or a package it imports from
``conda_prefix`` did (``pip_packages``, ``conda_packages``, the memory display). A run says per
host which servers restart now and which wait, and for what; a rerun owes a waiting server
nothing more.
"""

from __future__ import annotations

import re
import shlex

from pyinfra import host
from pyinfra.api import FunctionCommand, StringCommand, deploy, operation

from .. import settings, snapshot, system
from ..jupyter import layout as server_layout
from ..jupyter import restarts as server_restarts
from ..render import FILES, render
from . import layout

# What people's servers read at start (a change to any owes each running one a restart).
INPUTS = (
    layout.SPAWN_FILE,
    layout.SERVER_CONFIG,
    layout.SERVER_EXTENSIONS_CONFIG,
    layout.SERVER_EXTENSION_FILE,
    layout.SERVER_ACTIVITY_FILE,
)

_UNIT = re.compile(rf"{re.escape(layout.SERVER_UNIT_PREFIX)}([a-z0-9][a-z0-9-]{{0,62}})\.service")
# The inputs as the script names them when they changed (their file names).
_INPUT_NAMES = {path.rsplit("/", 1)[-1] for path in INPUTS}


def script_command() -> str:
    """``files/jupyterhub-restart-people`` with the paths and units it works on."""
    options = {
        "--slice": layout.SLICE,
        "--unit-prefix": layout.SERVER_UNIT_PREFIX,
        "--restart-script": server_layout.RESTART_SCRIPT,
        "--restart-command": layout.RESTART_SERVER_SCRIPT,
        "--owed-dir": layout.OWED_DIR,
        "--timer-prefix": layout.RESTART_UNIT_PREFIX,
        "--activity-path": server_layout.ACTIVITY_PATH,
    }
    return system.script_line(layout.RESTART_PEOPLE_SCRIPT, options)


class PeopleOwed(snapshot.Probe):
    """What each running person's server is owed: ``{"owed": {unit: why}, "waits": [unit]}``
    (read after the run's installs: see ``owed_snapshot``). Its packages are compared as the
    single server's are (``jupyter.restarts.version_changes``)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def command(self):
        q = shlex.quote
        script = q(layout.RESTART_PEOPLE_SCRIPT)
        inputs = " ".join(q(path) for path in INPUTS)
        return (
            f"if test -x {script} && test -x {q(server_layout.RESTART_SCRIPT)}; then "
            f"{script_command()} owed {q(self.prefix)} {q(layout.SERVER_ACTIVITY_FILE)} {inputs}; fi"
        )

    def parse(self, lines):
        waits: list[str] = []
        changed: dict[str, list[str]] = {}
        versions: dict[str, list[str]] = {}
        for line in lines:
            unit, _, rest = line.partition(" ")
            if not _UNIT.fullmatch(unit):
                continue
            kind, _, what = rest.partition(" ")
            if kind == "waits":
                waits.append(unit)
            elif kind == "changed" and what in _INPUT_NAMES:
                changed.setdefault(unit, []).append(f"{what} changed")
            else:
                versions.setdefault(unit, []).append(rest)
        owed = {}
        for unit in dict.fromkeys([*changed, *versions]):
            why = changed.get(unit, []) + server_restarts.version_changes(
                server_restarts.parse_versions(versions.get(unit, []))
            )
            if why:
                owed[unit] = ", ".join(why)
        return {"owed": owed, "waits": waits}


def owed_snapshot(prefix: str) -> snapshot.Snapshot:
    """People's servers and what they are owed, read when the restarts' operation runs (after
    every install and the hub's restart of the run)."""
    return snapshot.Snapshot(probes={"people": PeopleOwed(prefix)})


def person(unit: str) -> str:
    return _UNIT.fullmatch(unit).group(1)


@operation()
def people_restarted(state: snapshot.Snapshot, policy: str, hours: float):
    """
    Each running person's server that is owed a restart restarted through the hub, now or
    (``restart_policy = 'when-idle'``) once nothing of theirs is busy.

    + state: ``owed_snapshot``
    + policy: ``restart_policy``
    + hours: ``restart_deadline``
    """
    found = state.probe("people")
    owed, waits = found["owed"], found["waits"]
    if not owed:
        said = "every person's server runs with its current settings and packages"
        if waits:
            said += f"; {len(waits)} restart(s) wait until nothing is busy: {', '.join(map(person, waits))}"
        host.noop(said)
        return

    def say():
        for unit, why in owed.items():
            host.log(f"{person(unit)}'s server owes a restart: {why}")

    q = shlex.quote
    yield FunctionCommand(say, (), {})
    yield StringCommand(
        f"{script_command()} restart {q(policy)} {q(str(hours))} {q(layout.RESTART_REPORT)}",
        *(q(unit) for unit in owed),
    )
    yield system.shown_report(layout.RESTART_REPORT)


@deploy(
    "Restarts of people's servers that wait until nothing of theirs is busy",
    data_defaults=settings.defaults("per_person_servers", "jupyter_base_url"),
)
def install_restarts():
    """
    The scripts and the per-person timer unit (a template), before anything of the run restarts
    people's servers (``files/conda-switch`` does, through them, before the hub's own part of
    the run); systemd reloaded when a unit changed. Nothing without ``per_person_servers``.
    """
    if not host.data.per_person_servers:
        return
    state = snapshot.Snapshot(
        paths=[
            layout.RESTART_PEOPLE_SCRIPT,
            layout.RESTART_SERVER_SCRIPT,
            layout.RESTART_SERVICE_FILE,
            layout.RESTART_TIMER_FILE,
        ]
    )
    root_file = {"user": "root", "group": "root", "state": state}
    snapshot.script(
        name="Restarts of people's servers (script)",
        dest=layout.RESTART_PEOPLE_SCRIPT,
        src=FILES / "jupyterhub-restart-people",
        state=state,
    )
    snapshot.put(
        name="A person's server restarted through the hub (script)",
        src=snapshot.text(
            render(
                "jupyterhub-restart-server.j2",
                hub_api=f"http://127.0.0.1:{layout.HUB_PORT}{host.data.jupyter_base_url}hub/api",
                token_file=layout.RESTART_TOKEN,
                unit_pattern=_UNIT.pattern,
                start_seconds=layout.START_SECONDS,
            )
        ),
        dest=layout.RESTART_SERVER_SCRIPT,
        mode="755",
        **root_file,
    )
    unit_file = {**root_file, "mode": "644", "create_remote_dir": True}
    service = snapshot.put(
        name="A person's deferred restart (service)",
        src=snapshot.text(render("jupyterhub-restart@.service.j2", hub_unit=layout.HUB_UNIT, command=script_command())),
        dest=layout.RESTART_SERVICE_FILE,
        **unit_file,
    )
    timer = snapshot.put(
        name="A person's deferred restart (timer)",
        src=FILES / "jupyterhub-restart@.timer",
        dest=layout.RESTART_TIMER_FILE,
        **unit_file,
    )
    snapshot.shell(
        name="Reload systemd's units (a person's deferred restart changed)",
        commands=["systemctl daemon-reload"],
        when=snapshot.Changes(service, timer),
    )
