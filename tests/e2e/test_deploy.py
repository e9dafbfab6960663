"""
Three fresh hosts (two Debian 12, one Debian 13) deployed in one run of the real CLI, then
checked from outside through Apache the way a browser uses them.
"""

import pytest
import requests

from smoke.client import Jupyter, LoginFailed
from tests.e2e.scenario import MACHINES, PASSWORD

NAMES = [name for name, _ in MACHINES]


def client(deployment, ca_files, name, base="/jupyter/"):
    return Jupyter(f"https://{deployment.address(name)}{base}", ca_file=str(ca_files[name]))


@pytest.mark.parametrize("name", NAMES)
def test_login_page_is_served_over_https(deployment, ca_files, name):
    jupyter = client(deployment, ca_files, name)
    page = jupyter.get("")
    assert page.status_code == 200
    assert "/jupyter/login" in page.url
    assert 'type="password"' in page.text


@pytest.mark.parametrize("name", NAMES)
def test_wrong_password_is_refused(deployment, ca_files, name):
    jupyter = client(deployment, ca_files, name)
    with pytest.raises(LoginFailed, match="401"):
        jupyter.login("not the password")
    assert not any(c.name.startswith("username-") for c in jupyter.session.cookies)
    assert jupyter.get("api/contents").status_code == 403


@pytest.mark.parametrize("name", NAMES)
def test_right_password_logs_in_with_a_secure_httponly_cookie(deployment, ca_files, name):
    jupyter = client(deployment, ca_files, name)
    response = jupyter.login(PASSWORD)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("username-")
    assert "; Secure" in cookie and "; HttpOnly" in cookie
    assert jupyter.get("api/contents").status_code == 200


@pytest.mark.parametrize("name", NAMES)
def test_kernel_runs_a_cell_over_the_websocket_through_apache(deployment, ca_files, name):
    jupyter = client(deployment, ca_files, name)
    jupyter.login(PASSWORD)
    assert jupyter.execute("print(6*7)") == "42\n"


@pytest.mark.parametrize("name", NAMES)
def test_events_websocket_connects(deployment, ca_files, name):
    jupyter = client(deployment, ca_files, name)
    jupyter.login(PASSWORD)
    ws = jupyter.websocket("api/events/subscribe")
    assert ws.connected
    ws.close()


@pytest.mark.parametrize("name", NAMES)
def test_terminal_echoes_a_command(deployment, ca_files, name):
    jupyter = client(deployment, ca_files, name)
    jupyter.login(PASSWORD)
    assert "hi-42" in jupyter.terminal_echo("echo hi-$((6*7))", expect="hi-42")


@pytest.mark.parametrize("name", NAMES)
def test_plain_http_redirects_to_https_keeping_path_and_query(deployment, name):
    address = deployment.address(name)
    response = requests.get(f"http://{address}/jupyter/tree?a=1&b=2", allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{address}/jupyter/tree?a=1&b=2"


@pytest.mark.parametrize("name", NAMES)
def test_jupyter_listens_on_loopback_only(deployment, name):
    listeners = deployment.ssh(name, "ss -Hltn").stdout
    assert "127.0.0.1:8888" in listeners
    assert "0.0.0.0:8888" not in listeners and "*:8888" not in listeners and "[::]:8888" not in listeners


def test_first_run_changed_every_host(deployment):
    first = deployment.runs["first"]
    assert first.returncode == 0
    changed = first.changed()
    assert sorted(changed) == sorted(deployment.address(n) for n in deployment.names)


def test_second_run_changes_nothing_on_any_host(deployment):
    second = deployment.runs["second"]
    assert second.returncode == 0, second.output[-3000:]
    assert second.totals["success"] == 0 and second.totals["error"] == 0
    assert second.changed() == {}
    assert second.totals["no_change"] > 0


def test_dry_run_after_it_predicts_no_change(deployment):
    dry = deployment.runs["dry"]
    assert dry.returncode == 0, dry.output[-3000:]
    assert dry.report["plan"], "the dry run planned no operations at all"
    assert dry.predicted() == {}


def test_debian_13_host_is_part_of_the_run(deployment):
    assert "trixie" in deployment.ssh("nb3", ". /etc/os-release; echo $VERSION_CODENAME").stdout
    assert "bookworm" in deployment.ssh("nb1", ". /etc/os-release; echo $VERSION_CODENAME").stdout
