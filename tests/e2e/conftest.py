"""
Real-host fixtures: lab hosts booted once per session, deployed to with the real CLI.

Needs root, debootstrap, systemd-container and apt-cacher-ng (``.ci/run`` installs them).
Select or skip this layer with ``-m e2e`` / ``-m "not e2e"``.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from lab import Lab, standin
from lab.config import CACHE
from tests.e2e.scenario import (
    ACME_MACHINES,
    BAN_DATA,
    ENV_DATA,
    ENV_MACHINES,
    FIGURES,
    FLEET_REQUIREMENTS,
    HUB_MACHINES,
    MACHINES,
    OIDC_CLIENT_ID,
    OIDC_CLIENT_SECRET,
    REPLACE_MACHINES,
    SSO_MACHINES,
    TIMINGS,
    UPDATES_MACHINES,
    Deployment,
)


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


@pytest.fixture(scope="session")
def standin_installer():
    started = time.monotonic()
    path, digest = standin.build(CACHE / "standin")
    TIMINGS["stand-in installer (built or cached)"] = time.monotonic() - started
    return path, digest


@pytest.fixture(scope="session")
def ci_deploy_venv(tmp_path_factory):
    """Where scripts/ci-deploy installs its pinned tools: once for the session's runs of it."""
    return tmp_path_factory.mktemp("ci-deploy-venv") / "venv"


@pytest.fixture(scope="session")
def standin_releases(standin_installer):
    """The releases the upgrade tests switch between (lab.standin VARIANTS): name -> (path, sha256)."""
    started = time.monotonic()
    releases = {variant: standin.build(CACHE / "standin", variant) for variant in standin.VARIANTS}
    TIMINGS["stand-in releases (built or cached)"] = time.monotonic() - started
    return releases


@pytest.fixture(scope="session")
def lab(standin_installer):
    if os.geteuid() != 0:
        pytest.fail("the e2e layer needs root (it boots systemd-nspawn hosts); run the fast layer with -m 'not e2e'")
    machines = (
        MACHINES + ENV_MACHINES + ACME_MACHINES + SSO_MACHINES + HUB_MACHINES + UPDATES_MACHINES + REPLACE_MACHINES
    )
    # Every stand-in release (each in its recipe's directory) is served: see lab.standin.url_path.
    with Lab(machines, files=standin_installer[0].parent.parent) as running:
        TIMINGS["base images (built or cached)"] = running.timings["base images"]
        TIMINGS[f"boot {len(machines)} hosts to sshd"] = running.timings["boot"]
        yield running


@pytest.fixture(scope="session")
def deployment(lab, standin_installer, tmp_path_factory, request) -> Deployment:
    """All three hosts deployed in one run, then a second run and a dry run of the same command."""
    path, digest = standin_installer
    workdir = tmp_path_factory.mktemp("deploy")
    requirements = workdir / "course-requirements.txt"
    requirements.write_text(FLEET_REQUIREMENTS)
    deployment = Deployment(
        lab,
        workdir,
        lab.url(standin.url_path(path)),
        digest,
        names=[name for name, _ in MACHINES + ENV_MACHINES],
        data={"nb3": BAN_DATA["nb3"], "nb6": {**ENV_DATA, **BAN_DATA["nb6"], "pip_requirements": str(requirements)}},
    )
    # Beside this run and the other modules' tests, on threads of their own: nb9's first run then,
    # when test_os_updates.py is to run, its scenario; when test_replace_host.py is to run, its
    # scenario (nb10 and nb11 deployed and restored). Their tests judge what they saw.
    modules = {item.module.__name__.rsplit(".", 1)[-1] for item in request.session.items}
    steps = []
    if "test_os_updates" in modules:
        from tests.e2e.test_os_updates import scenario as updates_scenario

        updates_dir = tmp_path_factory.mktemp("updates-scenario")
        steps.append(("updates", lambda updates, seen: updates_scenario(updates, lab, updates_dir, seen)))
    updates = BackgroundRun(
        Deployment(
            lab,
            tmp_path_factory.mktemp("deploy-updates"),
            deployment.installer_url,
            digest,
            names=[name for name, _ in UPDATES_MACHINES],
        ),
        steps=steps,
    )
    BACKGROUND["updates"] = updates
    if "test_replace_host" in modules:
        from tests.e2e.test_replace_host import scenario as replace_scenario

        replace_dir = tmp_path_factory.mktemp("replace-scenario")
        BACKGROUND["replace"] = BackgroundRun(
            deployment,
            steps=[("replace", lambda main, seen: replace_scenario(main, replace_dir, seen))],
            first_run=False,
        )
    first = deployment.runs["first"] = deployment.pyinfra()
    assert first.returncode == 0, first.output[-6000:]
    deployment.runs["second"] = deployment.pyinfra()
    deployment.runs["dry"] = deployment.pyinfra("--dry", yes=False)
    for name, run in deployment.runs.items():
        TIMINGS[f"{name} run, {len(deployment.names)} hosts in one pyinfra run"] = run.seconds
    return deployment


