"""
Throwaway Debian hosts on this machine, for real-host tests and demos.

    with Lab([("nb1", "bookworm"), ("nb2", "trixie")]) as lab:
        lab.ssh(lab.hosts["nb1"], "systemctl is-active apache2")

Needs root, debootstrap, systemd-container and apt-cacher-ng. Entering the context
removes anything an earlier interrupted run left, then builds (or reuses) the base
images, brings up the bridge, proxy and file server, and boots the hosts; leaving it
(also on an exception or Ctrl-C) tears all of it down again.
"""

from __future__ import annotations

import atexit
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import clients as lab_clients
from . import hosts as lab_hosts
from .acme import AcmeServer
from .base import base_image, index_urls, remove_tree, ssh_key
from .config import STATE
from .network import AptProxy, FileServer, MetadataService, bridge_down, bridge_up

__all__ = ["Lab"]


class Lab:
    def __init__(self, machines: list[tuple[str, str]], files: Path | None = None, log=None):
        self.machines = machines
        self.files = files
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.hosts: dict[str, lab_hosts.LabHost] = {}
        self.proxy = AptProxy()
        self.file_server: FileServer | None = None
        self.key = ssh_key()
        self.known_hosts = STATE / "known_hosts"
        self.timings: dict[str, float] = {}
        self._closing = threading.Event()
        self._rebooter: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Lab:
        atexit.register(self.close)
        # SIGTERM (CI timeouts, `kill`) unwinds like Ctrl-C, so teardown runs.
        self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Bring everything up (without arranging teardown: use the context manager for that)."""
        stale = lab_hosts.clean_stale()
        if stale:
            self.log(f"lab: removed hosts left by an interrupted run: {', '.join(stale)}")
        started = time.monotonic()
        images = {release: base_image(release, log=self.log) for release in {r for _, r in self.machines}}
        self.timings["base images"] = time.monotonic() - started
        STATE.mkdir(parents=True, exist_ok=True)
        self.known_hosts.write_text("")
        bridge_up()
        self.proxy.start()
        self.proxy.prewarm([url for release in images for url in index_urls(release)])
        MetadataService().start()
        if self.files is not None:
            self.file_server = FileServer(self.files).start()
        started = time.monotonic()
        for index, (name, release) in enumerate(self.machines, start=1):
            self.hosts[name] = lab_hosts.start(name, index, images[release], release)
        for host in self.hosts.values():
            lab_hosts.wait_for_ssh(host, self.key, self.known_hosts)
        self.timings["boot"] = time.monotonic() - started
        # A host that reboots itself ends its nspawn: boot it again, as a machine would.
        self._closing.clear()
        self._rebooter = threading.Thread(target=self._boot_rebooted_hosts, name="lab-rebooter", daemon=True)
        self._rebooter.start()
        self.log(
            f"lab: {len(self.hosts)} hosts up in {self.timings['boot']:.1f} s: "
            + ", ".join(f"{h.name}={h.ip} ({h.release})" for h in self.hosts.values())
        )

    def _boot_rebooted_hosts(self) -> None:
        while not self._closing.wait(0.2):
            for host in list(self.hosts.values()):
                if host.process is not None and host.process.poll() == lab_hosts.REBOOTED:
                    self.log(f"lab: {host.name} rebooted; booting it again")
                    lab_hosts.launch(host)

    def close(self) -> None:
        """Tear down all hosts, the file server, the proxy and the bridge."""
        self._closing.set()
        if self._rebooter is not None:
            self._rebooter.join()
            self._rebooter = None
        for host in list(self.hosts.values()):
            lab_hosts.stop(host)
            del self.hosts[host.name]
        lab_hosts.clean_stale()
        lab_clients.remove_all()
        # By its pid file, so `python -m lab down` also ends one that `up` started.
        FileServer(Path(".")).stop()
        self.file_server = None
        AcmeServer().stop()
        MetadataService().stop()
        self.proxy.stop()
        bridge_down()
        remove_tree(STATE)
        if hasattr(self, "_previous_sigterm"):
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            del self._previous_sigterm

    # -- using the hosts -------------------------------------------------------------
    def ssh(self, host: lab_hosts.LabHost, command: str, check: bool = True, timeout: float = 120):
        """Run a shell command on a host as root; returns the CompletedProcess (text)."""
        return subprocess.run(
            ["ssh", *lab_hosts.ssh_args(self.key, self.known_hosts), f"root@{host.ip}", command],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def console(self, host: lab_hosts.LabHost, command: str, timeout: float = 60):
        """Run a shell command as root inside a host without SSH (nsenter into its init):
        the way back in when a test has cut SSH off."""
        nspawn = host.nspawn_pid()
        init = Path(f"/proc/{nspawn}/task/{nspawn}/children").read_text().split()[0]
        return subprocess.run(
            ["nsenter", "-t", init, "-m", "-u", "-i", "-n", "-p", "--", "/bin/sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def url(self, name: str) -> str:
        assert self.file_server is not None, "the lab was started without files to serve"
        return self.file_server.url(name)

    def write_inventory(self, path: Path, hosts: dict[str, dict]) -> Path:
        """
        A pyinfra inventory file: group ``notebooks`` with each host (address -> its data),
        reached over SSH with ``ssh_data()``; ``server_name`` is the address unless the data
        says otherwise.
        """
        entries = [(ip, {**self.ssh_data(), "server_name": ip, **data}) for ip, data in hosts.items()]
        path.write_text(f"notebooks = {entries!r}\n")
        return path

    def ssh_data(self) -> dict:
        """pyinfra host data that connects to lab hosts."""
        return {
            "ssh_user": "root",
            "ssh_key": str(self.key),
            "ssh_known_hosts_file": str(self.known_hosts),
            "ssh_strict_host_key_checking": "accept-new",
        }


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
