"""
The real-host layer's scenario: which lab hosts there are and with what settings, the
password, the figures the session reports, and ``Deployment``, the real CLI against them.
Tests import from here; ``conftest.py`` holds the fixtures that build it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import requests

from lab import Lab
from lab.config import BRIDGE_IP, STATE
from smoke import __main__ as smoke_main
from smoke import advisories
from smoke.client import Jupyter
from tests.advisory_feed import Feed, service

ROOT = Path(__file__).resolve().parents[2]

PASSWORD = "lab password, not secret"
# Two Debian 12 hosts and one Debian 13 host, deployed in one run (self-signed TLS).
MACHINES = [("nb1", "bookworm"), ("nb2", "bookworm"), ("nb3", "trixie")]
# The researcher's environment (test_environment.py): fleet packages, limits, short kernel
# culling and a short proxy timeout; deployed in the same run as MACHINES.
ENV_MACHINES = [("nb6", "bookworm")]
FLEET_PIP_PACKAGES = ["tabulate==0.9.0"]
FLEET_REQUIREMENTS = "toolz==0.12.1\n"
ENV_DATA = {
    "pip_packages": FLEET_PIP_PACKAGES,
    "memory_limit": "700M",
    "cpu_limit": 1.5,
    "cull_idle_kernels_after": 20,
    "apache_proxy_timeout": 6,
    # Small enough to test a body over it cheaply (test_request_limits.py).
    "max_request_size": "8M",
}
# The login-ban tests (test_login_ban.py) on nb3 (ufw) and nb6 (firewall off: nftables alone).
BAN_SECONDS = 30
BAN_DATA = {"nb3": {"login_ban_seconds": BAN_SECONDS}, "nb6": {"login_ban_seconds": BAN_SECONDS, "firewall": False}}
# Every lab deployment: tests log in wrongly from this machine on purpose, and must not
# get it banned from the hosts (test_login_ban.py checks that it never is).
LAB_DATA = {"login_ban_ignore": [BRIDGE_IP]}
# Deployed in their own run with tls_mode letsencrypt, against pebble (test_letsencrypt.py).
ACME_MACHINES = [("nb4", "bookworm"), ("nb5", "trixie")]
# Single sign-on (test_single_sign_on.py): nb7 deployed with auth 'oidc' in its own run, and a
# host of its own for the OpenID Connect provider (LemonLDAP::NG).
SSO_MACHINES = [("nb7", "bookworm"), ("idp", "bookworm")]
# Per-person servers (test_per_person.py): nb8 under JupyterHub, the same provider.
HUB_MACHINES = [("nb8", "bookworm")]
# The system under Jupyter (test_os_updates.py): nb9's packages updated from a stand-in
# security archive, and rebooted; deployed in its own run, beside the first run of MACHINES.
UPDATES_MACHINES = [("nb9", "bookworm")]
# A host replaced (test_replace_host.py): nb10 (Debian 12) backed up over sftp to nb3, replaced by
# nb11 (Debian 13) deployed with the same settings and restored from it; after nb9's scenario.
REPLACE_MACHINES = [("nb10", "bookworm"), ("nb11", "trixie")]
# The provider's one client, for nb7 (Apache signs in) and nb8 (the hub does): made per session.
OIDC_CLIENT_ID = "jupyter-lab"
OIDC_CLIENT_SECRET = f"lab-oidc-{secrets.token_hex(16)}"


# A cell that allocates past a lab host's memory cap (lab/memory.py): 64 MiB at a time, filled
# (so really resident), bounded at 2 GiB whatever happens. Never run without a cap in force.
MEMORY_CAP_BYTES = 1 << 30
RUNAWAY = "\n".join(
    [
        "chunks = []",
        "for i in range(32):",
        "    chunks.append(bytearray(b'x') * (64 << 20))",
        "print('allocated', len(chunks) * 64, 'MiB')",
    ]
)


# Wall times and other figures worth reporting (printed at the end of the session).
TIMINGS: dict[str, float] = {}
FIGURES: dict[str, str] = {}


@dataclass
class Run:
    returncode: int
    seconds: float
    output: str
    report: dict | None

    def changed(self) -> dict[str, list[str]]:
        """Host address -> names of the operations that changed something there."""
        changes: dict[str, list[str]] = {}
        for op in (self.report or {}).get("results", {}).get("operations", []):
            for address in op["success"]:
                changes.setdefault(address, []).append(op["name"])
        return changes

    def predicted(self, conditional: bool = False) -> dict[str, list[str]]:
        """For a --dry run: host address -> names of the operations it predicts will change.

        ``conditional=True``: the operations that run only `_if` an earlier one changes
        (reload Apache, restart Jupyter); they never fire on a host with no other change.
        """
        key = "hosts_with_conditional_change" if conditional else "hosts_with_change"
        changes: dict[str, list[str]] = {}
        for op in (self.report or {}).get("plan", []):
            for address in op[key]:
                changes.setdefault(address, []).append(op["name"])
        return changes

    @property
    def totals(self) -> dict:
        return self.report["results"]["totals"]


@dataclass
class Deployment:
    lab: Lab
    workdir: Path
    installer_url: str
    installer_sha256: str
    names: list[str] = field(default_factory=lambda: [name for name, _ in MACHINES])
    # Host data for every host of this deployment (overrides add to it per run).
    data: dict = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)

    def address(self, name: str) -> str:
        return self.lab.hosts[name].ip

    def write_inventory(self, overrides: dict[str, dict] | None = None) -> Path:
        return self.lab.write_inventory(
            self.workdir / "inventory.py",
            {
                self.lab.hosts[name].ip: {
                    "conda_installer_url": self.installer_url,
                    "conda_installer_sha256": self.installer_sha256,
                    **LAB_DATA,
                    **self.data.get(name, {}),
                    **(overrides or {}).get(name, {}),
                }
                for name in self.names
            },
        )

    def only(self, *names: str) -> Deployment:
        """The same deployment, limited to ``names`` (its runs touch no other host)."""
        return replace(self, names=list(names), runs={})

    def pyinfra(
        self,
        *args: str,
        overrides=None,
        password: str = PASSWORD,
        timeout: float = 600,
        yes: bool = True,
        script: str = "deploy.py",
        env: dict | None = None,
    ) -> Run:
        """The real CLI, as a user runs it: `pyinfra -y --json INVENTORY deploy.py ...`.

        ``yes=False`` leaves out ``-y``: only then does pyinfra detect changes before running,
        which a ``--dry`` run needs to predict anything (with ``-y`` it predicts nothing).
        ``script``: restore.py or uninstall.py instead; ``env``: more environment variables.
        """
        inventory = self.write_inventory(overrides)
        env = dict(os.environ, JUPYTER_PASSWORD=password, **(env or {}))
        started = time.monotonic()
        try:
            result = subprocess.run(
                [sys.executable, "-m", "pyinfra", *(["-y"] if yes else []), "--json", str(inventory), script, *args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as expired:
            # What the run had printed says where it hung (the host and its operation).
            printed = "".join(_text(part) for part in (expired.output, expired.stderr))
            # And what each host was doing then, and the apt proxy's last lines: seen twice, a
            # host's apt never ending through the lab's proxy (2026-12-02, 2026-12-05), and the
            # lab's state, logs included, is gone once the session ends.
            return Run(
                -9,
                time.monotonic() - started,
                f"{printed}\n[killed: no end after {timeout:.0f} s]\n{self.hung_evidence()}",
                None,
            )
        seconds = time.monotonic() - started
        try:
            report = json.loads(result.stdout) if result.stdout.strip() else None
        except json.JSONDecodeError:
            report = None
        return Run(result.returncode, seconds, result.stdout + result.stderr, report)

    def pyinfra_killed_at(self, marker: str, overrides=None, timeout: float = 300, delay: float = 0) -> str:
        """Run the CLI and SIGKILL it ``delay`` seconds after its log shows ``marker``."""
        inventory = self.write_inventory(overrides)
        env = dict(os.environ, JUPYTER_PASSWORD=PASSWORD)
        process = subprocess.Popen(
            [sys.executable, "-m", "pyinfra", "-y", str(inventory), "deploy.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        seen = []
        deadline = time.monotonic() + timeout
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                time.sleep(delay)
                process.kill()
                break
            if time.monotonic() > deadline:
                process.kill()
                break
        process.wait()
        output = "".join(seen)
        assert marker in output, f"the run never reached {marker!r}:\n{output[-3000:]}"
        return output

    def ssh(self, name: str, command: str, check: bool = True, timeout: float = 120):
        return self.lab.ssh(self.lab.hosts[name], command, check=check, timeout=timeout)

    def hung_evidence(self) -> str:
        """Each host's processes older than a minute (a hung apt, dpkg or installer among
        them) and the last lines of the lab's apt proxy log, for a run that was killed."""
        found = []
        for name in self.names:
            try:
                processes = self.ssh(
                    name,
                    "ps -eo pid,etimes,stat,wchan:20,args --sort=start_time | awk 'NR == 1 || $2 > 60' | tail -n 30",
                    check=False,
                    timeout=20,
                ).stdout
            except (OSError, subprocess.SubprocessError) as error:
                processes = repr(error)
            found.append(f"[{name}] processes running for over a minute:\n{processes}")
        for log in sorted((STATE / "proxy" / "log").glob("apt-cacher.*")):
            with contextlib.suppress(OSError):
                found.append(
                    f"[lab apt proxy] {log.name}, last lines:\n" + "\n".join(log.read_text().splitlines()[-30:])
                )
        return "\n".join(found)


