"""files/jupyterhub-restart-people with stand-ins for systemctl and the single server's restart
script (no host, no root): which people's servers it says are owed a restart, and what it makes
of each one's restart. The real-host proof is tests/e2e/test_per_person.py."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from operations.hub import layout, restarts

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "files" / "jupyterhub-restart-people"

# systemctl: three services named like people's servers; only two are in the people's slice
# (jupyter-restart-when-idle.service is the single server's restart, in system.slice).
FAKE_SYSTEMCTL = f"""#!/bin/bash
echo "$*" >>"$FAKE/calls"
case "$1" in
    list-units) printf '%s loaded active running x\\n' jupyter-alice-0c9e44d1.service \\
        jupyter-restart-when-idle.service jupyter-carol-6b1f0e2a.service ;;
    show)
        case "$3" in
            Slice) [[ $5 == jupyter-restart-when-idle.service ]] && echo system.slice || echo {layout.SLICE} ;;
        esac ;;
    is-active) [ -f "$FAKE/active.$3" ] ;;
esac
"""
# The single server's restart script: "started" reads ./started.UNIT, "versions" prints
# ./versions.NAME, "restart" writes ./said.NAME to its report (nothing: restarted at once).
FAKE_RESTART = """#!/bin/bash
echo "restart-script $*" >>"$FAKE/calls"
while [[ $1 == --* ]]; do
    [ "$1" = --unit ] && unit=$2
    shift 2
done
name=${unit#jupyter-}
name=${name%.service}
case "$1" in
    started) date -d "$(cat "$FAKE/started.$unit")" +%s ;;
    versions) cat "$FAKE/versions.$name" 2>/dev/null || true ;;
    restart) cat "$FAKE/said.$name" >"$4" 2>/dev/null || : >"$4" ;;
