"""files/conda-switch with per_person_servers, on this machine: the hub, its restart scripts and
systemd are stand-ins (small scripts first on PATH) that start each "server" as a process of
the distribution it runs from (a copy of ``sleep`` in its ``bin``), so where each runs from is
what ``/proc/PID/exe`` says, as on a host. The check is the check account's server started from
the new distribution; people's servers restart from it after the switch, and when they cannot,
the switch goes back by itself. The real-host test (tests/e2e/test_per_person.py) does this
with JupyterHub."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from pyinfra.api import StringCommand

from operations import conda
from operations.hub import layout

ROOT = Path(__file__).resolve().parent.parent
SWITCH = ROOT / "files" / "conda-switch"
CHECK_UNIT = layout.server_unit(layout.CHECK_NAME)
PEOPLE = [layout.server_unit(name) for name in ("ann-0123abcd", "bob-4567ef01")]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="takes the installer lock in /run/lock (CI runs as root)")

# systemd as conda-switch asks it: a unit runs while its recorded process does.
SYSTEMCTL = r"""#!/bin/bash
unit=${!#}
pid=$(cat "$FAKE_STATE/$unit.pid" 2>/dev/null || echo 0)
case "$1" in
    show) if [ "$3" = MainPID ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; else echo 0; fi ;;
    is-active) kill -0 "$pid" 2>/dev/null ;;
    cat) exit 1 ;;
esac
"""
# jupyterhub-restart-server: a server starts from conda_prefix (for the check account, from
# what the check's file names); from a distribution in FAIL_FROM it does not start (the
# check account's too when FAIL_CHECK=yes).
SERVER = r"""#!/bin/bash
set -u
stop() {
    local pid
    pid=$(cat "$FAKE_STATE/$1.pid" 2>/dev/null) || { echo "not running"; return; }
    kill "$pid" 2>/dev/null || true
    rm -f "$FAKE_STATE/$1.pid"
    echo stopped
}
start() {
    local from
    from=$(readlink -f "$FAKE_PREFIX")
    if [ "$1" = "$FAKE_CHECK_UNIT" ] && [ -f "$FAKE_CHECK_DISTRIBUTION" ]; then
        from=$(cat "$FAKE_CHECK_DISTRIBUTION")
    fi
    echo "$1 $from" >>"$FAKE_STATE/starts"
    fails=no
    [ "$1" != "$FAKE_CHECK_UNIT" ] || [ "${FAIL_CHECK:-}" = yes ] && fails=yes
    if [ "$(readlink -f "$from")" = "${FAIL_FROM:-}" ] && [ $fails = yes ]; then
        echo "$1 did not start" >&2
        exit 1
    fi
    # Not holding conda-switch's lock (its fd 9), as a server the hub starts does not.
    setsid "$from/bin/sleep" 600 </dev/null >/dev/null 2>&1 9>&- &
    pid=$!
    # Started once the process is the server (as systemd's MainPID is), not the shell forked for it.
    sleeper=$(readlink -f "$from/bin/sleep")
    for _ in $(seq 500); do [ "$(readlink "/proc/$pid/exe")" = "$sleeper" ] && break; sleep 0.01; done
    echo "$pid" >"$FAKE_STATE/$1.pid"
}
case "$1" in
    --stop) stop "$2" ;;
    --start) start "$2" ;;
    *) stop "$1" >/dev/null; start "$1" ;;