def wait_until(predicate, limit: float, step: float = 0.25) -> float | None:
    """Seconds until ``predicate()`` held, or None when it did not within ``limit``."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    return None


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""


def audited(url: str, ca_file, *ignore: str, lab=None) -> tuple[int, str]:
    """``python -m smoke --audit URL`` (exit code, output), with pip-audit reading the stand-in
    of PyPI's vulnerability data (tests/advisory_feed.py: PyPI's per-version answers are out of
    this machine's reach). ``lab``: reach the host over SSH as the lab does (a per-person host)."""
    out = io.StringIO()
    ssh = ["--ssh-key", str(lab.key), "--ssh-known-hosts", str(lab.known_hosts)] if lab else []
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setenv("JUPYTER_PASSWORD", PASSWORD)
        patch.setattr(advisories, "advisory_service", lambda timeout: service(Feed(), timeout))
        ignored = [word for vuln in ignore for word in ("--ignore-vuln", vuln)]
        code = smoke_main.main(["--audit", *ignored, *ssh, "--ca-file", str(ca_file), url])
    return code, out.getvalue()


def run_smoke(lab, url: str, ca_file: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m smoke URL`` as a user runs it, with no password in its environment: it reads
    what it needs from the host over SSH (the lab's key and known hosts)."""
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_PASSWORD"}
    return subprocess.run(
        [sys.executable, "-m", "smoke", "--ca-file", ca_file, "--ssh-key", str(lab.key)]
        + ["--ssh-known-hosts", str(lab.known_hosts), url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


class StatusPoller(threading.Thread):
    """A signed-in client asking ``api/status`` every 100 ms; keeps when each answer failed."""

    def __init__(self, jupyter: Jupyter):
        super().__init__(daemon=True)
        self.jupyter = jupyter
        self.done = threading.Event()
        self.answers: list[tuple[float, bool]] = []

    def run(self):
        while not self.done.is_set():
            at = time.monotonic()
            try:
                ok = self.jupyter.get("api/status").status_code == 200
            except requests.RequestException:
                ok = False
            self.answers.append((at, ok))
            time.sleep(0.1)

    def downtime(self) -> float:
        """The longest stretch from a failed answer to the next good one, in seconds."""
        longest, first_failed = 0.0, None
        for at, ok in self.answers:
            if not ok and first_failed is None:
                first_failed = at
            elif ok and first_failed is not None:
                longest, first_failed = max(longest, at - first_failed), None
        if first_failed is not None:
            longest = max(longest, self.answers[-1][0] - first_failed)
        return longest

    def first_failure(self) -> float | None:
        """When the first answer failed (the switch's restart began), or None."""
        return next((at for at, ok in self.answers if not ok), None)

    def back_within(self, seconds: float) -> bool:
        """Answers come again within ``seconds`` of the first failure, and keep coming at the end."""
        return self.downtime() <= seconds and bool(self.answers) and self.answers[-1][1]


def ci_deploy(workdir: Path, venv: Path, *args: str, env: dict | None = None, timeout: float = 900):
    """``scripts/ci-deploy ARGS`` as CI runs it (its pinned tools in ``venv``, made once and
    reused): (the process, the job summary it wrote)."""
    summary = workdir / "summary.md"
    summary.write_text("")
    result = subprocess.run(
        [str(ROOT / "scripts" / "ci-deploy"), *args],
        cwd=workdir,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(workdir),
            "JUPYTER_PASSWORD": PASSWORD,
            "GITHUB_STEP_SUMMARY": str(summary),
            "CI_DEPLOY_VENV": str(venv),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result, summary.read_text()
