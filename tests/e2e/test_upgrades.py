"""
Upgrades with a way back, on nb3: each distribution in its own directory, conda_prefix a link
to the current one, a new one checked before the switch and switched back when Jupyter does
not come up from it, rollback.py by hand.

One scenario, run once (``upgrades``), checked by the tests below. The stand-in releases
(lab.standin VARIANTS) differ where a user can tell: ``older`` has an earlier Jupyter Notebook,
``next`` the latest and a marker package; ``cannot-start``'s server exits at start and
``fails-as-service``'s only under systemd (it passes the check and fails as the service).
A client polls ``api/status`` through Apache during each switch: the figures are the longest
run of failed answers. The host ends on the default release, as the other tests left it.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest
import requests

from lab import standin
from smoke.client import Jupyter
from tests.e2e.scenario import FIGURES, PASSWORD, TIMINGS, StatusPoller, audited

NAME = "nb3"
PREFIX = "/opt/anaconda3"
DISTS = f"{PREFIX}.dists"
HOME = "/var/lib/jupyter"
# Backups on: an upgrade backs up before its switch.
REPOSITORY = "/srv/backups/upgrades"
BACKUP_ENV = {"JUPYTER_BACKUP_PASSWORD": "lab backup password for the upgrades, not secret"}
MARK = "user-code-ran"
LEFT_BEHIND = "sleep 3141"
# Both files leave a line in ~/MARK and a detached `sleep 3141`.
RUN_AND_LEAVE = (
    "import pathlib, subprocess, sys; "
    f"pathlib.Path.home().joinpath({MARK!r}).open('a').write(sys.argv[0] + '\\n'); "
    f"subprocess.Popen({LEFT_BEHIND.split()!r}, start_new_session=True)"
)
PLANT = f"""
import pathlib, site
startup = pathlib.Path.home() / ".ipython/profile_default/startup"
startup.mkdir(parents=True, exist_ok=True)
(startup / "00-mark.py").write_text({RUN_AND_LEAVE!r} + "\\n")
user_site = pathlib.Path(site.getusersitepackages())
user_site.mkdir(parents=True, exist_ok=True)
(user_site / "00-mark.pth").write_text({RUN_AND_LEAVE!r} + "\\n")
print("planted")
"""
PLANTED_AWAY = (
    f"rm -f {HOME}/.ipython/profile_default/startup/00-mark.py {HOME}/.local/lib/python3*/site-packages/00-mark.pth"
)


def marker(jupyter: Jupyter) -> str:
    """What the marker package of the ``next`` release says in a kernel (or why it cannot)."""
    try:
        return jupyter.execute("import standin_release; print(standin_release.RELEASE)")
    except (RuntimeError, requests.RequestException) as error:
        return f"no marker: {str(error)[-200:]}"


@pytest.fixture(scope="module")
def upgrades(deployment, lab, ca_files, standin_releases):
    one = deployment.only(NAME)
    url = f"https://{deployment.address(NAME)}/jupyter/"

    def settings(variant):
        path, digest = standin_releases[variant]
        release = {"conda_installer_url": lab.url(standin.url_path(path)), "conda_installer_sha256": digest}
        return {NAME: {**release, "backup_repository": REPOSITORY}}

    def signed_in() -> Jupyter:
        jupyter = Jupyter(url, ca_file=str(ca_files[NAME]), timeout=5)
        jupyter.login(PASSWORD)
        return jupyter

    def polled(action):
        poller = StatusPoller(signed_in())
        poller.start()
        started = time.monotonic()
        try:
            result = action()
            time.sleep(3)  # answers after the run, so a server that stays down shows
        finally:
            poller.done.set()
            poller.join()
        # From the run's start to its switch (the restart the client sees), when it switched.
        failed = poller.first_failure()
        return result, poller, None if failed is None else failed - started

    def host(command, check=True):
        return deployment.ssh(NAME, command, check=check)

    def server(jupyter: Jupyter) -> dict:
        return jupyter.get("jupyter-deploy/versions").json()["running"]

    def answering() -> dict:
        """What the server runs, or why it does not answer (the test then says so, not the fixture)."""
        try:
            return server(signed_in())
        except (requests.RequestException, ValueError, KeyError) as error:
            return {"notebook": f"no answer: {error!r}"}

    def main_pid() -> str:
        return host("systemctl show -p MainPID --value jupyter").stdout.strip()

    name = {variant: digest[:16] for variant, (_, digest) in standin_releases.items()}
    state: dict = {"name": name}

    # The distribution upgraded from: an earlier Notebook release.
    older = one.pyinfra(overrides=settings("older"), env=BACKUP_ENV)
    assert older.returncode == 0, older.output[-4000:]
    # What a user builds on it: a venv made from its own directory (tied to it), one made
    # from conda_prefix (follows the switch), and a kernel spec for the first.
    kernel = [f"{HOME}/envs/pinned/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = json.dumps({"argv": kernel, "display_name": "pinned", "language": "python"})
    as_user = "runuser -u jupyter --"
    host(
        f"{as_user} {DISTS}/{name['older']}/bin/python -m venv --without-pip {HOME}/envs/pinned && "
        f"{as_user} {PREFIX}/bin/python -m venv --without-pip {HOME}/envs/follows && "
        f"{as_user} mkdir -p {HOME}/.local/share/jupyter/kernels/pinned && "
        f"printf %s {shlex.quote(spec)} | {as_user} tee {HOME}/.local/share/jupyter/kernels/pinned/kernel.json"
    )
    base_prefix = "-c 'import sys; print(sys.base_prefix)'"

    # What whoever has the password can plant for the next kernel: an IPython startup file and
    # a .pth file in the user site, each leaving a mark and a detached process. The check of
    # the new distribution must run neither.
    assert signed_in().execute(PLANT).strip() == "planted"
    # old -> new, polled.
    state["upgrade"], state["upgrade_poll"], state["to_switch"] = polled(
        lambda: one.pyinfra("-v", overrides=settings("next"), env=BACKUP_ENV)
    )
    # Read before any kernel starts (the real server's kernels run the user's files, as they should).
    state["user code ran"] = host(f"cat {HOME}/{MARK} 2>/dev/null || true").stdout
    # Anchored: the shell running this command has the words in its own command line.
    state["left behind"] = host(f"pgrep -a -f '^{LEFT_BEHIND}$' || true").stdout
    host(f"pkill -f '^{LEFT_BEHIND}$' || true; {PLANTED_AWAY}")
    jupyter = signed_in()
    state["after_upgrade"] = {
        "link": host(f"readlink {PREFIX}").stdout.strip(),
        "previous": host(f"readlink {DISTS}/previous").stdout.strip(),
        "dists": sorted(host(f"ls {DISTS}").stdout.split()),
        "running": server(jupyter),
        "marker": marker(jupyter),
        "pinned": host(f"{as_user} {HOME}/envs/pinned/bin/python {base_prefix}"),
        "follows": host(f"{as_user} {HOME}/envs/follows/bin/python {base_prefix}"),
    }
    # The smoke check (with the audit, which reports what the server runs).
    state["audit"] = audited(url, ca_files[NAME])
    state["again"] = one.pyinfra(overrides=settings("next"), env=BACKUP_ENV)

    # rollback.py, twice.
    state["rollback"], state["rollback_poll"], _ = polled(
        lambda: one.pyinfra("-v", script="rollback.py", overrides=settings("next"))
    )
    state["after_rollback"] = {
        "link": host(f"readlink {PREFIX}").stdout.strip(),
        "running": server(signed_in()),
    }
    state["rollback_again"] = one.pyinfra(script="rollback.py", overrides=settings("next"))

    # old -> a release whose server cannot start: caught by the check, never switched.
    pid = main_pid()
    state["cannot_start"] = one.pyinfra(overrides=settings("cannot-start"), env=BACKUP_ENV)
    state["after_cannot_start"] = {
        "link": host(f"readlink {PREFIX}").stdout.strip(),
        "pid_kept": main_pid() == pid,
        "running": server(signed_in()),
    }

    # old -> a release that passes the check and fails as the service: switched back.
    state["fails_as_service"], state["switch_back_poll"], _ = polled(
        lambda: one.pyinfra(overrides=settings("fails-as-service"), env=BACKUP_ENV)
    )
    state["after_switch_back"] = {
        "link": host(f"readlink {PREFIX}").stdout.strip(),
        "running": answering(),
        "active": host("systemctl is-active jupyter", check=False).stdout.strip(),
    }

    # Back to the release every other test deploys.
    restored = deployment.only(NAME).pyinfra()
    assert restored.returncode == 0, restored.output[-4000:]
    return state


def test_a_new_distribution_is_installed_beside_checked_and_switched(upgrades):
    run, after, name = upgrades["upgrade"], upgrades["after_upgrade"], upgrades["name"]
    assert run.returncode == 0, run.output[-4000:]
    assert f"Checked the new distribution {name['next']}: its jupyter-server" in run.output
    assert "a kernel from it ran a cell" in run.output
    assert "Backed up before the switch" in run.output
    assert f"Switched {PREFIX} from {name['older']} to {name['next']}" in run.output
    assert f"Jupyter runs from {name['next']} (restarted and answering)" in run.output
    assert after["link"] == f"{DISTS}/{name['next']}"
    assert after["previous"] == name["older"]
    # The default release the host started on is older than the previous one: removed.
    assert after["dists"] == sorted([name["next"], name["older"], "previous"])
    assert f"Removed the older distribution {name['default']}" in run.output
    # What the server runs and what a kernel imports are the new release's.
    assert after["running"]["notebook"] != "7.5.8"
    assert after["marker"] == "next\n"
    code, said = upgrades["audit"]
    assert code == 0, said
    assert said.startswith("ok    https://"), said
    assert f"notebook {after['running']['notebook']} running" in said, said
    FIGURES["upgrade run (install beside, check, switch)"] = f"{run.seconds:.0f} s"
    to_switch = upgrades["to_switch"]
    FIGURES["upgrade: from the run's start to the switch's restart"] = (
        "no failed answer seen" if to_switch is None else f"{to_switch:.0f} s"
    )


def test_what_users_built_on_the_previous_distribution_is_listed_and_still_runs(upgrades):
    run, after = upgrades["upgrade"], upgrades["after_upgrade"]
    assert "~/envs/pinned uses Python" in run.output and "of the previous distribution: recreate it" in run.output
    assert "kernel spec pinned runs ~/envs/pinned (listed above)" in run.output
    # Made from conda_prefix with the same Python version: it follows, nothing to say.
    assert "~/envs/follows" not in run.output
    assert after["pinned"].stdout.strip() == f"{DISTS}/{upgrades['name']['older']}"
    assert after["follows"].stdout.strip() == PREFIX


def test_the_upgrade_keeps_the_site_answering_but_for_the_restart(upgrades):
    poll = upgrades["upgrade_poll"]
    FIGURES["api/status downtime during the upgrade's switch"] = f"{poll.downtime():.1f} s"
    assert poll.back_within(30), poll.answers[-5:]


def test_a_rerun_after_the_upgrade_changes_nothing(upgrades):
    again = upgrades["again"]
    assert again.returncode == 0 and again.changed() == {}, again.output[-3000:]


def test_rollback_brings_the_previous_distribution_back_once(upgrades):
    run, after, name = upgrades["rollback"], upgrades["after_rollback"], upgrades["name"]
    assert run.returncode == 0, run.output[-3000:]
    assert f"Switched {PREFIX} back from {name['next']} to {name['older']}" in run.output
    assert after["link"] == f"{DISTS}/{name['older']}"
    assert after["running"]["notebook"] == "7.5.8"
    poll = upgrades["rollback_poll"]
    FIGURES["api/status downtime during rollback.py"] = f"{poll.downtime():.1f} s"
    assert poll.back_within(30), poll.answers[-5:]
    again = upgrades["rollback_again"]
    assert again.returncode == 0 and again.changed() == {}, again.output[-3000:]


def test_a_release_that_cannot_start_is_never_switched_to(upgrades):
    run, after, name = upgrades["cannot_start"], upgrades["after_cannot_start"], upgrades["name"]
    assert run.returncode != 0
    said = f"the new distribution {name['cannot-start']} failed its check, Jupyter stays on {name['older']}"
    assert said in run.output
    assert "this release's server cannot start" in run.output  # the server's own reason
    assert after["link"] == f"{DISTS}/{name['older']}"
    assert after["pid_kept"], "Jupyter was restarted for a distribution that failed its check"
    assert after["running"]["notebook"] == "7.5.8"


def test_a_release_failing_as_the_service_is_switched_back_by_itself(upgrades):
    run, after, name = upgrades["fails_as_service"], upgrades["after_switch_back"], upgrades["name"]
    assert run.returncode != 0
    assert f"Checked the new distribution {name['fails-as-service']}" in run.output
    assert (
        f"switched back to {name['older']}, which Jupyter runs again: the new distribution "
        f"{name['fails-as-service']} failed as the service"
    ) in run.output
    assert "cannot start as jupyter.service" in run.output  # the reason, from the journal
    assert after["link"] == f"{DISTS}/{name['older']}"
    assert after["active"] == "active"
    assert after["running"]["notebook"] == "7.5.8"
    poll = upgrades["switch_back_poll"]
    FIGURES["api/status downtime during the automatic switch back"] = f"{poll.downtime():.1f} s"
    assert poll.back_within(60), poll.answers[-5:]
    runs = ("upgrade", "again", "rollback", "rollback_again", "cannot_start", "fails_as_service")
    TIMINGS["upgrades scenario (its runs)"] = sum(upgrades[run].seconds for run in runs)


def test_the_check_of_a_new_distribution_runs_none_of_the_users_files(upgrades):
    """The check runs in a unit of its own with the service's sandbox, its kernel isolated with
    an IPython directory of its own: the planted startup file and .pth file never ran (before,
    both did, and their process outlived the check, outside the sandbox)."""
    assert upgrades["upgrade"].returncode == 0
    assert upgrades["user code ran"] == "", upgrades["user code ran"]
    assert upgrades["left behind"] == "", upgrades["left behind"]
