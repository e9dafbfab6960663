"""
Lab hosts: real Debian machines with systemd as PID 1, reached over SSH like a Linode.

Each host is ``systemd-nspawn --boot`` on a fresh overlay of a cached base image, in its
own network namespace (one veth on the lab bridge, its own address) and its own cgroup
(without one, the hosts' systemds kill each other's services). Everything a host makes
is recorded under its state directory, so ``stop`` -- or ``clean_stale`` after an
interrupted run -- removes exactly that: process, mount, namespace, cgroups, files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .base import remove_tree
from .config import (
    BRIDGE_IP,
    FIRST_HOST,
    LAB_IPV6_NETWORK,
    LAB_IPV6_PREFIX,
    METADATA_IP,
    METADATA_IPV6,
    PREFIX_LEN,
    PROXY_PORT,
    STATE,
)
from .network import netns_off_bridge, netns_on_bridge

HOSTS_DIR = STATE / "hosts"
CGROUP_TREES = ("systemd", "unified")


@dataclass
class LabHost:
    name: str
    ip: str
    release: str
    dir: Path
    # This run's nspawn of the host, and how many times it booted (a reboot boots it again).
    process: subprocess.Popen | None = field(default=None, compare=False, repr=False)
    boots: int = 0

    @property
    def root(self) -> Path:
        return self.dir / "root"

    def nspawn_pid(self) -> int | None:
        try:
            return int((self.dir / "nspawn.pid").read_text())
        except (OSError, ValueError):
            return None


def _run(*args, check=True, **kwargs):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kwargs)


def _alive(pid: int | None) -> bool:
    return bool(pid) and Path(f"/proc/{pid}").exists()


def start(name: str, index: int, base: Path, release: str) -> LabHost:
    """Boot one host (returns at once; use ``wait_for_ssh``)."""
    ip = f"169.254.77.{FIRST_HOST - 1 + index}"
    host = LabHost(name, ip, release, HOSTS_DIR / name)
    if host.dir.exists():
        stop(host)
    for sub in ("upper", "work", "root"):
        (host.dir / sub).mkdir(parents=True)
    (host.dir / "ip").write_text(ip)
    _run(
        "mount",
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir={base},upperdir={host.dir / 'upper'},workdir={host.dir / 'work'}",
        str(host.root),
    )
    (host.root / "etc/hostname").write_text(f"{name}\n")
    (host.root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {name}\n{ip} {name}\n")
    # pip anywhere on the host (kernels and terminals too, which do not read /etc/environment)
    # reaches PyPI through the lab proxy, as it would reach it directly on a Linode.
    (host.root / "etc/pip.conf").write_text(f"[global]\nproxy = http://{BRIDGE_IP}:{PROXY_PORT}\n")
    # apt pipelines requests on one connection to the proxy by default: one request at a time,
    # as apt does for servers it does not trust to pipeline, and a stalled fetch times out.
    # What held a host's apt-get update for good (CI 2026-12-02, 2026-12-04, 2026-12-05): the
    # proxy answers 503 "Error with cache data" when two hosts make it refresh one index in the
    # same second, and Debian 12's apt never sends the delayed retry of such an InRelease
    # (tests/e2e/test_apt_retries.py). The deploy retries at once (operations/system.py); so
    # does the lab's own apt on its hosts (the OpenID provider's install).
    (host.root / "etc/apt/apt.conf.d/02lab-no-pipelining").write_text(
        'Acquire::http::Pipeline-Depth "0";\nAcquire::http::Timeout "30";\nAcquire::Retries "3";\n'
        'Acquire::Retries::Delay "false";\n'
    )

    _run("ip", "link", "del", _veth_names(name)[0], check=False)  # left by an earlier run whose host died late
    netns_on_bridge(name, _veth_names(name), f"{ip}/{PREFIX_LEN}")
    # As a cloud routes its metadata service (lab/network.py's stand-in answers there), over
    # IPv4 and IPv6 (the link-local address needs no route).
    _run("ip", "-n", name, "route", "add", f"{METADATA_IP}/32", "dev", "eth0")
    _run("ip", "-n", name, "addr", "add", f"{LAB_IPV6_PREFIX}{FIRST_HOST - 1 + index}/64", "dev", "eth0", "nodad")
    _run("ip", "-n", name, "-6", "route", "add", LAB_IPV6_NETWORK, "dev", "eth0")
    _run("ip", "-n", name, "-6", "route", "add", f"{METADATA_IPV6[0]}/128", "dev", "eth0")

    for tree in CGROUP_TREES:
        Path(f"/sys/fs/cgroup/{tree}/{name}").mkdir(exist_ok=True)
    launch(host)
    return host


# systemd-nspawn's exit status when the host's systemd asked for a reboot.
REBOOTED = 133


def launch(host: LabHost) -> subprocess.Popen:
    """Boot the host's systemd in its prepared root, network namespace and cgroups (at first,
    and again after the host rebooted itself: nspawn ends then, with ``REBOOTED``)."""
    name = host.name
    # PID 1 here is not systemd: nspawn must not register with machined (--register=no
    # --keep-unit). CAP_NET_ADMIN stays inside the host's own network namespace (ufw needs it).
    # bpf(2), which nspawn filters by default, lets the host's systemd enforce IPAddressDeny=
    # (its cgroup BPF firewall) as on a real host; without it the setting is silently ignored.
    command = [
        "systemd-nspawn",
        "-q",
        "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
        "-D",
        str(host.root),
        "-M",
        name,
        "--boot",
        f"--network-namespace-path=/run/netns/{name}",
        "--register=no",
        "--keep-unit",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
        "--system-call-filter=bpf",
    ]
    # The shell moves itself into the host's private cgroups, then becomes nspawn.
    enter_cgroups = 'for t in systemd unified; do echo $$ > /sys/fs/cgroup/$t/"$0"/cgroup.procs; done; exec "$@"'
    with open(host.dir / "console.log", "ab") as console:
        process = subprocess.Popen(
            ["sh", "-c", enter_cgroups, name, *command],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (host.dir / "nspawn.pid").write_text(str(process.pid))
    host.process = process
    host.boots += 1
    return process


def _veth_names(name: str) -> tuple[str, str]:
    return f"vh-{name}"[:15], f"vc-{name}"[:15]


def _cgroup_pids(name: str) -> set[int]:
    pids = set()
    for tree in CGROUP_TREES:
        for procs in Path(f"/sys/fs/cgroup/{tree}/{name}").rglob("cgroup.procs"):
            try:
                pids.update(int(line) for line in procs.read_text().split())
            except OSError:
                pass
    return pids


def ssh_args(key: Path, known_hosts: Path) -> list[str]:
    return [
        "-i",
        str(key),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "ConnectTimeout=3",
        "-o",
        "LogLevel=ERROR",
    ]


def wait_for_ssh(host: LabHost, key: Path, known_hosts: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(
            [
                "ssh",
                *ssh_args(key, known_hosts),
                f"root@{host.ip}",
                "systemctl is-system-running --wait >/dev/null 2>&1; true",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode == 0:
            return
        if not _alive(host.nspawn_pid()):
            raise RuntimeError(f"{host.name} died while booting:\n" + (host.dir / "console.log").read_text()[-2000:])
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host.name} ({host.ip}) did not answer SSH in {timeout:.0f} s: {result.stderr}")
        time.sleep(0.2)


def stop(host: LabHost) -> None:
    """Power the host off (SIGTERM to nspawn is an orderly shutdown) and remove all it left."""
    pid = host.nspawn_pid()
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)
    # Whatever still runs in the host's own cgroups is the host's (nspawn's children outlive
    # a killed nspawn): end it, or it keeps the network namespace and its veth alive.
    for _ in range(50):
        pids = _cgroup_pids(host.name)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    netns_off_bridge(host.name, _veth_names(host.name)[0])
    for tree in CGROUP_TREES:
        _remove_cgroup(Path(f"/sys/fs/cgroup/{tree}/{host.name}"))
    remove_tree(host.dir)


def _remove_cgroup(path: Path) -> None:
    """Depth-first: a cgroup can only be removed once its children are gone."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir():
            _remove_cgroup(child)
    try:
        path.rmdir()
    except OSError:
        pass


def clean_stale() -> list[str]:
    """Remove hosts a previous, interrupted run left behind (recorded under the state dir)."""
    removed = []
    if HOSTS_DIR.is_dir():
        for directory in HOSTS_DIR.iterdir():
            ip = (directory / "ip").read_text() if (directory / "ip").exists() else ""
            stop(LabHost(directory.name, ip, "", directory))
            removed.append(directory.name)
    return removed