esac
"""
ALICE, CAROL = "alice-0c9e44d1", "carol-6b1f0e2a"


class Host:
    def __init__(self, tmp_path: Path):
        self.dir = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name, text in (("systemctl", FAKE_SYSTEMCTL), ("restart-script", FAKE_RESTART)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        self.owed_dir = tmp_path / "owed"
        self.owed_dir.mkdir()
        self.spawn = tmp_path / "spawn.json"
        self.spawn.write_text("{}")
        self.changed(self.spawn, seconds_ago=7200)
        for name in (ALICE, CAROL):
            self.started(name, seconds_ago=3600)

    def started(self, name: str, seconds_ago: int) -> None:
        stamp = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() - seconds_ago))
        (self.dir / f"started.jupyter-{name}.service").write_text(stamp + "\n")

    def changed(self, path: Path, seconds_ago: int) -> None:
        when = time.time() - seconds_ago
        os.utime(path, (when, when))

    def run(self, *args: str) -> subprocess.CompletedProcess:
        (self.dir / "calls").write_text("")
        options = {
            "--slice": layout.SLICE,
            "--unit-prefix": layout.SERVER_UNIT_PREFIX,
            "--restart-script": str(self.bin / "restart-script"),
            "--restart-command": layout.RESTART_SERVER_SCRIPT,
            "--owed-dir": str(self.owed_dir),
            "--timer-prefix": layout.RESTART_UNIT_PREFIX,
            "--activity-path": "/jupyter-deploy/activity",
        }
        argv = ["bash", str(SCRIPT), *(word for pair in options.items() for word in pair), *args]
        env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}", "FAKE": str(self.dir)}
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)

    def owed(self) -> dict:
        result = self.run("owed", "/opt/conda", "/etc/jupyterhub/server/jupyter_activity.py", str(self.spawn))
        assert result.returncode == 0, result.stderr
        return restarts.PeopleOwed("/opt/conda").parse(result.stdout.splitlines())


@pytest.fixture
def fake_host(tmp_path):
    return Host(tmp_path)


def test_nothing_changed_owes_nothing(fake_host):
    assert fake_host.owed() == {"owed": {}, "waits": []}


def test_a_server_started_before_its_settings_changed_is_owed_a_restart(fake_host):
    fake_host.changed(fake_host.spawn, seconds_ago=60)
    fake_host.started(CAROL, seconds_ago=10)
    assert fake_host.owed() == {"owed": {f"jupyter-{ALICE}.service": "spawn.json changed"}, "waits": []}


def test_a_package_the_server_runs_that_changed_is_owed_a_restart_and_said(fake_host):
    (fake_host.dir / f"versions.{CAROL}").write_text(
        "running jupyter-server 2.17.0\nrunning tornado 6.5.2\n"
        "installed jupyter-server 2.14.1\ninstalled tornado 6.5.2\ninstalled jupyter-resource-usage 1.3.0\n"
        # What the person's server answers is theirs: a name or version of anything else is dropped.
        "running $(reboot) 1\nrunning evil 1;reboot\n"
    )
    owed = fake_host.owed()["owed"]
    assert owed == {
        f"jupyter-{CAROL}.service": "jupyter-resource-usage (none) -> 1.3.0, jupyter-server 2.17.0 -> 2.14.1"
    }


def test_a_server_whose_restart_already_waits_is_owed_nothing_more(fake_host):
    fake_host.changed(fake_host.spawn, seconds_ago=60)
    (fake_host.owed_dir / ALICE).write_text(f"requested={int(time.time()) - 30}\ndeadline=9999999999\nidle_since=0\n")
    (fake_host.dir / f"active.{layout.RESTART_UNIT_PREFIX}{ALICE}.timer").write_text("")
    found = fake_host.owed()
    assert found["waits"] == [f"jupyter-{ALICE}.service"]
    assert list(found["owed"]) == [f"jupyter-{CAROL}.service"]
    # Its timer gone (the restart happened, or the host rebooted): owed again.
    (fake_host.dir / f"active.{layout.RESTART_UNIT_PREFIX}{ALICE}.timer").unlink()
    assert f"jupyter-{ALICE}.service" in fake_host.owed()["owed"]


def test_each_server_is_restarted_or_deferred_on_its_own_and_the_run_says_which(fake_host):
    said = "Jupyter restart deferred: 1 kernel busy; it happens when they are idle, at the latest 2026-12-06 22:40 UTC"
    (fake_host.dir / f"said.{ALICE}").write_text(said + "\n")
    report = fake_host.dir / "report"
    result = fake_host.run(
        "restart", "when-idle", "24", str(report), f"jupyter-{ALICE}.service", f"jupyter-{CAROL}.service"
    )
    assert result.returncode == 0, result.stderr
    calls = [c for c in (fake_host.dir / "calls").read_text().splitlines() if c.startswith("restart-script")]
    assert calls == [
        f"restart-script --unit jupyter-{name}.service --timer {layout.RESTART_UNIT_PREFIX}{name}.timer "
        f"--owed {fake_host.owed_dir}/{name} --activity-path /jupyter-deploy/activity "
        f"--restart-command {layout.RESTART_SERVER_SCRIPT} restart when-idle 24 {report}.one"
        for name in (ALICE, CAROL)
    ]
    assert report.read_text().splitlines() == [
        f"People's servers restarted (nothing busy): 1: {CAROL}",
        "People's servers whose restart waits: 1",
        f"  {ALICE}: 1 kernel busy; it happens when they are idle, at the latest 2026-12-06 22:40 UTC",
    ]


def test_only_peoples_servers_are_restarted_and_only_peoples_names_checked(fake_host):
    report = fake_host.dir / "report"
    refused = fake_host.run("restart", "now", "24", str(report), "apache2.service")
    assert refused.returncode == 2 and "not a person's server" in refused.stderr
    assert fake_host.run("check", "../../etc").returncode == 2
    checked = fake_host.run("check", ALICE)
    assert checked.returncode == 0 and f"--unit jupyter-{ALICE}.service" in (fake_host.dir / "calls").read_text()


def test_a_server_that_does_not_start_again_fails_the_run_after_the_others_had_their_turn(fake_host):
    (fake_host.bin / "restart-script").write_text(
        FAKE_RESTART.replace("restart) cat", f'restart) [ "$name" = {ALICE} ] && exit 1; cat')
    )
    report = fake_host.dir / "report"
    result = fake_host.run("restart", "now", "24", str(report), f"jupyter-{ALICE}.service", f"jupyter-{CAROL}.service")
    assert result.returncode == 1
    assert report.read_text().splitlines() == [
        f"People's servers restarted (nothing busy): 1: {CAROL}",
        f"People's servers that did not start again: 1: {ALICE} (see journalctl -u jupyterhub)",
    ]
    assert f"did not start again: 1: {ALICE}" in result.stderr
