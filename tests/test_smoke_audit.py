"""The smoke check's audit without a host: pip-audit's PyPI service reads a stand-in of PyPI's
answers (tests/advisory_feed.py); the host's versions report is a dict as the server's
extension writes it. (Against a real server: tests/e2e/test_restarts.py.)"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import smoke
from smoke import __main__ as smoke_main
from smoke import advisories
from tests.advisory_feed import GHSA, Feed, service
from tests.test_jupyter_activity import load as load_activity_extension

ROOT = Path(__file__).resolve().parent.parent


def report(running: str, installed: str | None = None) -> dict:
    return {
        "distribution": "Debian GNU/Linux 12 (bookworm)",
        "python": "3.12.4",
        "running": {"jupyter-server": running, "notebook": "7.4.5", "tornado": "6.5.2"},
        "installed": {"jupyter-server": installed or running, "notebook": "7.4.5", "tornado": "6.5.2"},
    }


@pytest.fixture
def feed(monkeypatch):
    feed = Feed()
    monkeypatch.setattr(advisories, "advisory_service", lambda timeout: service(feed, timeout))
    return feed


def verdicts(*reports: dict) -> list[smoke.Verdict]:
    return [smoke.Verdict(f"nb{n}", ok=True, versions=r) for n, r in enumerate(reports, 1)]


def test_a_host_running_a_server_with_an_advisory_fails_and_the_report_names_it(feed):
    [host] = verdicts(report("2.14.1"))
    smoke.audit([host], ignored=set())
    assert not host.ok
    assert f"{GHSA}" in host.error and "jupyter-server 2.14.1" in host.error and "fixed in 2.21.0" in host.error
    text = host.line()
    assert text.startswith("FAIL  nb1  ")
    assert "      Debian GNU/Linux 12 (bookworm), Python 3.12.4" in text
    assert "      jupyter-server 2.14.1 running" in text
    assert f"ADVISORY PYSEC-STANDIN-0001 (also {GHSA}) jupyter-server 2.14.1: A token in the Referer" in text
    # pip-audit drops what PyPI lists as withdrawn.
    assert "WITHDRAWN" not in text


@pytest.mark.parametrize("ignore", [GHSA, "PYSEC-STANDIN-0001"])
def test_the_ignore_list_turns_the_failure_into_a_note(feed, ignore):
    [host] = verdicts(report("2.14.1"))
    smoke.audit([host], ignored={ignore})
    assert host.ok, host.error
    assert f"ignored ({ignore}) PYSEC-STANDIN-0001" in host.line()


def test_a_fixed_release_passes(feed):
    [host] = verdicts(report("2.21.1"))
    smoke.audit([host], ignored=set())
    assert host.ok and host.error == ""
    assert "jupyter-server 2.21.1 running" in host.line() and "ADVISORY" not in host.line()


def test_advisories_are_for_what_runs_and_what_is_installed_is_shown_beside_it(feed):
    # A deferred restart: the fixed release is installed, the old one still answers requests.
    [waiting] = verdicts(report("2.14.1", installed="2.21.1"))
    smoke.audit([waiting], ignored=set())
    assert not waiting.ok and "jupyter-server 2.14.1" in waiting.error
    assert "jupyter-server 2.14.1 running (2.21.1 installed: the owed restart applies it)" in waiting.line()
    # The other way round: the running server is fixed, whatever waits on disk.
    [other] = verdicts(report("2.21.1", installed="2.14.1"))
    smoke.audit([other], ignored=set())
    assert other.ok, other.error


def test_each_version_is_looked_up_once_for_the_whole_fleet(feed):
    hosts = verdicts(report("2.14.1"), report("2.14.1"), report("2.21.1"))
    smoke.audit(hosts, ignored=set())
    assert sorted(feed.asked) == sorted(
        {("jupyter-server", "2.14.1"), ("jupyter-server", "2.21.1"), ("notebook", "7.4.5"), ("tornado", "6.5.2")}
    )
    assert [h.ok for h in hosts] == [False, False, True]


# What files/jupyterhub-restart-people answers prints on a per-person host: alice's server
# waits for its restart on 2.21.1, carol's runs 2.14.1, dan's says nothing it runs; the check
# account's server and whatever a person's server made up are dropped.
PEOPLE_ANSWERS = """\
jupyter-alice-0c9e44d1.service kernels=1 kernels_busy=1 terminals=0 terminals_busy=0
jupyter-alice-0c9e44d1.service running jupyter-server 2.21.1
jupyter-alice-0c9e44d1.service running tornado 6.5.2
jupyter-carol-6b1f0e2a.service running jupyter-server 2.14.1
jupyter-carol-6b1f0e2a.service running jupyter-server\x1b[2J 9.9.9
jupyter-carol-6b1f0e2a.service running notebook 7.4.5;reboot
jupyter-dan-1a2b3c4d.service kernels=0 kernels_busy=0 terminals=0 terminals_busy=0
jupyter-smoke-check.service running jupyter-server 1.0.0
jupyter-../../etc.service running jupyter-server 1.0.0
"""


def test_each_persons_server_is_reported_with_what_it_runs_and_what_is_owed(feed):
    people = smoke.people_running(PEOPLE_ANSWERS.splitlines())
    assert people == {
        "alice-0c9e44d1": {"jupyter-server": "2.21.1", "tornado": "6.5.2"},
        "carol-6b1f0e2a": {"jupyter-server": "2.14.1"},
        "dan-1a2b3c4d": {},
    }
    [host] = verdicts(report("2.14.1"))
    host.people = people
    smoke.audit([host], ignored=set())
    text = host.line()
    assert "      alice-0c9e44d1's server:\n        jupyter-server 2.21.1 running (2.14.1 installed" in text, text
    assert "      carol-6b1f0e2a's server:\n        jupyter-server 2.14.1 running\n" in text, text
    assert "dan-1a2b3c4d's server:\n        does not say what it runs" in text, text
    # carol's server's advisory fails the host under her name; alice's, fixed, does not.
    assert f"carol-6b1f0e2a's server: PYSEC-STANDIN-0001 (also {GHSA})" in host.error
    assert "alice-0c9e44d1's server" not in host.error
    assert "9.9.9" not in text and "reboot" not in text and "1.0.0" not in text


def test_a_version_that_could_not_be_looked_up_fails_the_host(monkeypatch):
    feed = Feed(missing={("tornado", "6.5.2")})
    monkeypatch.setattr(advisories, "advisory_service", lambda timeout: service(feed, timeout))
    [host] = verdicts(report("2.21.1"))
    smoke.audit([host], ignored=set())
    assert not host.ok
    assert "advisories for tornado 6.5.2 could not be looked up (Dependency not found on PyPI" in host.error


def test_a_failing_service_is_one_line_per_package(monkeypatch):
    class Down:
        def query(self, dependency):
            raise ConnectionError("Could not connect to PyPI's vulnerability feed\nmore")

    monkeypatch.setattr(advisories, "advisory_service", lambda timeout: Down())
    [host] = verdicts(report("2.21.1"))
    smoke.audit([host], ignored=set())
    assert (
        "advisories for jupyter-server 2.21.1 could not be looked up (ConnectionError: Could not connect" in host.error
    )
    assert "more" not in host.error


def test_hosts_that_gave_no_report_are_left_as_they_are(feed):
    failed = smoke.Verdict("nb9", ok=False, error="LoginFailed: login answered 403")
    smoke.audit([failed], ignored=set())
    assert failed.error == "LoginFailed: login answered 403" and feed.asked == []


def test_ignore_vuln_goes_with_audit(monkeypatch, capsys):
    monkeypatch.setenv("JUPYTER_PASSWORD", "x")
    with pytest.raises(SystemExit) as exit:
        smoke_main.main(["--ignore-vuln", GHSA, "nb1.example.org"])
    assert exit.value.code == 2
    assert "--ignore-vuln goes with --audit" in capsys.readouterr().err


def test_the_extension_reports_the_server_packages_as_running_and_as_installed(monkeypatch, tmp_path):
    extension = load_activity_extension()
    monkeypatch.setattr(extension, "RUNNING", {"jupyter-server": "2.14.1", "tornado": "6.5.2", "jinja2": "3.1.6"})
    monkeypatch.setattr(extension, "server_versions", lambda: {"jupyter-server": "2.21.1", "tornado": "6.5.2"})
    os_release = tmp_path / "os-release"
    os_release.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 13 (trixie)"\n')
    monkeypatch.setattr(extension, "OS_RELEASE", str(os_release))
    answer = extension.versions_report()
    assert answer["distribution"] == "Debian GNU/Linux 13 (trixie)"
    assert answer["running"] == {"jupyter-server": "2.14.1", "tornado": "6.5.2"}  # the server's own only
    assert answer["installed"] == {"jupyter-server": "2.21.1", "tornado": "6.5.2"}
    assert answer["python"].count(".") == 2
    # What the audit looks up is what runs.
    assert advisories.packages_to_look_up(answer) == {("jupyter-server", "2.14.1"), ("tornado", "6.5.2")}


def test_the_smoke_check_without_audit_needs_no_pip_audit():
    # scripts/ci-deploy runs the smoke check from hash-pinned tools that do not include it.
    code = "import sys, smoke, smoke.__main__; assert 'pip_audit' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_audit_without_pip_audit_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setenv("JUPYTER_PASSWORD", "x")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pip_audit" else real(name, *a))
    assert smoke_main.main(["--audit", "nb1.example.org"]) == 2
    assert "--audit needs pip-audit: .venv/bin/pip install '.[audit]'" in capsys.readouterr().err


def test_what_the_server_says_reaches_the_terminal_only_as_names_and_versions():
    # Whoever has the password can shape the server's answer: no escape sequences through it.
    shaped = {
        "distribution": "Debian\x1b]0;owned\x07 12\n",
        "python": "3.12\x1b[2J",
        "running": {"jupyter-server": "2.14.1", "tornado": "6.5\x1b[31m", "EVIL\n": "1", "notebook": 7},
        "installed": "nonsense",
        "extra": "dropped",
    }
    assert smoke.clean_versions(shaped) == {
        "distribution": "Debian]0;owned 12",
        "python": "unknown",
        "running": {"jupyter-server": "2.14.1"},
        "installed": {},
    }
    with pytest.raises(ValueError, match="not a JSON object"):
        smoke.clean_versions(["jupyter-server", "2.14.1"])
