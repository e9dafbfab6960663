"""
The base image every lab host boots from: a debootstrapped Debian with systemd and sshd.

Built once per release and cached outside the checkout (``LAB_CACHE``), so a second
test run on the same machine skips it. The build goes to a temporary directory and is
renamed into place only when complete: an interrupted build is never mistaken for one.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

from .config import BRIDGE_IP, CACHE, MIRROR, PROXY_PORT

# What a fresh Linode image has that debootstrap's minbase lacks, plus python3-venv,
# which only the stand-in installer needs (the real Anaconda installer brings its own Python).
INCLUDE = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "iproute2",
    "ca-certificates",
    "python3",
    "python3-venv",
    "procps",
    "curl",
    "openssl",
]
# Units that fight the container's environment (no clock, no real network config, no console).
MASKED = ["systemd-timesyncd", "systemd-networkd", "console-getty", "apt-daily", "apt-daily-upgrade"]


def ssh_key() -> Path:
    """The lab's SSH key pair (made once, cached beside the images)."""
    key = CACHE / "id_ed25519"
    if not key.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jupyter-deploy-lab", "-f", str(key)], check=True
        )
    return key


def _suites(release: str) -> list[tuple[str, str]]:
    """(archive URL, suite) of each line of a host's sources.list."""
    return [
        (MIRROR, release),
        (MIRROR, f"{release}-updates"),
        ("http://deb.debian.org/debian-security", f"{release}-security"),
    ]


def _sources(release: str) -> str:
    return "".join(f"deb {archive} {suite} main\n" for archive, suite in _suites(release))


def index_urls(release: str) -> list[str]:
    """The signed index (InRelease) of each suite a host of ``release`` reads."""
    return [f"{archive}/dists/{suite}/InRelease" for archive, suite in _suites(release)]


def _configure(root: Path, release: str, public_key: str) -> None:
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_text(public_key)
    (ssh / "authorized_keys").chmod(0o600)
    # Every clone gets its own machine-id at first boot.
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/apt/sources.list").write_text(_sources(release))
    # The hosts have no route out: apt goes through the caching proxy on the bridge,
    # pip (https) through the same proxy's CONNECT pass-through (pam_env reads /etc/environment).
    # No pipelining: twice an `apt-get update` hung for good, its http method idle on a
    # connection the proxy had closed, with the requests still queued on it lost.
    (root / "etc/apt/apt.conf.d/01proxy").write_text(
        f'Acquire::http::Proxy "http://{BRIDGE_IP}:{PROXY_PORT}";\n'
        'Acquire::http::Pipeline-Depth "0";\nAcquire::http::Timeout "60";\nAcquire::Retries "3";\n'
    )
    (root / "etc/environment").write_text(f"https_proxy=http://{BRIDGE_IP}:{PROXY_PORT}\nno_proxy={BRIDGE_IP}\n")
    # This machine's network may intercept TLS with its own CA: hosts trust what it trusts.
    for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(crt, root / "usr/local/share/ca-certificates" / crt.name)
    subprocess.run(["chroot", str(root), "update-ca-certificates"], check=True, capture_output=True)
    for unit in MASKED:
        link = root / f"etc/systemd/system/{unit}.service"
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (root / "etc/ssh/sshd_config.d/lab.conf").write_text("PermitRootLogin prohibit-password\nUseDNS no\n")


def remove_tree(path: Path) -> None:
    """Delete a directory tree, first unmounting anything below it (an interrupted
    debootstrap leaves /proc and /sys mounted in its target)."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def recipe_id(release: str) -> str:
    """Changes whenever what goes into the image changes, so a stale cache is never used."""
    recipe = repr((release, INCLUDE, MASKED, MIRROR, BRIDGE_IP, PROXY_PORT, Path(__file__).read_text()))
    return hashlib.sha256(recipe.encode()).hexdigest()[:10]


def base_image(release: str = "bookworm", log=print) -> Path:
    """Path of the cached base image for ``release``, building it first when missing."""
    image = CACHE / f"base-{release}-{recipe_id(release)}"
    if (image / ".lab-complete").exists():
        return image
    key = ssh_key()
    # Images from older recipes, and builds an interrupted run left, are dropped.
    for stale in CACHE.glob(f"base-{release}*"):
        remove_tree(stale)
    building = image.with_name(image.name + ".building")
    started = time.monotonic()
    log(f"lab: debootstrap {release} into {image} (once; cached for later runs)")
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=" + ",".join(INCLUDE), release, str(building), MIRROR],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _configure(building, release, key.with_suffix(".pub").read_text())
    (building / ".lab-complete").write_text(f"{time.time()}\n")
    building.rename(image)
    log(f"lab: base image {release} built in {time.monotonic() - started:.0f} s")
    return image
