"""files/jupyter-restart-when-idle with stand-ins for systemctl and curl (no host, no root).

The real-host proof is tests/e2e/test_restarts.py; here each branch of the script: what it
asks, what it restarts and when, what it writes for the run's output.
"""

import os
import subprocess
import time
from pathlib import Path

import pytest

from operations.jupyter import layout

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "files" / layout.RESTART_NAME
URL = "http://127.0.0.1:8888/jupyter-deploy/activity"

# systemctl: logs each call; `is-active` answers from ./active.UNIT, `show` the main PID
# (812) or the start time from ./started.
FAKE_SYSTEMCTL = """#!/bin/bash
echo "$*" >>"$FAKE/calls"
case "$1 $3" in
    "is-active "*) [ "$(cat "$FAKE/active.$3" 2>/dev/null)" = active ] ;;
    "is-enabled "*) [ "$(cat "$FAKE/enabled.$3" 2>/dev/null)" != disabled ] ;;
    "show MainPID") echo 812 ;;
    "show ExecMainStartTimestamp") cat "$FAKE/started" ;;
    "restart "*) date -u '+%a %Y-%m-%d %H:%M:%S UTC' >"$FAKE/started" ;;
esac
"""
# ss (`ss -Hltne`): the server's socket (inode 4242, among process 812's open files: see
# Host) on 8888; before it a kernel's listener (inode 5151) whose process named itself
# "pid=812," (what `ss -p` would show as its name), and one on a public address.
FAKE_SS = """#!/bin/bash
echo "ss $*" >>"$FAKE/calls"
echo 'LISTEN 0 128 0.0.0.0:22 0.0.0.0:* ino:1000 sk:1 cgroup:/system.slice/ssh.service <->'
echo 'LISTEN 0 128 127.0.0.1:41000 0.0.0.0:* users:(("pid=812,",pid=900,fd=3)) uid:998 ino:5151 sk:2 <->'
echo 'LISTEN 0 128 127.0.0.1:8888 0.0.0.0:* uid:998 ino:4242 sk:3 cgroup:/system.slice/jupyter.service <->'
"""
# sleep: the script's waits for a server still starting, counted instead of slept.
FAKE_SLEEP = """#!/bin/bash
echo "sleep $*" >>"$FAKE/slept"
"""
# curl: the server's answer from ./answer; none (the server does not answer): curl fails.
FAKE_CURL = """#!/bin/bash
echo "curl $*" >>"$FAKE/calls"
[ -f "$FAKE/answer" ] && cat "$FAKE/answer"
"""


class Host:
    def __init__(self, tmp_path: Path):
        self.dir = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name, text in (("systemctl", FAKE_SYSTEMCTL), ("curl", FAKE_CURL), ("ss", FAKE_SS), ("sleep", FAKE_SLEEP)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        # /proc as the script sees it: the main process (812) holds the server's socket.
        self.proc = tmp_path / "proc"
        (self.proc / "812" / "fd").mkdir(parents=True)
        (self.proc / "812" / "fd" / "0").symlink_to("/dev/null")
        (self.proc / "812" / "fd" / "5").symlink_to("socket:[4242]")
        self.state = tmp_path / "state"
        self.owed_file = self.state / "restart-owed"
        self.report = tmp_path / "report"
        self.jupyter_started(seconds_ago=3600)
        (tmp_path / "active.jupyter.service").write_text("active")
        self.env: dict[str, str] = {}

    def jupyter_started(self, seconds_ago: int) -> None:
        stamp = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() - seconds_ago))
        (self.dir / "started").write_text(stamp + "\n")

    def answers(self, text: str | None) -> None:
        answer = self.dir / "answer"
        if text is None:
            answer.unlink(missing_ok=True)
        else:
            answer.write_text(text + "\n")

    def run(self, *args: str) -> subprocess.CompletedProcess:
        (self.dir / "calls").write_text("")
        env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "FAKE": str(self.dir),
            "JUPYTER_RESTART_PROC": str(self.proc),
            **self.env,
        }
        options = ["--unit", layout.UNIT, "--timer", layout.RESTART_TIMER, "--owed", str(self.owed_file)]
        options += ["--activity-path", layout.ACTIVITY_PATH]
        return subprocess.run(
            ["bash", str(SCRIPT), *options, *args], env=env, capture_output=True, text=True, timeout=30, cwd=self.dir
        )

    def request(self, hours: str = "24") -> subprocess.CompletedProcess:
        return self.run("restart", "when-idle", hours, str(self.report))

    def now(self) -> subprocess.CompletedProcess:
        return self.run("restart", "now", "24", str(self.report))

    def asked(self) -> list[str]:
        """The URLs curl was given."""
        return [c.split()[-1] for c in (self.dir / "calls").read_text().splitlines() if c.startswith("curl")]

    def calls(self) -> list[str]:
        calls = (self.dir / "calls").read_text().splitlines()
        return [c for c in calls if not c.startswith(("curl", "is-active", "show", "ss"))]

    def owed(self) -> dict[str, int]:
        path = self.owed_file
        if not path.exists():
            return {}
        return {k: int(v) for k, v in (line.split("=") for line in path.read_text().split())}

    def set_owed(self, **values: int) -> None:
        owed = {**self.owed(), **values}
        self.owed_file.write_text("".join(f"{k}={v}\n" for k, v in owed.items()))


