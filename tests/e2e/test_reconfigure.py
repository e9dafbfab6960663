"""
Changing one setting on one host and re-running converges: the new URL works, the old one
is gone, only that host's affected services restart, and the other hosts are untouched.
Runs after test_deploy.py (same session deployment).
"""

import pytest

from smoke.client import Jupyter
from tests.e2e.scenario import PASSWORD


def main_pid(deployment, name, unit):
    return deployment.ssh(name, f"systemctl show -p MainPID --value {unit}").stdout.strip()


@pytest.fixture(scope="module")
def reconfigured(deployment):
    before = {name: main_pid(deployment, name, "jupyter") for name in deployment.names}
    dry = deployment.pyinfra("--dry", overrides={"nb2": {"jupyter_base_url": "/lab/"}}, yes=False)
    assert dry.returncode == 0, dry.output[-3000:]
    assert main_pid(deployment, "nb2", "jupyter") == before["nb2"], "the dry run changed something"
    run = deployment.pyinfra(overrides={"nb2": {"jupyter_base_url": "/lab/"}})
    after = {name: main_pid(deployment, name, "jupyter") for name in deployment.names}
    again = deployment.pyinfra(overrides={"nb2": {"jupyter_base_url": "/lab/"}})
    yield run, before, after, again, dry
    # Leave the session's deployment as the other tests expect it.
    restore = deployment.pyinfra()
    assert restore.returncode == 0, restore.output[-3000:]


def test_new_base_url_works_and_old_one_is_gone(deployment, ca_files, reconfigured):
    run, *_ = reconfigured
    assert run.returncode == 0, run.output[-3000:]
    new = Jupyter(f"https://{deployment.address('nb2')}/lab/", ca_file=str(ca_files["nb2"]))
    new.login(PASSWORD)
    assert new.execute("print(6*7)") == "42\n"
    old = Jupyter(f"https://{deployment.address('nb2')}/jupyter/", ca_file=str(ca_files["nb2"]))
    assert old.get("login").status_code == 404


def test_only_the_changed_host_and_its_affected_services_changed(deployment, reconfigured):
    run, before, after, *_ = reconfigured
    changed = run.changed()
    assert list(changed) == [deployment.address("nb2")]
    assert sorted(changed[deployment.address("nb2")]) == sorted(
        [
            "Jupyter Notebook service | Jupyter server config",
            "Jupyter Notebook service | systemd unit",
            "Jupyter Notebook service | Jupyter running with its current config and packages",
            "Apache reverse proxy | Jupyter vhost (:80 redirect, :443 proxy)",
            "Apache reverse proxy | Reload Apache (after configtest)",
        ]
    )
    assert after["nb2"] != before["nb2"], "Jupyter on nb2 was not restarted"
    assert after["nb1"] == before["nb1"] and after["nb3"] == before["nb3"], "an unchanged host restarted Jupyter"


def test_dry_run_predicted_what_the_run_then_changed(reconfigured):
    """Every certain change happened, on exactly those hosts; beyond them only the predicted
    conditional ones (reload, restart), which follow a change on the same host."""
    run, _, _, _, dry = reconfigured
    certain, possible, actual = dry.predicted(), dry.predicted(conditional=True), run.changed()
    assert certain and set(certain) == set(actual)
    for address, changed in actual.items():
        assert set(certain[address]) <= set(changed) <= set(certain[address]) | set(possible.get(address, []))


def test_run_after_the_change_changes_nothing(reconfigured):
    _, _, _, again, _ = reconfigured
    assert again.returncode == 0
    assert again.changed() == {}