class BackgroundRun:
    """A deployment's first run, on a thread of its own, then each of ``steps`` (name,
    ``step(deployment, seen)``) in turn when the run succeeded; ``ready()`` waits for the run,
    ``finished(name)`` for that step (what it saw, or its error raised)."""

    def __init__(self, deployment: Deployment, steps=(), first_run: bool = True):
        self.deployment = deployment
        self.run = None
        self.first_run = first_run
        self.steps = list(steps)
        self.seen: dict[str, dict] = {name: {} for name, _ in self.steps}
        self.errors: dict[str, BaseException] = {}
        self.deployed = threading.Event()
        self.done = {name: threading.Event() for name, _ in self.steps}
        # A daemon: an interrupted session does not wait for it (its pyinfra ends with the lab).
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            if self.first_run:
                self.run = self.deployment.runs["first"] = self.deployment.pyinfra()
        finally:
            self.deployed.set()
        for name, step in self.steps:
            try:
                if self.run is not None and self.run.returncode != 0:
                    raise AssertionError(f"not run: the first run of {', '.join(self.deployment.names)} failed")
                step(self.deployment, self.seen[name])
            except BaseException as error:  # raised again by finished(), on a test's thread
                self.errors[name] = error
            finally:
                self.done[name].set()

    def ready(self) -> Deployment:
        self.deployed.wait()
        assert self.run is not None, "the first run did not finish"
        TIMINGS[f"first run of {', '.join(self.deployment.names)} (beside the first)"] = self.run.seconds
        assert self.run.returncode == 0, self.run.output[-6000:]
        return self.deployment

    def finished(self, name: str) -> dict:
        """What step ``name`` saw; its error raised here."""
        assert name in self.done, f"no {name} scenario was started"
        self.done[name].wait()
        if name in self.errors:
            raise self.errors[name]
        return self.seen[name]


# What runs in the background of the session (``deployment`` starts it): "updates", "replace".
BACKGROUND: dict[str, BackgroundRun] = {}


@pytest.fixture(scope="session")
def quiet(deployment) -> None:
    """Waits until the background threads' deploys and scenarios are over: for the tests that
    measure latency against a baseline (the lab's 2 cores are shared)."""
    for background in BACKGROUND.values():
        background.thread.join()


@pytest.fixture(scope="session")
def updates_background(deployment) -> BackgroundRun:
    """nb9 (UPDATES_MACHINES): deployed with the defaults beside the first run of ``deployment``,
    then test_os_updates.py's scenario."""
    return BACKGROUND["updates"]


@pytest.fixture(scope="session")
def replace_background(deployment) -> BackgroundRun:
    """test_replace_host.py's scenario, started with the session's first run."""
    return BACKGROUND["replace"]


@pytest.fixture(scope="session")
def ca_files(deployment, tmp_path_factory):
    """Each host's self-signed certificate, fetched over SSH: the client trusts exactly it."""
    directory = tmp_path_factory.mktemp("ca")
    files = {}
    for name in deployment.names:
        files[name] = directory / f"{name}.pem"
        files[name].write_text(deployment.ssh(name, "cat /etc/ssl/certs/jupyter-apache.crt").stdout)
    return files


class InstallingProvider:
    """The lab's OpenID Connect provider (LemonLDAP::NG on the host ``idp``), installing in the
    background from the first test that asks for it; ``ready()`` waits for it."""

    def __init__(self, lab, workdir):
        from lab.idp import Provider

        self.provider = Provider(lab, lab.hosts["idp"], workdir)
        nb7, nb8 = lab.hosts["nb7"].ip, lab.hosts["nb8"].ip
        self.errors: list[Exception] = []
        self.thread = threading.Thread(
            target=self._install,
            kwargs=dict(
                client_id=OIDC_CLIENT_ID,
                client_secret=OIDC_CLIENT_SECRET,
                # nb7: Apache's mod_auth_openidc; nb8: JupyterHub (its callback under the base URL).
                redirect_uris=[f"https://{nb7}/jupyter/oidc-redirect", f"https://{nb8}/jupyter/hub/oauth_callback"],
                logout_uris=[f"https://{nb7}/jupyter/", f"https://{nb8}/jupyter/"],
            ),
        )
        self.thread.start()

    def _install(self, **client):
        started = time.monotonic()
        try:
            self.provider.install(**client)
        except Exception as error:  # reported by ready(), on a test's thread
            self.errors.append(error)
        TIMINGS["OpenID provider (LemonLDAP::NG) installed"] = time.monotonic() - started

    def ready(self):
        self.thread.join()
        assert not self.errors, self.errors
        return self.provider


@pytest.fixture(scope="session")
def oidc_provider(lab, tmp_path_factory) -> InstallingProvider:
    return InstallingProvider(lab, tmp_path_factory.mktemp("provider"))