IDLE = "kernels=2 kernels_busy=0 terminals=1 terminals_busy=0"
BUSY = "kernels=3 kernels_busy=2 terminals=1 terminals_busy=1"


@pytest.fixture
def fake_host(tmp_path):
    return Host(tmp_path)


def test_nothing_busy_restarts_at_once(fake_host):
    fake_host.answers(IDLE)
    result = fake_host.request()
    assert result.returncode == 0, result.stderr
    # Asked on the port the main process listens on (not a kernel's).
    assert fake_host.asked() == [URL]
    assert "restart jupyter.service" in fake_host.calls()
    assert fake_host.owed() == {} and fake_host.report.read_text() == ""


def test_busy_kernels_and_terminals_defer_with_one_line_and_the_timer(fake_host):
    fake_host.answers(BUSY)
    before = int(time.time())
    result = fake_host.request(hours="2")
    assert result.returncode == 0, result.stderr
    assert fake_host.calls() == [f"start {layout.RESTART_TIMER}"]
    owed = fake_host.owed()
    assert before <= owed["requested"] <= time.time() and owed["deadline"] == owed["requested"] + 7200
    deadline = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(owed["deadline"]))
    assert fake_host.report.read_text() == (
        "Jupyter restart deferred: 2 kernels busy, 1 terminal running a command; "
        f"it happens when they are idle, at the latest {deadline}\n"
    )


def test_a_second_request_keeps_the_first_deadline_until_jupyter_restarts(fake_host):
    fake_host.answers(BUSY)
    fake_host.request(hours="2")
    fake_host.set_owed(requested=int(time.time()) - 600, deadline=int(time.time()) + 100)
    first = fake_host.owed()
    fake_host.request(hours="24")
    assert fake_host.owed()["deadline"] == first["deadline"]
    # Restarted since (by hand): the next owed restart has a deadline of its own.
    fake_host.jupyter_started(seconds_ago=60)
    fake_host.request(hours="24")
    assert fake_host.owed()["deadline"] >= time.time() + 24 * 3600 - 60


def test_a_server_that_cannot_say_counts_as_busy(fake_host):
    fake_host.answers(None)
    fake_host.request()
    assert fake_host.calls() == [f"start {layout.RESTART_TIMER}"]
    assert "the running server cannot say whether anything is busy" in fake_host.report.read_text()
    # It was given five more tries, 2 s apart, in case it was still starting.
    assert (fake_host.dir / "slept").read_text() == "sleep 2\n" * 5
    fake_host.answers("kernels=1 kernels_busy=x terminals=0 terminals_busy=0")
    fake_host.run("check")
    assert "restart jupyter.service" not in fake_host.calls()


def test_a_stopped_server_just_starts(fake_host):
    (fake_host.dir / "active.jupyter.service").write_text("inactive")
    fake_host.answers(None)
    fake_host.request()
    assert "restart jupyter.service" in fake_host.calls() and fake_host.owed() == {}


def test_a_server_set_aside_for_per_person_servers_stays_stopped(fake_host):
    (fake_host.dir / "active.jupyter.service").write_text("inactive")
    (fake_host.dir / "enabled.jupyter.service").write_text("disabled")
    fake_host.answers(None)
    fake_host.request()
    assert "restart jupyter.service" not in fake_host.calls() and fake_host.owed() == {}
    fake_host.now()
    assert "restart jupyter.service" not in fake_host.calls()


