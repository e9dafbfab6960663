"""
The other ways users run the deploy, against the converged session hosts: ad hoc
(`pyinfra HOST deploy.py`, which loads no group_data) gets the same defaults, and a
password change ends every old session and shows neither the password nor anything of its
hash (digest, salt, the file's checksum), even with --diff and -vvv.
"""

import hashlib
import json
import subprocess
import sys

import pytest

from smoke import check
from smoke.client import Jupyter, LoginFailed
from tests.e2e.scenario import LAB_DATA, MACHINES, PASSWORD, ROOT


def run_with_data(deployment, target: str, env: dict | None = None, extra=()):
    """`pyinfra -y --json --data ... TARGET deploy.py`, with only what a lab host needs as data."""
    data = {
        **deployment.lab.ssh_data(),
        "conda_installer_url": deployment.installer_url,
        "conda_installer_sha256": deployment.installer_sha256,
        **{key: json.dumps(value) for key, value in LAB_DATA.items()},
    }
    args = [arg for key, value in data.items() for arg in ("--data", f"{key}={value}")]
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--json", *args, *extra, target, "deploy.py"],
        cwd=ROOT,
        env={"JUPYTER_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)["results"]["totals"]


def test_ad_hoc_run_uses_the_same_defaults_as_the_inventory_run(deployment):
    """No group_data is loaded for `pyinfra HOST deploy.py`: the defaults must still match."""
    totals = run_with_data(deployment, deployment.address("nb1"))
    assert totals["success"] == 0 and totals["error"] == 0 and totals["no_change"] > 0


def test_ad_hoc_run_with_a_setting_from_the_command_line(deployment, ca_files):
    """`pyinfra HOST deploy.py --data jupyter_base_url=/adhoc/`: that host moves, no other."""
    nb3 = deployment.address("nb3")
    try:
        totals = run_with_data(deployment, nb3, extra=["--data", "jupyter_base_url=/adhoc/"])
        assert totals["success"] > 0 and totals["error"] == 0
        verdict = check(nb3, PASSWORD, "/adhoc/", str(ca_files["nb3"]))
        assert verdict.ok, verdict.line()
        assert not check(deployment.address("nb3"), PASSWORD, "/jupyter/", str(ca_files["nb3"]), timeout=5).ok
        assert check(deployment.address("nb2"), PASSWORD, "/jupyter/", str(ca_files["nb2"])).ok
    finally:
        restored = deployment.pyinfra()
        assert restored.returncode == 0, restored.output[-3000:]
    assert check(nb3, PASSWORD, "/jupyter/", str(ca_files["nb3"])).ok


def test_the_repository_inventory_with_hosts_from_the_environment(deployment):
    """`pyinfra inventory.py deploy.py` as the README says, hosts given in JUPYTER_HOSTS."""
    # The hosts with default settings (others would be reconfigured to the defaults).
    names = [name for name, _ in MACHINES if not deployment.data.get(name)]
    addresses = ",".join(deployment.address(name) for name in names)
    totals = run_with_data(deployment, "inventory.py", env={"JUPYTER_HOSTS": addresses})
    assert totals["success"] == 0 and totals["error"] == 0
    assert totals["no_change"] >= len(names) * 10


def hash_secrets(stored: str) -> list[str]:
    """What of a stored hash line lets one test guesses offline: the line, its digest, salt, file checksum."""
    return [
        stored,
        stored.rsplit("$", 1)[1],
        stored.split("$")[4],
        hashlib.sha256((stored + "\n").encode()).hexdigest(),
    ]


def test_password_change_ends_old_sessions_and_shows_no_secret_even_with_diff_and_debug_output(deployment, ca_files):
    new_password = "a brand new password 1234"
    old_session = Jupyter(f"https://{deployment.address('nb1')}/jupyter/", ca_file=str(ca_files["nb1"]))
    old_session.login(PASSWORD)
    assert old_session.api("GET", "contents").status_code == 200
    before = deployment.ssh("nb1", "cat /etc/jupyter/password_hash").stdout.strip()
    changed = deployment.pyinfra("--diff", "-vvv", password=new_password)
    try:
        assert changed.returncode == 0, changed.output[-3000:]
        assert changed.changed() == {
            deployment.address(name): [
                "Jupyter Notebook service | Jupyter password hash (never shown)",
                "Jupyter Notebook service | Jupyter running with its current config and packages",
            ]
            for name in deployment.names
        }
        stored = deployment.ssh("nb1", "cat /etc/jupyter/password_hash").stdout.strip()
        assert stored.startswith("argon2:$argon2id$")
        assert "/etc/jupyter/password_hash" in changed.output  # -vvv printed the fact commands
        for secret in (new_password, PASSWORD, *hash_secrets(before), *hash_secrets(stored)):
            assert secret not in changed.output
        mode = deployment.ssh("nb1", "stat -c '%U:%G:%a' /etc/jupyter/password_hash").stdout.strip()
        assert mode == "root:jupyter:640"
        # Jupyter mixes the stored hash into its cookie secret: the old login is worth nothing now.
        response = old_session.session.get(
            old_session.base + "api/contents", verify=old_session.verify, timeout=20, allow_redirects=False
        )
        assert response.status_code == 403, response.status_code
        new_session = Jupyter(old_session.base, ca_file=str(ca_files["nb1"]))
        new_session.login(new_password)
        assert new_session.api("GET", "contents").status_code == 200
        with pytest.raises(LoginFailed):
            Jupyter(old_session.base, ca_file=str(ca_files["nb1"])).login(PASSWORD)
    finally:
        restored = deployment.pyinfra("--diff", "-vvv")
        assert restored.returncode == 0, restored.output[-3000:]
    # The restoring run read the new file (its salt) before it wrote the old password's hash.
    for secret in (new_password, PASSWORD, *hash_secrets(stored)):
        assert secret not in restored.output
