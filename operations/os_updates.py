"""
The system under Jupyter kept patched, and rebooted when it must be without cutting a
computation short.

``os_updates`` ('security' by default, 'all', or None): Debian's ``unattended-upgrades``
installs the security archive's updates (and with 'all' the stable updates too) every day,
from a file of this deploy's that takes precedence over the package's defaults. Services still
running a replaced library are restarted by ``needrestart`` (automatically, from its config
here), except Apache and Jupyter's own units: after each unattended run ``files/os-updates``
reloads Apache gracefully once its configtest passes, and Jupyter's servers owe a restart
under ``restart_policy`` (their restart scripts wait until nothing is busy, as for a deploy's
change). None takes back the files the deploy made and leaves the host's own update settings
as they are (the packages stay installed).

A reboot (Debian's ``/run/reboot-required``, set when a kernel is installed, or needrestart's
kernel status) happens inside ``reboot_window``, this host's minutes into it (from its name: a
fleet spreads over the window), once no kernel is busy and no terminal runs a command, or
past ``reboot_deadline`` days whatever runs; a timer asks every minute. With None it is only
reported. The run shows what the host owes; the smoke check's cell reads the same status.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import deploy, operation

from . import apache, layout, settings, snapshot, system
from .hub import layout as hub_layout
from .hub import restarts as hub_restarts
from .jupyter import layout as server_layout
from .jupyter import restarts as server_restarts
from .render import FILES, render
from .settings.checks import reboot_window

PACKAGES = ["unattended-upgrades", "needrestart"]
# Read after Debian's 50unattended-upgrades (and 20auto-upgrades): what it says wins.
APT_CONF = "/etc/apt/apt.conf.d/52jupyter-apache-deploy-upgrades"
NEEDRESTART_CONF = "/etc/needrestart/conf.d/jupyter-apache-deploy.conf"
# Debian's unit that runs unattended-upgrades (apt-daily-upgrade.timer starts it daily).
UPGRADE_UNIT = "apt-daily-upgrade.service"
UPGRADE_DROPIN = f"{layout.SYSTEMD_DIR}/{UPGRADE_UNIT}.d/jupyter-apache-deploy.conf"
UPGRADE_LOG = "/var/log/unattended-upgrades/unattended-upgrades.log"
SCRIPT_NAME = "os-updates"
SCRIPT = f"{layout.LIB}/{SCRIPT_NAME}"
REBOOT_NAME = "jupyter-reboot-when-idle"
REBOOT_SERVICE = f"{REBOOT_NAME}.service"
REBOOT_TIMER = f"{REBOOT_NAME}.timer"
REBOOT_SERVICE_FILE = f"{layout.SYSTEMD_DIR}/{REBOOT_SERVICE}"
REBOOT_TIMER_FILE = f"{layout.SYSTEMD_DIR}/{REBOOT_TIMER}"
# Debian's flag (a tmpfs: a reboot clears it).
REBOOT_REQUIRED = "/run/reboot-required"
# Root's: since when a reboot is owed; the services running replaced libraries; what a
# restart for them said.
SINCE_FILE = f"{layout.STATE_DIR}/reboot-needed-since"
STALE_FILE = f"{layout.STATE_DIR}/os-updates-stale"
RESTART_REPORT = f"{layout.STATE_DIR}/os-updates-restart-report"
# Read by the smoke check's cell (as the notebook user): numbers and words only.
STATUS_DIR = "/var/lib/jupyter-os-updates"
STATUS_FILE = f"{STATUS_DIR}/status"
# What uninstall.py removes (the packages stay, as every package the deploy installed does).
INSTALLED = [
    APT_CONF,
    NEEDRESTART_CONF,
    UPGRADE_DROPIN,
    SCRIPT,
    REBOOT_SERVICE_FILE,
    REBOOT_TIMER_FILE,
    STATUS_DIR,
]


def packages(data) -> list[str]:
    """What the concern installs (through ``system.install_packages``)."""
    return PACKAGES if data.get("os_updates", settings.DEFAULTS["os_updates"]) else []


def debconf(data) -> list[str]:
    """Installed by the deploy, unattended-upgrades does not switch on Debian's own daily
    upgrades (its 20auto-upgrades): this deploy's file does, and os_updates None takes it back."""
    return ["unattended-upgrades unattended-upgrades/enable_auto_updates boolean false"]


