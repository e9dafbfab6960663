"""
Host firewall (ufw): incoming traffic only to SSH, HTTP and HTTPS.

Jupyter already listens on loopback only; the firewall is the second wall, and it
keeps anything else a notebook user starts (a kernel listening on a port, a web app)
unreachable from outside. The SSH port is taken from pyinfra's ``ssh_port`` host
data so the deploy never locks itself out.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase, deploy, operation

from . import settings


def packages(enabled: bool) -> list[str]:
    return ["ufw"] if enabled else []


class UfwState(FactBase):
    """
    Returns ``None`` when ufw is not installed, else a dict: ``active``,
    ``default_incoming`` (e.g. ``deny``) and ``added`` (rules as ``ufw show added``
    prints them, e.g. ``ufw allow 22/tcp``; listed even while ufw is inactive).
    """

    def command(self):
        return "if command -v ufw >/dev/null; then ufw status verbose; echo '--added--'; ufw show added; fi"

    def process(self, output):
        lines = [line.strip() for line in output]
        if not lines:
            return None
        state = {"active": False, "default_incoming": None, "added": []}
        in_added = False
        for line in lines:
            if line == "--added--":
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


@operation()
def ufw_allows(tcp_ports: list[int]):
    """
    Allow only the given TCP ports in, deny the rest, and enable ufw.

    + tcp_ports: ports to allow, e.g. ``[22, 80, 443]``

    Rules are added before ufw is enabled, so the SSH session in use survives.
    Extra rules added by hand are left alone.

    **Example:**

    .. code:: python

        firewall.ufw_allows(name="Firewall", tcp_ports=[22, 80, 443])
    """
    state = host.get_fact(UfwState) or {"active": False, "default_incoming": None, "added": []}
    if state["active"] and state["default_incoming"] == "deny" and all(
        f"ufw allow {port}/tcp" in state["added"] for port in tcp_ports
    ):
        host.noop(f"ufw is active, denies incoming by default and allows tcp {tcp_ports}")
        return
    for port in tcp_ports:
        if f"ufw allow {port}/tcp" not in state["added"]:
            yield f"ufw allow {int(port)}/tcp"
    if state["default_incoming"] != "deny":
        yield "ufw default deny incoming"
    if not state["active"]:
        yield "ufw --force enable"


@deploy("Firewall", data_defaults=settings.defaults("firewall"))
def configure_firewall():
    """Enable ufw for SSH, 80 and 443 when the ``firewall`` setting is on (needs ``packages(True)``)."""
    if not host.data.firewall:
        return
    ufw_allows(name="Allow SSH, HTTP, HTTPS only", tcp_ports=[host.data.get("ssh_port") or 22, 80, 443])