def test_the_timer_restarts_after_a_minute_of_idle(fake_host):
    fake_host.answers(BUSY)
    fake_host.request()
    fake_host.run("check")
    assert fake_host.calls() == [] and fake_host.owed()["idle_since"] == 0
    fake_host.answers(IDLE)
    fake_host.run("check")
    assert fake_host.calls() == []
    idle_since = fake_host.owed()["idle_since"]
    assert abs(idle_since - time.time()) < 30
    # Busy again before the minute is up: the minute starts over.
    fake_host.answers(BUSY)
    fake_host.run("check")
    assert fake_host.owed()["idle_since"] == 0
    fake_host.answers(IDLE)
    fake_host.run("check")
    fake_host.set_owed(idle_since=int(time.time()) - 45)
    fake_host.run("check")
    assert fake_host.calls() == []
    fake_host.set_owed(idle_since=int(time.time()) - 70)
    result = fake_host.run("check")
    assert fake_host.calls() == [f"stop {layout.RESTART_TIMER}", "restart jupyter.service"]
    assert "nothing busy since" in result.stdout and fake_host.owed() == {}


def test_the_deadline_restarts_whatever_is_busy(fake_host):
    fake_host.answers(BUSY)
    fake_host.request()
    fake_host.set_owed(deadline=int(time.time()) - 1)
    result = fake_host.run("check")
    assert "restart jupyter.service" in fake_host.calls()
    assert "at its deadline" in result.stdout and fake_host.owed() == {}


def test_a_restart_done_meanwhile_settles_what_was_owed(fake_host):
    fake_host.answers(BUSY)
    fake_host.request()
    fake_host.set_owed(requested=int(time.time()) - 120)
    fake_host.jupyter_started(seconds_ago=30)
    fake_host.run("check")
    assert fake_host.calls() == [f"stop {layout.RESTART_TIMER}"] and fake_host.owed() == {}


def test_now_restarts_and_forgets_a_deferred_restart(fake_host):
    fake_host.answers(BUSY)
    fake_host.request()
    fake_host.now()
    assert fake_host.calls() == [f"stop {layout.RESTART_TIMER}", "restart jupyter.service"]
    assert fake_host.owed() == {} and fake_host.report.read_text() == ""


def test_bad_hours_are_refused(fake_host):
    result = fake_host.request(hours="1; reboot")
    assert result.returncode == 2 and "hours must be a number" in result.stderr
    assert fake_host.calls() == []


def test_answer_prints_what_the_server_says(fake_host):
    fake_host.answers(IDLE + "\nrunning jupyter-server 2.21.1")
    assert fake_host.run("answer").stdout == IDLE + "\nrunning jupyter-server 2.21.1\n"
    fake_host.answers(None)
    assert fake_host.run("answer").stdout == ""


def test_versions_starts_no_python_unless_the_prefix_changed_since_the_server_started(fake_host):
    prefix = fake_host.dir / "prefix"
    site = prefix / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (prefix / "bin").mkdir()
    # The prefix's Python, standing in: says it ran, prints the installed list.
    fake_python = '#!/bin/bash\necho "python $*" >>"$FAKE/calls"\necho installed tornado 6.5.2\n'
    (prefix / "bin" / "python").write_text(fake_python)
    (prefix / "bin" / "python").chmod(0o755)
    fake_host.answers(IDLE + "\nrunning tornado 6.5.1")
    two_hours_ago = time.time() - 7200
    os.utime(site, (two_hours_ago, two_hours_ago))
    result = fake_host.run("versions", str(prefix), "/etc/jupyter/jupyter_activity.py")
    assert result.stdout == "unchanged\n"
    assert "python" not in (fake_host.dir / "calls").read_text()
    # pip installed something after the server started (a new dist-info: the directory's mtime).
    os.utime(site, None)
    result = fake_host.run("versions", str(prefix), "/etc/jupyter/jupyter_activity.py")
    assert result.stdout.splitlines() == [IDLE, "running tornado 6.5.1", "installed tornado 6.5.2"]
    assert "python -I /etc/jupyter/jupyter_activity.py" in (fake_host.dir / "calls").read_text()


