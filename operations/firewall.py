"""
Host firewall (ufw): incoming traffic only to SSH, HTTP and HTTPS.

Jupyter already listens on loopback only; the firewall is the second wall, and it
keeps anything else a notebook user starts (a kernel listening on a port, a web app)
unreachable from outside. SSH stays open on the port this very deploy is connected
through, as the host sees it (``$SSH_CONNECTION``: pyinfra may have taken the port from
``~/.ssh/config`` rather than the ``ssh_port`` host data), and on ``ssh_port`` (default
22); ufw is never enabled while the connected port is not allowed.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy, operation

from . import records, settings, snapshot


def packages(data) -> list[str]:
    """What the concern installs (through ``system.install_packages``)."""
    return ["ufw"] if data.get("firewall", settings.DEFAULTS["firewall"]) else []


class UfwState(snapshot.Probe):
    """
    A dict: ``installed``, ``active``, ``default_incoming`` (e.g. ``deny``),
    ``added`` (rules as ``ufw show added`` prints them, e.g. ``ufw allow 22/tcp``; listed
    even while ufw is inactive) and ``ssh_port``: the local port of the SSH connection
    the command came in on (``$SSH_CONNECTION``), ``None`` when it is not known (a local
    or sudo connection that drops the variable).
    """

    def command(self):
        return (
            'echo "ssh-connection=${SSH_CONNECTION:-}"; '
            "if command -v ufw >/dev/null; then "
            "echo installed; ufw status verbose; echo '--added--'; ufw show added; fi"
        )

    def parse(self, output):
        lines = [line.strip() for line in output]
        state = {"installed": False, "active": False, "default_incoming": None, "added": [], "ssh_port": None}
        in_added = False
        for line in lines:
            if line.startswith("ssh-connection="):
                fields = line.split("=", 1)[1].split()
                if len(fields) == 4 and fields[3].isdigit():
                    state["ssh_port"] = int(fields[3])
            elif line == "installed":
                state["installed"] = True
            elif line == "--added--":
                in_added = True
            elif in_added:
                if line.startswith("ufw "):
                    state["added"].append(line)
            elif line.startswith("Status:"):
                state["active"] = line.split(":", 1)[1].strip() == "active"
            elif line.startswith("Default:"):
                for part in line.split(":", 1)[1].split(","):
                    if "(incoming)" in part:
                        state["default_incoming"] = part.split()[0]
        return state


# Enables ufw only when the port of the SSH connection running it is allowed (when the
# host can tell: $SSH_CONNECTION), so a deploy can never cut off its own way back in.
ENABLE_UNLESS_LOCKOUT = (
    'port=$(echo "${SSH_CONNECTION:-}" | cut -d" " -f4); '
    'if [ -n "$port" ] && ! ufw show added | grep -qxF "ufw allow $port/tcp"; then '
    'echo "refusing to enable ufw: this SSH connection came in on port $port, which is not allowed" >&2; exit 1; fi; '
    "ufw --force enable"
)


def firewall_snapshot() -> snapshot.Snapshot:
    """The concern's host state: ufw's (``UfwState``)."""
    return snapshot.Snapshot(probes={"ufw": UfwState()})


@operation()
def ufw_allows(tcp_ports: list[int], state: snapshot.Snapshot):
    """
    Allow only the given TCP ports in (and the port of this SSH connection), deny the
    rest, and enable ufw.

    + tcp_ports: ports to allow, e.g. ``[22, 80, 443]``
    + state: ``firewall_snapshot()``

    Rules are added before ufw is enabled, so the SSH session in use survives, and ufw
    is not enabled at all while that session's port is not allowed. Extra rules added by
    hand are left alone.

    **Example:**

    .. code:: python

        firewall.ufw_allows(name="Firewall", tcp_ports=[22, 80, 443], state=firewall.firewall_snapshot())
    """
    ufw = state.probe("ufw")
    if ufw["ssh_port"] and ufw["ssh_port"] not in tcp_ports:
        tcp_ports = [ufw["ssh_port"], *tcp_ports]
    if (
        ufw["active"]
        and ufw["default_incoming"] == "deny"
        and all(f"ufw allow {port}/tcp" in ufw["added"] for port in tcp_ports)
    ):
        host.noop(f"ufw is active, denies incoming by default and allows tcp {tcp_ports}")
        return
    for port in tcp_ports:
        rule = f"ufw allow {int(port)}/tcp"
        if rule not in ufw["added"]:
            # Recorded: uninstall deletes only the web ports' rules the deploy added.
            yield f"{rule} && {records.append('ufw', rule.removeprefix('ufw '))}"
    if ufw["default_incoming"] != "deny":
        yield "ufw default deny incoming"
    if not ufw["active"]:
        yield ENABLE_UNLESS_LOCKOUT


@deploy("Firewall", data_defaults=settings.defaults("firewall"))
def configure_firewall():
    """Enable ufw for SSH, 80 and 443 when the ``firewall`` setting is on (needs ``packages(True)``).

    SSH: ``ssh_port`` (22 unless set) and the port this deploy is connected through.
    """
    if not host.data.firewall:
        return
    ufw_allows(
        name="Allow SSH, HTTP, HTTPS only",
        tcp_ports=[host.data.get("ssh_port") or 22, 80, 443],
        state=firewall_snapshot(),
    )
