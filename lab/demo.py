"""
    python -m lab.demo up      deploy the whole stack to one local throwaway host
    python -m lab.demo down    remove it (and everything else of the lab)

What ``./demo`` runs once the virtualenv exists. ``up`` boots a Debian 12 lab host
(systemd-nspawn, see ``lab/``), runs the real ``pyinfra`` deploy against it with a
generated password, runs the smoke check and prints the URL and how to log in. Run it
again: the host is reused, the deploy changes nothing and it takes seconds.

The host cannot download Anaconda here, so the demo installs the stand-in distribution
the tests use (``lab.standin``: Python with Jupyter Notebook from PyPI, same batch
interface). Your servers get the real Anaconda installer (group_data/all.py).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from . import Lab, standin
from .config import CACHE, STATE
from .hosts import LabHost
from .network import FileServer

ROOT = Path(__file__).resolve().parents[1]

DEMO = STATE / "demo"
MACHINE = ("demo", "bookworm")
# ./demo's clock, so its lines and these count from the same start.
STARTED = float(os.environ.get("DEMO_STARTED") or time.time())


def step(message: str) -> None:
    print(f"==> [{time.time() - STARTED:5.1f} s] {message}", file=sys.stderr, flush=True)


def running_host(lab: Lab) -> LabHost | None:
    """The demo host of an earlier `up`, if it still answers SSH."""
    try:
        ip = (DEMO / "address").read_text().strip()
    except OSError:
        return None
    host = LabHost(MACHINE[0], ip, MACHINE[1], STATE / "hosts" / MACHINE[0])
    try:
        lab.ssh(host, "true", timeout=10)
    except (subprocess.SubprocessError, OSError):
        return None
    return host


def up() -> int:
    step("stand-in conda installer (built once, then cached)")
    installer, digest = standin.build(CACHE / "standin")
    lab = Lab([MACHINE], files=installer.parent, log=lambda message: step(message.removeprefix("lab: ")))
    host = running_host(lab)
    if host:
        step(f"reusing the demo host at {host.ip}")
    else:
        step("booting a Debian 12 host (the first time builds its image: a few minutes)")
        lab.start()
        host = lab.hosts[MACHINE[0]]
        DEMO.mkdir(parents=True, exist_ok=True)
        (DEMO / "address").write_text(host.ip)
    password_file = DEMO / "password"
    if not password_file.exists():
        password_file.touch(mode=0o600)
        password_file.write_text(secrets.token_urlsafe(12))
    password = password_file.read_text().strip()
    # The file server `lab.start()` started keeps serving the installer after this exits.
    url = FileServer(installer.parent).url(installer.name)
    inventory = lab.write_inventory(
        DEMO / "inventory.py", {host.ip: {"conda_installer_url": url, "conda_installer_sha256": digest}}
    )

    step(f"pyinfra -y {inventory} deploy.py")
    deploy = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", str(inventory), "deploy.py"],
        cwd=ROOT,
        env=dict(os.environ, JUPYTER_PASSWORD=password),
    )
    if deploy.returncode != 0:
        step(f"the deploy failed (exit {deploy.returncode}): see above")
        return 1

    step("smoke check: log in through Apache, run one cell in a fresh kernel")
    certificate = DEMO / "jupyter-demo.crt"
    certificate.write_text(lab.ssh(host, "cat /etc/ssl/certs/jupyter-apache.crt").stdout)
    smoke = subprocess.run(
        [sys.executable, "-m", "smoke", "--ca-file", str(certificate), host.ip],
        cwd=ROOT,
        env=dict(os.environ, JUPYTER_PASSWORD=password),
    )
    if smoke.returncode != 0:
        step("the smoke check failed: see above")
        return 1
    step("done")
    print(f"""
Jupyter is up:  https://{host.ip}/jupyter/
  password:     {password}   (kept in {password_file})
  certificate:  self-signed, so the browser asks once; it is {certificate}
  this machine: open the URL (the address is on a local bridge, jdlab0)
  elsewhere:    ssh -D 1080 YOU@THIS-MACHINE, set your browser's SOCKS proxy to localhost:1080,
                and open the URL
  shell:        ssh -i {lab.key} -o UserKnownHostsFile={lab.known_hosts} root@{host.ip}
  again:        ./demo             (as root; changes nothing)
  remove:       ./demo down
""")
    return 0


def down() -> int:
    step("removing the demo host and the lab network")
    Lab([]).close()
    step("done")
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    if command not in ("up", "down"):
        sys.exit("usage: python -m lab.demo [up|down]")
    sys.exit(up() if command == "up" else down())