def test_a_listener_of_the_notebook_user_named_after_the_main_process_is_not_asked(fake_host):
    """A kernel named itself "pid=812," and listens first: root asks only the socket the main
    process holds (its inode among /proc/812/fd), never by a name the user chose."""
    fake_host.answers(BUSY)
    fake_host.request()
    assert fake_host.asked() == [URL]
    assert fake_host.calls() == [f"start {layout.RESTART_TIMER}"]


def test_a_server_holding_no_listening_socket_is_not_asked(fake_host):
    (fake_host.proc / "812" / "fd" / "5").unlink()
    fake_host.answers(IDLE)
    fake_host.request()
    assert fake_host.asked() == []
    assert "cannot say whether anything is busy" in fake_host.report.read_text()


def test_no_word_of_the_answer_is_expanded_by_the_shell(fake_host):
    """A file in the working directory named like a count: "kernels_busy=*" in the answer is
    not a count (expanded, it would have read as 0: idle, and a busy server restarted)."""
    (fake_host.dir / "kernels_busy=0").write_text("")
    fake_host.answers("kernels=1 kernels_busy=* terminals=0 terminals_busy=0")
    fake_host.request()
    assert "restart jupyter.service" not in fake_host.calls()
    assert "cannot say whether anything is busy" in fake_host.report.read_text()


def test_the_answer_is_cut_to_a_few_printable_kilobytes(fake_host):
    """100 MiB with control characters: root keeps 64 KiB of printable text."""
    noise = "\x1b[2K" + "x" * 1000 + "\n"
    (fake_host.dir / "answer").write_text(IDLE + "\n" + noise * (100 * 1024))
    result = fake_host.run("answer")
    assert len(result.stdout.encode()) <= 65536
    assert result.stdout.startswith(IDLE + "\n[2K") and "\x1b" not in result.stdout
    fake_host.request()
    assert "restart jupyter.service" in fake_host.calls()


def test_at_the_deadline_the_server_is_not_asked(fake_host):
    fake_host.answers(BUSY)
    fake_host.request()
    fake_host.set_owed(deadline=int(time.time()) - 1)
    fake_host.run("check")
    assert fake_host.asked() == [] and "restart jupyter.service" in fake_host.calls()
    # A run's request past a deadline owed before restarts without asking either.
    fake_host.request()
    fake_host.set_owed(deadline=int(time.time()) - 1)
    fake_host.request()
    assert fake_host.asked() == [] and "restart jupyter.service" in fake_host.calls()


def test_a_lock_held_too_long_fails_the_run_with_a_line_instead_of_waiting(fake_host):
    fake_host.state.mkdir(exist_ok=True)
    fake_host.env["JUPYTER_RESTART_LOCK_SECONDS"] = "1"
    holder = subprocess.Popen(["flock", f"{fake_host.owed_file}.lock", "sleep", "20"])
    try:
        time.sleep(0.3)
        started = time.monotonic()
        result = fake_host.request()
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1 and "held" in result.stderr and "restart-owed.lock" in result.stderr
    assert waited < 10 and fake_host.calls() == []


def test_port_is_the_one_the_main_process_holds(fake_host):
    result = fake_host.run("port")
    assert (result.returncode, result.stdout) == (0, "8888\n")
    (fake_host.proc / "812" / "fd" / "5").unlink()
    result = fake_host.run("port")
    assert result.returncode == 1 and "listens on no loopback port" in result.stderr


def test_a_persons_server_is_restarted_by_the_restart_command_and_only_while_it_runs(fake_host):
    """--restart-command (per_person_servers): the hub's restart of the unit, not systemctl's;
    a person's server that stopped meanwhile (culled) is not started again."""
    command = fake_host.dir / "restart-through-hub"
    command.write_text('#!/bin/bash\necho "hub restarts $*" >>"$FAKE/calls"\n')
    command.chmod(0o755)
    fake_host.answers(IDLE)
    options = ["--restart-command", str(command)]
    fake_host.run(*options, "restart", "when-idle", "24", str(fake_host.report))
    assert "hub restarts jupyter.service" in fake_host.calls()
    assert "restart jupyter.service" not in fake_host.calls()
    (fake_host.dir / "active.jupyter.service").write_text("inactive")
    fake_host.run(*options, "restart", "now", "24", str(fake_host.report))
    assert not any(call.startswith(("hub restarts", "restart ")) for call in fake_host.calls())
