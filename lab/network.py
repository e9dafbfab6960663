"""
The lab network: a bridge on this machine, a caching apt/PyPI proxy, a file server and a
stand-in cloud metadata service on it.

The hosts' only way out is the proxy on the bridge address: apt through apt-cacher-ng's
cache, PyPI through its CONNECT pass-through, nothing else. Each process the lab starts
is recorded by PID and ended by that PID only.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .config import (
    BRIDGE,
    BRIDGE_IP,
    CACHE,
    FILES_PORT,
    LAB_IPV6_PREFIX,
    METADATA_IP,
    METADATA_IPV6,
    PREFIX_LEN,
    PROXY_PORT,
    STATE,
)


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def bridge_up() -> None:
    if _ip("link", "show", BRIDGE, check=False).returncode != 0:
        _ip("link", "add", BRIDGE, "type", "bridge")
    if BRIDGE_IP not in _ip("addr", "show", "dev", BRIDGE).stdout:
        _ip("addr", "add", f"{BRIDGE_IP}/{PREFIX_LEN}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def bridge_down() -> None:
    _ip("link", "del", BRIDGE, check=False)


def netns_on_bridge(netns: str, veths: tuple[str, str], address: str) -> None:
    """A network namespace whose one link (``eth0`` inside, the first veth name outside)
    is plugged into the bridge, holding ``address`` (with its prefix length)."""
    outside, inside = veths
    _ip("netns", "add", netns)
    _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
    _ip("link", "set", outside, "master", BRIDGE, "up")
    _ip("link", "set", inside, "netns", netns)
    _ip("-n", netns, "link", "set", inside, "name", "eth0")
    _ip("-n", netns, "addr", "add", address, "dev", "eth0")
    _ip("-n", netns, "link", "set", "lo", "up")
    _ip("-n", netns, "link", "set", "eth0", "up")


def netns_off_bridge(netns: str, outside_veth: str) -> None:
    """Undo ``netns_on_bridge`` (nothing happens for what is already gone)."""
    _ip("netns", "del", netns, check=False)
    _ip("link", "del", outside_veth, check=False)


def _spawn(argv: list[str], pid_file: Path) -> subprocess.Popen:
    """Start a lab daemon in a session of its own and record its PID (it is ended by that PID only)."""
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    pid_file.write_text(str(process.pid))
    return process


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers on {host}:{port} after {timeout:.0f} s") from None
            time.sleep(0.1)


class AptProxy:
    """Our own apt-cacher-ng instance, bound to the bridge (Debian's daemon stays untouched)."""

    # Longer than a full test session: within one, the mirror's indexes are fetched once.
    INDEX_FRESH_SECONDS = 3 * 3600

    def __init__(self, state: Path = STATE / "proxy", cache: Path = CACHE / "apt-proxy"):
        self.dir = state
        # The package cache outlives the run: later runs on this machine fetch nothing twice.
        self.cache = cache
        self.pid_file = state / "pid"

    def start(self) -> None:
        if self.running():
            return
        for directory in (self.dir / "log", self.dir / "conf", self.cache):
            directory.mkdir(parents=True, exist_ok=True)
        # No Remap lines: Debian's stock remaps answer 503 here. HTTPS to PyPI passes through.
        (self.dir / "conf/acng.conf").write_text(
            f"CacheDir: {self.cache}\nLogDir: {self.dir}/log\nPidFile: {self.pid_file}\n"
            f"SocketPath: {self.dir}/socket\nSupportDir: /usr/lib/apt-cacher-ng\n"
            f"BindAddress: {BRIDGE_IP}\nPort: {PROXY_PORT}\nForeground: 0\n"
            "PassThroughPattern: ^(pypi\\.org|files\\.pythonhosted\\.org):443$\n"
            "ExThreshold: 4\n"
            # Indexes fetched once stay fresh for the whole test session: see prewarm().
            f"FreshIndexMaxAge: {self.INDEX_FRESH_SECONDS}\n",
        )
        subprocess.run(
            ["/usr/sbin/apt-cacher-ng", "-c", str(self.dir / "conf")],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(BRIDGE_IP, PROXY_PORT, 15)

    def prewarm(self, urls: list[str]) -> None:
        """
        Fetch each index through the proxy, one at a time, before any host asks for it.

        Seen in CI: hosts running their first ``apt-get update`` at the same moment made
        apt-cacher-ng fetch the same InRelease for all of them at once, and one host's
        apt-get then waited forever (its answer was 218 bytes while the download was under way).
        Fetched here first and kept fresh for the session, every host's request is a plain
        cache hit, as the same request to a real mirror would be.
        """
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://{BRIDGE_IP}:{PROXY_PORT}"}))
        for url in urls:
            try:
                with opener.open(url, timeout=120) as response:
                    response.read()
            except OSError as error:
                raise RuntimeError(f"the lab's apt proxy could not fetch {url}: {error}") from None

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and Path(f"/proc/{pid}").exists()

    def stop(self) -> None:
        _stop_pid_file(self.pid_file)


class FileServer:
    """Serves one directory over HTTP on the bridge (e.g. the stand-in installer)."""

    def __init__(self, directory: Path, port: int = FILES_PORT, state: Path = STATE / "files"):
        self.directory = directory
        self.port = port
        self.pid_file = state / "pid"

    def url(self, name: str) -> str:
        return f"http://{BRIDGE_IP}:{self.port}/{name}"

    def start(self) -> FileServer:
        self.stop()
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        process = _spawn(
            [
                sys.executable,
                "-m",
                "http.server",
                str(self.port),
                "--bind",
                BRIDGE_IP,
                "--directory",
                str(self.directory),
            ],
            self.pid_file,
        )
        wait_for_port(BRIDGE_IP, self.port, 15)
        time.sleep(0.2)
        if process.poll() is not None:
            raise RuntimeError(f"the file server could not listen on {BRIDGE_IP}:{self.port}: is another one running?")
        return self

    def stop(self) -> None:
        _stop_pid_file(self.pid_file)


class MetadataService:
    """
    A stand-in for a cloud's metadata service, which answers on 169.254.169.254 (Linode's
    can hand out the host's user-data): an HTTP server in a network namespace of its own on
    the bridge, routed to from every lab host as a cloud routes it. Something a notebook
    must not reach while root on the host can.
    """

    NETNS = "jdlab-metadata"
    VETH = ("jdmeta0", "jdmeta1")
    USER_DATA = "lab user-data (a stand-in; a real one may hold secrets)\n"

    def __init__(self, state: Path = STATE / "metadata"):
        self.dir = state
        self.pid_file = state / "pid"

    def start(self) -> MetadataService:
        self.stop()
        www = self.dir / "www"
        www.mkdir(parents=True, exist_ok=True)
        (www / "user-data").write_text(self.USER_DATA)
        netns_on_bridge(self.NETNS, self.VETH, f"{METADATA_IP}/32")
        lab_network = ipaddress.ip_network(f"{BRIDGE_IP}/{PREFIX_LEN}", strict=False)
        _ip("-n", self.NETNS, "route", "add", str(lab_network), "dev", "eth0")
        # Linode's IPv6 addresses of the service (no duplicate detection: usable at once).
        ula, link_local = METADATA_IPV6
        _ip("-n", self.NETNS, "addr", "add", f"{ula}/128", "dev", "eth0", "nodad")
        _ip("-n", self.NETNS, "addr", "add", f"{link_local}/64", "dev", "eth0", "nodad")
        _ip("-n", self.NETNS, "-6", "route", "add", f"{LAB_IPV6_PREFIX}/64", "dev", "eth0")
        # `ip netns exec` execs the server: the PID recorded is the server's own.
        process = _spawn(
            [
                "ip",
                "netns",
                "exec",
                self.NETNS,
                sys.executable,
                "-m",
                "http.server",
                "80",
                # Every address of its namespace, IPv4 and IPv6 (http.server serves both on "::").
                "--bind",
                "::",
                "--directory",
                str(www),
            ],
            self.pid_file,
        )
        time.sleep(0.3)
        if process.poll() is not None:
            raise RuntimeError(f"the metadata stand-in could not listen on {METADATA_IP}:80")
        return self

    def stop(self) -> None:
        _stop_pid_file(self.pid_file)
        netns_off_bridge(self.NETNS, self.VETH[0])


def _stop_pid_file(pid_file: Path) -> None:
    """End the process recorded in ``pid_file`` (only that one) and forget it."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
