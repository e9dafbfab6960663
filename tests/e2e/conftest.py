"""
Real-host fixtures: lab hosts booted once per session, deployed to with the real CLI.

Needs root, debootstrap, systemd-container and apt-cacher-ng (``.ci/run`` installs them).
Select or skip this layer with ``-m e2e`` / ``-m "not e2e"``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from lab import Lab
from lab.config import BRIDGE_IP, CACHE

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "standin"))
import build as standin  # noqa: E402

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


# Wall times and other figures worth reporting (printed at the end of the session).
TIMINGS: dict[str, float] = {}
FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter):
    if TIMINGS or FIGURES:
        terminalreporter.section("lab timings and figures")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what:<48} {seconds:7.1f} s")
        for what, figure in FIGURES.items():
            terminalreporter.write_line(f"{what:<48} {figure}")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


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
            return Run(-9, time.monotonic() - started, f"{printed}\n[killed: no end after {timeout:.0f} s]", None)
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


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""


@pytest.fixture(scope="session")
def standin_installer():
    started = time.monotonic()
    path, digest = standin.build(CACHE / "standin")
    TIMINGS["stand-in installer (built or cached)"] = time.monotonic() - started
    return path, digest


@pytest.fixture(scope="session")
def lab(standin_installer):
    if os.geteuid() != 0:
        pytest.fail("the e2e layer needs root (it boots systemd-nspawn hosts); run the fast layer with -m 'not e2e'")
    machines = MACHINES + ENV_MACHINES + ACME_MACHINES
    with Lab(machines, files=standin_installer[0].parent) as running:
        TIMINGS["base images (built or cached)"] = running.timings["base images"]
        TIMINGS[f"boot {len(machines)} hosts to sshd"] = running.timings["boot"]
        yield running


@pytest.fixture(scope="session")
def deployment(lab, standin_installer, tmp_path_factory) -> Deployment:
    """All three hosts deployed in one run, then a second run and a dry run of the same command."""
    path, digest = standin_installer
    workdir = tmp_path_factory.mktemp("deploy")
    requirements = workdir / "course-requirements.txt"
    requirements.write_text(FLEET_REQUIREMENTS)
    deployment = Deployment(
        lab,
        workdir,
        lab.url(path.name),
        digest,
        names=[name for name, _ in MACHINES + ENV_MACHINES],
        data={"nb3": BAN_DATA["nb3"], "nb6": {**ENV_DATA, **BAN_DATA["nb6"], "pip_requirements": str(requirements)}},
    )
    first = deployment.runs["first"] = deployment.pyinfra()
    assert first.returncode == 0, first.output[-6000:]
    deployment.runs["second"] = deployment.pyinfra()
    deployment.runs["dry"] = deployment.pyinfra("--dry", yes=False)
    for name, run in deployment.runs.items():
        TIMINGS[f"{name} run, {len(deployment.names)} hosts in one pyinfra run"] = run.seconds
    return deployment


@pytest.fixture(scope="session")
def ca_files(deployment, tmp_path_factory):
    """Each host's self-signed certificate, fetched over SSH: the client trusts exactly it."""
    directory = tmp_path_factory.mktemp("ca")
    files = {}
    for name in deployment.names:
        files[name] = directory / f"{name}.pem"
        files[name].write_text(deployment.ssh(name, "cat /etc/ssl/certs/jupyter-apache.crt").stdout)
    return files
