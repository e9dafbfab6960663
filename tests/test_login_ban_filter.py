"""
The login-ban filter, with fail2ban's own fail2ban-regex: against fixed lines in the format of
the vhost's login log, and against the log a real Apache on loopback writes from the deploy's
vhost (the address is the TCP peer's, whatever headers the client sends).
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from operations import apache
from tests import apache_local

ROOT = Path(__file__).resolve().parent.parent
FILTER = ROOT / "files" / "fail2ban-jupyter-login.conf"
LOG = ROOT / "tests" / "fixtures" / "apache-login.log"
# .ci/run unpacks Debian's fail2ban package here (installing it would start its daemon).
UNPACKED = ROOT / ".venv" / "fail2ban"


def fail2ban_regex() -> list[str] | None:
    if shutil.which("fail2ban-regex"):
        return ["fail2ban-regex"]
    script = UNPACKED / "usr" / "bin" / "fail2ban-regex"
    return ["/usr/bin/python3", str(script)] if script.exists() else None


needs_fail2ban = pytest.mark.skipif(fail2ban_regex() is None, reason="fail2ban is unpacked by .ci/run")


def matched(log: Path, *options: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(UNPACKED / "usr" / "lib" / "python3" / "dist-packages"))
    argv = [*fail2ban_regex(), "--raw", *options, str(log), str(FILTER)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


@needs_fail2ban
def test_only_wrong_passwords_posted_to_the_login_form_count():
    result = matched(LOG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^Lines: 9 lines, 0 ignored, 4 matched, 5 missed", result.stdout, re.M), result.stdout
    # 401 answers to POSTs (any base URL, IPv4 and IPv6) count; never a missing _xsrf (403),
    # a page view, a correct login (302), a refused check (503) or a 401 to a GET. Two
    # addresses of one IPv6 /64 are one client.
    assert matched(LOG, "--out", "ip").stdout.split() == [
        "203.0.113.1",
        "2001:db8:0:7::/64",
        "203.0.113.7",
        "2001:db8:0:7::/64",
    ]


@needs_fail2ban
@pytest.mark.skipif(not apache_local.available(), reason="apache2-bin is installed by .ci/run")
def test_apache_logs_the_peer_whatever_the_client_claims(tmp_path):
    import requests
    import urllib3

    urllib3.disable_warnings()
    # Jupyter's login form: 401 to every POST (a wrong password), 200 to a GET.
    backend = apache_local.Backend({"POST": 401, "GET": 200})
    cert, key = apache_local.keypair(tmp_path)
    vhost = apache_local.vhost("127.0.0.1", cert, key, jupyter_port=backend.port)
    vhost = vhost[vhost.index("<VirtualHost *:443>") :].replace("<VirtualHost *:443>", "<VirtualHost 127.0.0.1:18445>")
    vhost = vhost.replace("<VirtualHost 127.0.0.1:18445>", "<VirtualHost 127.0.0.1:18445 [::1]:18445>")
    vhost = vhost.replace("(:443)?", "(:18445)?")
    listen = ["127.0.0.1:18445", "[::1]:18445"]
    config = apache_local.server_config(tmp_path, vhost, apache_local.VHOST_MODULES, listen=listen)
    base = "https://127.0.0.1:18445/jupyter/"
    spoofed = {"X-Forwarded-For": "203.0.113.99", "X-Real-IP": "203.0.113.98", "Client-IP": "203.0.113.97"}
    with apache_local.LoopbackApache(config):
        for _ in range(3):
            requests.post(base + "login", data={"password": "x"}, headers=spoofed, verify=False, timeout=10)
        requests.get(base + "login", verify=False, timeout=10)
        # Another path whose query names the login form and an address: not logged.
        requests.post(base + "api/x?login (@203.0.113.96)", data={"a": "b"}, verify=False, timeout=10)
        # Over IPv6 (the Host still the server name): logged as the peer's /64.
        requests.post(
            "https://[::1]:18445/jupyter/login",
            data={"password": "x"},
            headers={"Host": "127.0.0.1:18445"},
            verify=False,
            timeout=10,
        )
    log = tmp_path / apache.LOGIN_LOG_NAME
    lines = log.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["127.0.0.1 401 POST /jupyter/login"] * 3 + [
        "127.0.0.1 200 GET /jupyter/login",
        "::1/64 401 POST /jupyter/login",
    ], lines
    assert matched(log, "--out", "ip").stdout.split() == ["127.0.0.1"] * 3 + ["::/64"]