def window_options(window: str | None, host_name: str) -> dict[str, str]:
    """The script's ``--days --start --length --offset`` for ``reboot_window``: this host waits
    a part of the first half of the window of its own (from its server name, the same on every
    run)."""
    if window is None:
        return {"--days": "never", "--start": "0", "--length": "0", "--offset": "0"}
    days, start, length = reboot_window(window)
    offset = system.spread(host_name, max(1, length // 2))
    return {"--days": ",".join(map(str, days)), "--start": str(start), "--length": str(length), "--offset": str(offset)}


def script_command(data, host_name: str) -> str:
    """``files/os-updates`` with the names and the window it works with."""
    options = {
        "--required-file": REBOOT_REQUIRED,
        "--since-file": SINCE_FILE,
        "--status-file": STATUS_FILE,
        "--stale-file": STALE_FILE,
        "--upgrade-log": UPGRADE_LOG,
        "--upgrade-unit": UPGRADE_UNIT,
        "--reload-unit": apache.UNIT,
        **window_options(data.get("reboot_window"), host_name),
        "--deadline-hours": str(data.get("reboot_deadline") * 24),
        "--restart-script": server_layout.RESTART_SCRIPT,
        "--activity-path": server_layout.ACTIVITY_PATH,
        "--unit": server_layout.UNIT,
    }
    if data.get("per_person_servers"):
        options["--slice"] = hub_layout.SLICE
    return system.script_line(SCRIPT, options)


def stale_restart_command(data) -> str:
    """Jupyter's servers that run replaced libraries, restarted under ``restart_policy`` by their
    own restart script (the single server's, or each person's)."""
    q = shlex.quote
    if data.get("per_person_servers"):
        script = hub_restarts.script_command()
    else:
        script = server_restarts.script_command()
    policy, hours = data.get("restart_policy"), str(data.get("restart_deadline"))
    return f"{script} stale {q(policy)} {q(hours)} {q(RESTART_REPORT)} {q(STALE_FILE)}"


# Units needrestart must never restart itself: Jupyter's (a restart ends every kernel: their
# restart scripts wait), the hub's proxy (a restart drops every open connection: it waits for
# the next reboot or deploy) and Apache (files/os-updates reloads it after a configtest).
def never_restarted() -> list[str]:
    """needrestart's ``override_rc`` patterns (Perl regexps) for those units."""

    def exactly(unit: str) -> str:
        return rf"^\Q{unit}\E$"

    return [
        exactly(server_layout.UNIT),
        exactly(hub_layout.HUB_UNIT),
        exactly(hub_layout.PROXY_UNIT),
        exactly(apache.UNIT),
        rf"^\Q{hub_layout.SERVER_UNIT_PREFIX}\E[a-z0-9-]+\.service$",
    ]


class Status(snapshot.Probe):
    """What the host owes (``files/os-updates status``: reboot, updates pending, the last
    unattended run), printable lines; nothing before the script is there."""

    def __init__(self, command: str):
        self._command = command

    def command(self):
        return f"test -x {shlex.quote(SCRIPT)} && {self._command} status 2>/dev/null || true"

    def parse(self, lines):
        return ["".join(ch for ch in line if ch.isprintable())[:300] for line in lines if line.strip()][:6]


@deploy(
    "System updates and reboots",
    data_defaults=settings.defaults(
        "os_updates", "reboot_window", "reboot_deadline", "per_person_servers", "restart_policy", "restart_deadline"
    ),
)
def configure_os_updates():
    """unattended-upgrades and needrestart configured (or this deploy's files taken back), the
    reboot timer running (needs ``packages``)."""
    # Each host's own minute of the window, from its name (the server's: unique in a fleet).
    command = script_command(host.data, settings.server_name(host))
    state = snapshot.Snapshot(
        paths=[APT_CONF, NEEDRESTART_CONF, UPGRADE_DROPIN, SCRIPT, REBOOT_SERVICE_FILE, REBOOT_TIMER_FILE],
        units=[REBOOT_TIMER],
        probes={"status": Status(command)},
    )
    system_file = {"user": "root", "group": "root", "mode": "644", "state": state, "create_remote_dir": True}
    snapshot.script(name="System updates and reboots script", dest=SCRIPT, src=FILES / SCRIPT_NAME, state=state)
    updates = host.data.get("os_updates")
    if updates:
        snapshot.put(
            name=f"unattended-upgrades: {updates} updates, daily",
            src=snapshot.text(render("os-updates.apt.conf.j2", all_updates=updates == "all")),
            dest=APT_CONF,
            **system_file,
        )
        snapshot.put(
            name="needrestart: restart services with replaced libraries (not Jupyter's, the proxy or Apache)",
            src=snapshot.text(render("needrestart.conf.j2", never=never_restarted())),
            dest=NEEDRESTART_CONF,
            **system_file,
        )
        dropin = snapshot.put(
            name="After each unattended upgrade: Apache reloaded, Jupyter's restart owed",
            src=snapshot.text(
                render("apt-daily-upgrade-dropin.conf.j2", command=command, restart=stale_restart_command(host.data))
            ),
            dest=UPGRADE_DROPIN,
            **system_file,
        )
    else:
        for path, what in ((APT_CONF, "update settings"), (NEEDRESTART_CONF, "needrestart settings")):
            snapshot.absent(name=f"No {what} of this deploy (os_updates None)", path=path, state=state)
        dropin = snapshot.absent(
            name="No after-upgrade step of this deploy (os_updates None)", path=UPGRADE_DROPIN, state=state
        )
    reboot_service = snapshot.put(
        name="Reboot-when-idle service",
        src=snapshot.text(render("jupyter-reboot-when-idle.service.j2", command=command)),
        dest=REBOOT_SERVICE_FILE,
        **system_file,
    )
    reboot_timer = snapshot.put(
        name="Reboot-when-idle timer (every minute)", src=FILES / REBOOT_TIMER, dest=REBOOT_TIMER_FILE, **system_file
    )
    snapshot.service(
        name="Reboot-when-idle timer running and enabled",
        service=REBOOT_TIMER,
        daemon_reload=snapshot.Changes(dropin, reboot_service, reboot_timer),
        restarted=snapshot.Changes(reboot_timer),
        state=state,
    )
    status_said(name="What the host owes: a reboot, updates, the last unattended upgrade", state=state)


@operation()
def status_said(state: snapshot.Snapshot):
    """The host's status lines in the run's output (``files/os-updates status``): changes nothing.

    + state: the concern's ``Snapshot`` (its ``status`` probe)
    """
    lines = state.probe("status")
    for line in lines:
        host.log(line)
    host.noop("; ".join(lines) or "the status script is not there yet")
    yield from ()
