"""
Extra client addresses on the lab bridge: a network namespace each, so a test can send
traffic to the lab hosts as several distinct clients (an attacker, a user).

    with ClientAddress("attacker", "169.254.77.101") as attacker:
        attacker.run([sys.executable, "-c", "..."])

Each namespace is plugged into the bridge like a lab host; closing it (or ``remove_all``,
which the lab's teardown calls) deletes the namespace and its veth pair.
"""

from __future__ import annotations

import subprocess

from .config import LAB_IPV6_NETWORK, PREFIX_LEN
from .network import netns_off_bridge, netns_on_bridge

PREFIX = "jdlab-client-"


class ClientAddress:
    """``ip`` and, in the same namespace, ``more`` addresses (IPv4 on the bridge's network, IPv6
    anywhere in ``LAB_IPV6_NETWORK``, which the hosts reach): one client, or many sharing it
    (a program picks its source address per connection)."""

    def __init__(self, name: str, ip: str, more: list[str] | None = None):
        self.name = name
        self.ip = ip
        self.more = list(more or [])
        self.netns = PREFIX + name
        # Interface names have at most 15 characters.
        self.veths = (f"jdc-{name}"[:15], f"jdc-{name}"[:13] + "-i")

    def __enter__(self) -> ClientAddress:
        self.close()
        netns_on_bridge(self.netns, self.veths, f"{self.ip}/{PREFIX_LEN}")
        for address in self.more:
            if ":" in address:
                # No duplicate detection: an IPv6 address is usable at once.
                extra = [f"{address}/{LAB_IPV6_NETWORK.split('/')[1]}", "dev", "eth0", "nodad"]
            else:
                extra = [f"{address}/{PREFIX_LEN}", "dev", "eth0"]
            subprocess.run(["ip", "-n", self.netns, "addr", "add", *extra], check=True, capture_output=True)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this address's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv), **kwargs)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(argv), **kwargs)

    def close(self) -> None:
        netns_off_bridge(self.netns, self.veths[0])


def remove_all() -> None:
    """Delete every client namespace a test left behind (lab teardown)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX):
            ClientAddress(name[len(PREFIX) :], "").close()
