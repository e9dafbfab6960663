"""
The optional Basic-auth layer (setting basic_auth_user, off by default): on one host it
asks for a second login before Jupyter is reached, everything works through it, re-runs
change nothing, and switching it off removes it again.
"""

import hashlib
import os
import time

import pytest
import requests

from lab.clients import ClientAddress
from smoke.client import Jupyter
from tests.e2e import login_traffic
from tests.e2e.scenario import PASSWORD

USER, BASIC_PASSWORD = "alice", "second factor, lab only"


def nb1(deployment, ca_files, basic_auth=None):
    return Jupyter(f"https://{deployment.address('nb1')}/jupyter/", ca_file=str(ca_files["nb1"]), basic_auth=basic_auth)


@pytest.fixture(scope="module")
def kernel(deployment, ca_files):
    """A kernel with state, started before Basic auth is switched on (an Apache-only change)."""
    jupyter = nb1(deployment, ca_files)
    jupyter.login(PASSWORD)
    kernel = jupyter.start_kernel()
    jupyter.execute_in(kernel, "x = 41")
    return kernel


@pytest.fixture(scope="module")
def basic_auth(deployment, kernel):
    os.environ["JUPYTER_BASIC_AUTH_PASSWORD"] = BASIC_PASSWORD
    try:
        overrides = {"nb1": {"basic_auth_user": USER}}
        on = deployment.pyinfra(overrides=overrides)
        # With everything pyinfra can print: fact output, commands, diffs.
        again = deployment.pyinfra("-vvv", "--diff", overrides=overrides)
        yield on, again
    finally:
        off = deployment.pyinfra()
        del os.environ["JUPYTER_BASIC_AUTH_PASSWORD"]
        assert off.returncode == 0, off.output[-3000:]
        assert deployment.ssh("nb1", "test ! -e /etc/apache2/jupyter.htpasswd", check=False).returncode == 0


def test_without_the_second_login_apache_answers_401(deployment, ca_files, basic_auth):
    on, _ = basic_auth
    assert on.returncode == 0, on.output[-3000:]
    response = requests.get(
        f"https://{deployment.address('nb1')}/jupyter/login", verify=str(ca_files["nb1"]), timeout=10
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Jupyter"'
    wrong = requests.get(
        f"https://{deployment.address('nb1')}/jupyter/login",
        auth=(USER, "wrong"),
        verify=str(ca_files["nb1"]),
        timeout=10,
    )
    assert wrong.status_code == 401


def test_with_both_logins_notebooks_work(deployment, ca_files, basic_auth):
    jupyter = nb1(deployment, ca_files, basic_auth=(USER, BASIC_PASSWORD))
    jupyter.login(PASSWORD)
    assert jupyter.execute("print(6*7)") == "42\n"


def test_an_apache_only_change_reloads_apache_and_keeps_running_kernels(deployment, ca_files, kernel, basic_auth):
    on, _ = basic_auth
    changed = on.changed()[deployment.address("nb1")]
    assert "Apache reverse proxy | Reload Apache (after configtest)" in changed
    assert not [op for op in changed if op.startswith("Jupyter Notebook service")], changed
    jupyter = nb1(deployment, ca_files, basic_auth=(USER, BASIC_PASSWORD))
    jupyter.login(PASSWORD)
    assert jupyter.execute_in(kernel, "print(x + 1)") == "42\n"


def test_htpasswd_is_bcrypt_private_and_stable(deployment, basic_auth):
    _, again = basic_auth
    assert again.changed() == {}, again.changed()
    line = deployment.ssh("nb1", "cat /etc/apache2/jupyter.htpasswd").stdout.strip()
    assert line.startswith(f"{USER}:$2y$")
    assert (
        deployment.ssh("nb1", "stat -c '%U:%G:%a' /etc/apache2/jupyter.htpasswd").stdout.strip() == "root:www-data:640"
    )
    for run in basic_auth:
        assert BASIC_PASSWORD not in run.output and line not in run.output
    # bcrypt's salt and the file's checksum are enough to test guesses offline.
    salt = line.split("$")[3][:22]
    file_sha256 = hashlib.sha256((line + "\n").encode()).hexdigest()
    assert "/etc/apache2/jupyter.htpasswd" in again.output  # -vvv printed the fact commands
    assert salt not in again.output and file_sha256 not in again.output


def test_other_hosts_have_no_second_login(deployment, ca_files, basic_auth):
    response = requests.get(
        f"https://{deployment.address('nb2')}/jupyter/login", verify=str(ca_files["nb2"]), timeout=10
    )
    assert response.status_code == 200


def test_wrong_basic_auth_passwords_get_an_address_banned(deployment, ca_files, basic_auth):
    """The login-ban jail for Basic auth (fail2ban's apache-auth filter on the vhost's error log)."""
    url, ca = f"https://{deployment.address('nb1')}/jupyter/", str(ca_files["nb1"])
    with ClientAddress("basic", "169.254.77.104") as guesser:
        attempts = login_traffic.run(guesser, "basic", url, ca, "--count", "5", "--interval", "0.2")["attempts"]
        assert [a["status"] for a in attempts] == [401] * 5
        deadline = time.monotonic() + 15
        while login_traffic.reachable(guesser, url, ca):
            assert time.monotonic() < deadline, "5 wrong Basic-auth passwords did not get the address banned"
            time.sleep(0.5)
        # This machine, in login_ban_ignore, still gets in (and a wrong password is still a 401).
        assert requests.get(url + "login", auth=(USER, "wrong"), verify=ca, timeout=10).status_code == 401
        status = deployment.ssh("nb1", "fail2ban-client status jupyter-basic-auth >/dev/null && echo running").stdout
        assert status.strip() == "running"
