"""The login-ban filter against Jupyter's log lines as fail2ban reads them from the journal
("HOSTNAME IDENTIFIER[PID]: MESSAGE"), with fail2ban's own fail2ban-regex."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILTER = ROOT / "files" / "fail2ban-jupyter-login.conf"
JOURNAL = ROOT / "tests" / "fixtures" / "jupyter-journal.log"
# .ci/run unpacks Debian's fail2ban package here (installing it would start its daemon).
UNPACKED = ROOT / ".venv" / "fail2ban"


def fail2ban_regex() -> list[str] | None:
    if shutil.which("fail2ban-regex"):
        return ["fail2ban-regex"]
    script = UNPACKED / "usr" / "bin" / "fail2ban-regex"
    return ["/usr/bin/python3", str(script)] if script.exists() else None


needs_fail2ban = pytest.mark.skipif(fail2ban_regex() is None, reason="fail2ban is unpacked by .ci/run")


@needs_fail2ban
def test_only_wrong_passwords_at_the_login_form_count_with_the_clients_address():
    env = dict(os.environ, PYTHONPATH=str(UNPACKED / "usr" / "lib" / "python3" / "dist-packages"))
    result = subprocess.run(
        [*fail2ban_regex(), "--raw", str(JOURNAL), str(FILTER)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^Lines: 8 lines, 0 ignored, 3 matched, 5 missed", result.stdout, re.M), result.stdout
    # Wrong passwords (any base URL, IPv4 and IPv6, with or without ?next=) count for the
    # address Jupyter logged; never a missing _xsrf (403), another page's 401, a correct
    # login, nor an address a client wrote into its referer or query string.
    ips = subprocess.run(
        [*fail2ban_regex(), "--raw", "--out", "ip", str(JOURNAL), str(FILTER)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    ).stdout.split()
    assert ips == ["203.0.113.1", "2001:db8::2", "203.0.113.7"]
