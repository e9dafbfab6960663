"""The smoke check's own rules, without a deployed host: what a host's answer may print, the
hints of its messages, and the single sign-on check against a local HTTPS stand-in (a page that
sends the browser to a provider, 401 for the API) with the on-host cell answer given.

The real-host proof (an oidc host checked from outside and over SSH, a canary whose broken
server stops the rollout) is tests/e2e/test_single_sign_on.py.
"""

from __future__ import annotations

import base64
import json
import shlex
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

import smoke
from operations import backups, hub, jupyter, os_updates, sign_in
from smoke import __main__ as smoke_main
from tests import apache_local

ROOT = Path(__file__).resolve().parent.parent

NAME = "nb.sso.test"


def test_what_a_host_says_reaches_the_terminal_as_printable_text_only():
    # A kernel's traceback rewrote the line on a terminal: erase it, go to column 1, say "ok".
    forged = "the cell failed:\x1b[2K\x1b[1Gok    nb1  login 0.1 s\r\n"
    verdict = smoke.Verdict(
        "nb1\x1b[31m", ok=False, error=forged, notes=["backup\x07 1 h ago"], details=["x\x1b]0;t\x07"]
    )
    line = verdict.line()
    assert "\x1b" not in line and "\r" not in line and "\x07" not in line
    assert line.startswith("FAIL  nb1[31m  the cell failed:[2K[1Gok    nb1  login 0.1 s")
    assert line.count("\n") == 1  # the one detail line, nothing a host sent


def test_an_untrusted_certificate_says_how_to_trust_a_self_signed_one():
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert "--ca-file" in smoke.why(error) and "/etc/ssl/certs/jupyter-apache.crt" in smoke.why(error)
    assert "not the certificate --ca-file trusts" in smoke.why(error, ca_file="/tmp/nb.crt")
    assert "JUPYTER_PASSWORD" in smoke.why(smoke.LoginFailed("login answered 401"))


def test_help_says_where_the_password_comes_from(capsys):
    with pytest.raises(SystemExit):
        smoke_main.main(["--help"])
    shown = capsys.readouterr().out
    assert "JUPYTER_PASSWORD" in shown and "--ssh-key" in shown and "jupyter-apache.crt" in shown


def test_the_smoke_check_names_what_the_deploy_installs():
    assert smoke.BACKUP_STATUS == backups.STATUS_FILE
    assert smoke.OS_STATUS == os_updates.STATUS_FILE
    assert (smoke.PROXY_SECRET, smoke.SECRET_HEADER, smoke.USER_HEADER) == (
        sign_in.PROXY_SECRET,
        sign_in.SECRET_HEADER,
        sign_in.USER_HEADER,
    )
    layout = jupyter.layout
    assert (smoke.JUPYTER_UNIT, smoke.CELL_CHECK, smoke.CELL_CHECK_CLIENT, smoke.RESTART_SCRIPT) == (
        layout.UNIT,
        layout.CELL_CHECK,
        layout.CELL_CHECK_CLIENT,
        layout.RESTART_SCRIPT,
    )
    words = shlex.split(smoke.cell_check_command("/lab/"))
    assert words[:5] == [layout.CELL_CHECK, "--unit", layout.UNIT, "--client", layout.CELL_CHECK_CLIENT]
    assert words[5:10] == ["--restart", layout.RESTART_SCRIPT, "--unit", layout.UNIT, "--"]
    assert words[10:14] == ["/lab/", sign_in.PROXY_SECRET, sign_in.SECRET_HEADER, sign_in.USER_HEADER]
    assert base64.b64decode(words[14]).decode() == smoke.CELL and len(words) == 15
    assert (smoke.HUB_SMOKE_TOKEN, smoke.HUB_CHECK_NAME) == (hub.layout.SMOKE_TOKEN, hub.layout.CHECK_NAME)
    assert smoke.PEOPLE_SERVERS == hub.restarts.script_command()
    assert smoke.PEOPLE_ANSWERS_COMMAND == f"{hub.restarts.script_command()} answers"


def test_the_smoke_check_does_not_load_the_deploy():
    """pyinfra's command line patches the whole process with gevent when it is imported (a
    warning on every run, and threads, sockets and ssl changed under the check)."""
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, smoke, smoke.__main__; "
            "print(sorted(m for m in sys.modules if m.startswith(('operations', 'pyinfra_cli'))))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "[]" and "MonkeyPatchWarning" not in found.stderr


class SignOnHost(apache_local.LoopbackHTTPS):
    """Answers as a single sign-on host does: a page goes to the provider, the API gets 401 (or
    ``api_status``)."""

    def __init__(self, cert: str, key: str, api_status: int = 401, page_location: str | None = None):
        location = page_location or "https://login.example.org/authorize?client_id=jupyter-nb&state=x"

        def answer(path, headers, sni):
            if path.startswith("/jupyter/api/"):
                return api_status, {}, b""
            return 302, {"Location": location}, b""

        super().__init__(cert, key, answer)


@pytest.fixture
def keypair(tmp_path):
    return apache_local.keypair(tmp_path, NAME)


def checked(keypair, answer: str, **host) -> smoke.Verdict:
    cert, key = keypair
    server = SignOnHost(cert, key, **host)
    try:
        url = f"https://{NAME}:{server.port}/jupyter/"
        assert smoke.is_single_sign_on(url, ca_file=str(cert), connect_to="127.0.0.1")
        return smoke.check_single_sign_on(url, lambda: answer, ca_file=str(cert), connect_to="127.0.0.1")
    finally:
        server.close()


def cell(output: str, ok: bool = True) -> str:
    return json.dumps({"ok": ok, "output": output, "seconds": {"kernel": 0.4, "cell": 0.1}}) + "\n"


def test_a_single_sign_on_host_passes_with_its_cell_run_on_the_host(keypair):
    verdict = checked(keypair, cell("42\n{}\n"))
    # Everything passed but the stand-in's one-day certificate, which the check reads and judges.
    assert verdict.error == "the certificate expires in 1.0 days (under 14: is renewal working?)"
    assert "certificate 1 days left" in verdict.notes
    assert {"sign-in redirect", "api", "cell on the host"} <= set(verdict.timings)


@pytest.mark.parametrize(
    "answer,host,said",
    [
        (cell("41\n"), {}, "the cell printed '41', not '42' first"),
        (json.dumps({"ok": False, "error": "Jupyter is not running on this host"}), {}, "on the host: Jupyter is"),
        ("bash: jupyter-cell-check: not found\n", {}, "said nothing it understands: bash: jupyter-cell-check"),
        (cell("42\n"), {"api_status": 200}, "the API answered 200 without a session, not 401"),
        (cell("42\n"), {"page_location": "/jupyter/login"}, "not a redirect to the sign-in provider"),
    ],
)
def test_a_broken_single_sign_on_host_fails_with_the_reason(keypair, answer, host, said):
    if "page_location" in host:
        cert, key = keypair
        server = SignOnHost(cert, key, **host)
        try:
            url = f"https://{NAME}:{server.port}/jupyter/"
            verdict = smoke.check_single_sign_on(url, lambda: answer, ca_file=str(cert), connect_to="127.0.0.1")
        finally:
            server.close()
    else:
        verdict = checked(keypair, answer, **host)
    assert not verdict.ok and said in verdict.error, verdict.error


def test_a_cell_printing_escape_sequences_fails_as_printable_text(keypair):
    verdict = checked(keypair, cell("\x1b[2K\x1b[1Gok 42\n"))
    assert not verdict.ok and "\x1b" not in verdict.line()