esac
"""
# jupyterhub-restart-people: every server but the check account's runs; each restarts now.
PEOPLE_SCRIPT = r"""#!/bin/bash
case "$1" in
    running)
        for file in "$FAKE_STATE"/*.pid; do
            unit=$(basename "$file" .pid)
            [ "$unit" != "$FAKE_CHECK_UNIT" ] && kill -0 "$(cat "$file")" 2>/dev/null && echo "$unit"
        done
        true
        ;;
    restart)
        report=$4
        shift 4
        rc=0
        for unit; do "$FAKE_SERVER" "$unit" >/dev/null || rc=1; done
        echo "People's servers restarted: $*" >"$report"
        exit $rc
        ;;
    answer) echo "kernels_busy=0" ;;
esac
"""


class Host:
    """A prefix with two distributions, the stand-ins, and each person's server running."""

    def __init__(self, tmp_path: Path):
        self.prefix = tmp_path / "anaconda3"
        self.dists = Path(f"{self.prefix}.dists")
        self.old, self.new = (self.distribution(c * 64) for c in "ab")
        self.prefix.symlink_to(self.old)
        self.state = tmp_path / "state"
        self.state.mkdir()
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for name, text in (("systemctl", SYSTEMCTL), ("server", SERVER), ("people", PEOPLE_SCRIPT)):
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        self.check_file = tmp_path / "check-distribution"
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_STATE": str(self.state),
            "FAKE_PREFIX": str(self.prefix),
            "FAKE_CHECK_UNIT": CHECK_UNIT,
            "FAKE_CHECK_DISTRIBUTION": str(self.check_file),
            "FAKE_SERVER": str(bin_dir / "server"),
        }
        [_, *options] = shlex.split(StringCommand(*conda.switch_command(per_person=True)).get_raw_value())
        options[options.index("--server-command") + 1] = str(bin_dir / "server")
        options[options.index("--check-distribution") + 1] = str(self.check_file)
        start = options.index("--people") + 1
        options[start : options.index("--", start)] = [str(bin_dir / "people")]
        self.options = options
        for unit in PEOPLE:
            self.run_stand_in("server", "--start", unit)

    def distribution(self, sha256: str) -> Path:
        path = self.dists / sha256[:16]
        (path / "bin").mkdir(parents=True)
        shutil.copy("/bin/sleep", path / "bin" / "sleep")
        (path / conda.MARKER).write_text(sha256 + "\n")
        return path

    def run_stand_in(self, name: str, *args: str) -> None:
        subprocess.run([self.env["PATH"].split(":")[0] + "/" + name, *args], env=self.env, check=True)

    def switch(self, *args, **env) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(SWITCH), *self.options, *map(str, args)],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            check=False,
        )

    def runs_from(self, unit: str) -> str | None:
        """The distribution (its name) ``unit``'s process runs from, or None when it does not run."""
        try:
            pid = int((self.state / f"{unit}.pid").read_text())
            return Path(os.readlink(f"/proc/{pid}/exe")).parent.parent.name
        except (OSError, ValueError):
            return None

    def pids(self) -> dict[str, str]:
        return {unit: (self.state / f"{unit}.pid").read_text() for unit in PEOPLE}

    def stop_all(self) -> None:
        """Ends the processes this test started, by their PIDs."""
        for file in self.state.glob("*.pid"):
            try:
                os.kill(int(file.read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass


@pytest.fixture
def host(tmp_path):
    made = Host(tmp_path)
    yield made
    made.stop_all()


def test_an_upgrade_checks_the_check_accounts_server_from_it_then_restarts_each_persons(host, tmp_path):
    report = tmp_path / "report"
    before = host.pids()
    run = host.switch("upgrade", host.prefix, host.new, "when-idle", 24, "no-backup", report)
    assert run.returncode == 0, run.stderr
    said = report.read_text()
    assert f"Checked the new distribution {host.new.name}: the hub started the check account's server from it" in said
    assert "After the switch, the hub started the check account's server from it" in said
    assert "People's servers restarted" in said
    assert os.readlink(host.prefix) == str(host.new)
    for unit in PEOPLE:
        assert host.runs_from(unit) == host.new.name and host.pids()[unit] != before[unit]
    # The check's file is gone and its server stopped: its next start is from conda_prefix.
    assert not host.check_file.exists() and host.runs_from(CHECK_UNIT) is None
    starts = (host.state / "starts").read_text().splitlines()
    assert starts[len(PEOPLE)] == f"{CHECK_UNIT} {host.new}"

    back = host.switch("rollback", host.prefix, "when-idle", 24, report)
    assert back.returncode == 0, back.stderr
    assert os.readlink(host.prefix) == str(host.old)
    assert all(host.runs_from(unit) == host.old.name for unit in PEOPLE)


def test_a_release_the_check_accounts_server_cannot_start_from_is_never_switched_to(host, tmp_path):
    before = host.pids()
    run = host.switch(
        "upgrade",
        host.prefix,
        host.new,
        "when-idle",
        24,
        "no-backup",
        tmp_path / "report",
        FAIL_FROM=str(host.new),
        FAIL_CHECK="yes",
    )
    assert run.returncode == 1
    said = f"the new distribution {host.new.name} failed its check, people's servers stay on {host.old.name}"
    assert said in run.stderr and "could not start the check account's server" in run.stderr, run.stderr
    assert os.readlink(host.prefix) == str(host.old) and host.pids() == before
    assert not host.check_file.exists()


def test_people_whose_servers_cannot_start_from_it_are_switched_back_and_run_again(host, tmp_path):
    """The check account's server starts from it; people's do not: the switch goes back by
    itself, and each person's server runs again, from the previous distribution."""
    run = host.switch(
        "upgrade", host.prefix, host.new, "when-idle", 24, "no-backup", tmp_path / "report", FAIL_FROM=str(host.new)
    )
    assert run.returncode == 1
    said = f"switched back to {host.old.name}, from which every person's server that was running runs again"
    assert said in run.stderr, run.stderr
    assert os.readlink(host.prefix) == str(host.old)
    assert not Path(f"{host.prefix}.dists/previous").exists()
    assert all(host.runs_from(unit) == host.old.name for unit in PEOPLE)


def test_a_hub_that_does_not_start_the_check_from_the_new_distribution_fails_the_check(host, tmp_path):
    """A hub whose config is older than the deploy's starts the check account's server from
    conda_prefix whatever the file says: the check sees where it runs from, and fails."""
    host.env["FAKE_CHECK_DISTRIBUTION"] = str(tmp_path / "not-read")
    run = host.switch("upgrade", host.prefix, host.new, "when-idle", 24, "no-backup", tmp_path / "report")
    assert run.returncode == 1
    assert f"started the check account's server from {host.old}/bin/sleep, not from {host.new}" in run.stderr
    assert os.readlink(host.prefix) == str(host.old)
