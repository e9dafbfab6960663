"""
The system-updates concern without a host (operations/os_updates.py, files/os-updates): the
settings' checks, the files it writes (parsed by apt and Perl themselves), and the reboot
script's window, read at fixed times.
"""

from __future__ import annotations

import calendar
import os
import subprocess
import time
from pathlib import Path

import pytest

from operations import os_updates, system
from operations.render import FILES, render
from operations.settings.checks import check_reboot_window, reboot_window

SCRIPT = FILES / "os-updates"


@pytest.mark.parametrize(
    "window, parsed",
    [
        ("Sun 03:00-05:00", ([7], 180, 120)),
        ("daily 23:30-00:30", ([1, 2, 3, 4, 5, 6, 7], 1410, 60)),
        ("Sat,Sun 01:00-02:00", ([6, 7], 60, 60)),
        ("Fri-Mon 10:00-11:15", ([1, 5, 6, 7], 600, 75)),
    ],
)
def test_a_reboot_window_is_days_and_a_time_span(window, parsed):
    assert check_reboot_window(window) is None
    assert reboot_window(window) == parsed


@pytest.mark.parametrize(
    "window", ["sun 03:00-05:00", "Sun 3:00-5:00", "Sun 03:00-03:00", "Sun", "", 7, "Sun 24:00-01:00"]
)
def test_a_reboot_window_that_is_not_one_is_refused_saying_what_is_allowed(window):
    assert "'Sun 03:00-05:00'" in check_reboot_window(window)


def test_each_host_has_its_own_place_in_the_window_and_keeps_it():
    offsets = {system.spread(f"nb{i}.example.org", 60) for i in range(40)}
    assert len(offsets) > 20 and all(0 <= offset < 60 for offset in offsets)
    options = os_updates.window_options("Sun 03:00-05:00", "nb1.example.org")
    assert options == os_updates.window_options("Sun 03:00-05:00", "nb1.example.org")
    assert options["--days"] == "7" and options["--start"] == "180" and options["--length"] == "120"
    assert 0 <= int(options["--offset"]) < 60
    assert os_updates.window_options(None, "nb1")["--days"] == "never"


def apt_config(tmp_path: Path, text: str) -> str:
    """What apt itself reads from Debian's defaults followed by ``text``."""
    defaults = tmp_path / "50unattended-upgrades"
    defaults.write_text(
        'Unattended-Upgrade::Origins-Pattern {\n        "origin=Debian,codename=${distro_codename},label=Debian";\n'
        '        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";\n};\n'
    )
    ours = tmp_path / "52ours"
    ours.write_text(text)
    return subprocess.run(
        ["apt-config", "-c", str(defaults), "-c", str(ours), "dump", "Unattended-Upgrade"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_security_updates_replace_debians_list_and_all_adds_stable_updates(tmp_path):
    security = apt_config(tmp_path, render("os-updates.apt.conf.j2", all_updates=False))
    patterns = [line for line in security.splitlines() if "Origins-Pattern::" in line]
    assert patterns and all("security" in line.lower() for line in patterns), security
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in security
    everything = apt_config(tmp_path, render("os-updates.apt.conf.j2", all_updates=True))
    assert 'origin=Debian,codename=${distro_codename},label=Debian";' in everything
    assert "codename=${distro_codename}-updates" in everything


def test_needrestart_never_restarts_jupyter_the_proxy_or_apache_and_restarts_the_rest(tmp_path):
    conf = tmp_path / "needrestart.conf"
    conf.write_text(render("needrestart.conf.j2", never=os_updates.never_restarted()))
    check = (
        "our %nrconf; do $ARGV[0]; die $@ if $@; die 'restart' unless $nrconf{restart} eq 'a';"
        "for my $unit (@ARGV[1..$#ARGV]) { my $kept = grep { $unit =~ $_ } keys %{$nrconf{override_rc}};"
        " print \"$unit \", ($kept ? 'kept' : 'restarted'), \"\\n\" }"
    )
    # The keys are the regexps' text: compile them as needrestart does.
    check = check.replace("$unit =~ $_", "$unit =~ qr/$_/")
    units = ["jupyter.service", "jupyter-alice.service", "jupyterhub.service", "jupyterhub-proxy.service"]
    units += ["apache2.service", "ssh.service", "cron.service", "fail2ban.service"]
    shown = subprocess.run(["perl", "-e", check, str(conf), *units], capture_output=True, text=True, check=True)
    said = dict(line.split() for line in shown.stdout.splitlines())
    assert said == {**{unit: "kept" for unit in units[:5]}, **{unit: "restarted" for unit in units[5:]}}, said


def run_script(tmp_path: Path, at: str, window: str | None, required: bool = True, deadline_days: float = 7):
    """``files/os-updates status`` at ``at`` (UTC), with a stand-in for /run/reboot-required."""
    flag = tmp_path / "reboot-required"
    if required:
        flag.touch()
    else:
        flag.unlink(missing_ok=True)
    options = {
        "--required-file": str(flag),
        "--since-file": str(tmp_path / "since"),
        "--status-file": str(tmp_path / "status"),
        "--stale-file": str(tmp_path / "stale"),
        "--upgrade-log": str(tmp_path / "none.log"),
        "--upgrade-unit": "lab-test-no-such-unit.service",
        "--reload-unit": "apache2.service",
        **os_updates.window_options(window, "nb1.example.org"),
        "--deadline-hours": str(deadline_days * 24),
        "--restart-script": "/nonexistent",
        "--activity-path": "/activity",
        "--unit": "lab-test-no-such-unit.service",
    }
    epoch = calendar.timegm(time.strptime(at, "%Y-%m-%d %H:%M"))
    command = [str(SCRIPT), *(word for pair in options.items() for word in pair), "status"]
    env = dict(os.environ, TZ="UTC", OS_UPDATES_NOW=str(epoch))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "status").exists() and not (tmp_path / "since").exists(), "status wrote a file"
    return result.stdout.splitlines()[0]


def test_the_script_reboots_only_inside_the_window_and_says_when(tmp_path):
    offset = int(os_updates.window_options("Sun 03:00-05:00", "nb1.example.org")["--offset"])
    opens = f"2026-12-06 {3 + (offset // 60):02d}:{offset % 60:02d}"
    # Saturday night: it happens from this host's minute of Sunday's window.
    said = run_script(tmp_path, "2026-12-05 23:00", "Sun 03:00-05:00")
    assert said.endswith(f"it happens from {opens} UTC when nothing is busy"), said
    # Inside it (nothing runs here): the next check reboots.
    said = run_script(tmp_path, "2026-12-06 04:59", "Sun 03:00-05:00")
    assert said.endswith("the window is open: the next check (each minute) reboots"), said
    # After it: next Sunday.
    said = run_script(tmp_path, "2026-12-06 05:00", "Sun 03:00-05:00")
    assert f"it happens from 2026-12-13 {opens[11:]} UTC" in said, said
    # A window past midnight is open after midnight.
    said = run_script(tmp_path, "2026-12-06 00:30", "Sat 23:00-01:00")
    assert said.endswith("the window is open: the next check (each minute) reboots"), said
    assert "the window is open" in run_script(tmp_path, "2026-12-06 00:59", "Sat 23:00-02:00")


def test_without_a_window_the_reboot_is_only_reported_and_without_a_need_nothing_is(tmp_path):
    said = run_script(tmp_path, "2026-12-06 04:00", None)
    assert "reboot_window None: not rebooted by the deploy" in said, said
    assert run_script(tmp_path, "2026-12-06 04:00", "daily 00:00-23:59", required=False) == "no reboot needed"


def test_the_smoke_check_notes_what_the_system_owes_and_keeps_only_numbers_and_words():
    import smoke

    now = 1796555783
    line = (
        '{"written": 1796555783, "pending": 3, "security_pending": 1, "last_run": 1796550000, '
        '"last_result": "failed", "reboot_needed_since": 1796548583, "reboot_reason": "\\u001b[31m<b>x</b>", '
        '"reboot_next": 1796612400, "reboot_waits_for": "jupyter.service: 1 0", "pending_extra": "<script>"}'
    )
    status = smoke.os_status(line)
    assert "\x1b" not in status["reboot_reason"] and status["pending"] == 3
    notes = smoke.os_notes(status, now)
    assert notes == [
        "reboot owed for 2.0 h: from 2026-12-07 03:00 UTC when nothing is busy",
        "3 updates pending (1 security)",
        "the last unattended upgrade failed (2026-12-06 09:40 UTC)",
    ], notes
    # Not a status (an older host, or a cell's output a notebook shaped): nothing noted.
    assert smoke.os_notes(smoke.os_status("not json"), now) == []
    assert smoke.os_notes(smoke.os_status('{"pending": "9; rm -rf /", "reboot_needed_since": true}'), now) == []


def test_the_status_reuses_the_timers_counts_until_what_they_count_from_changes(tmp_path):
    """Every run reads the status: apt's plan is computed again only when the packages, apt's
    lists or the unattended run's log are newer than the timer's status file."""
    status = tmp_path / "status"
    status.write_text(
        '{"written": 1, "pending": 7, "security_pending": 3, "last_run": 0, "last_result": "none", '
        '"reboot_needed_since": 0, "reboot_reason": "", "reboot_next": 0, "reboot_waits_for": ""}\n'
    )
    options = {
        "--required-file": str(tmp_path / "reboot-required"),
        "--since-file": str(tmp_path / "since"),
        "--status-file": str(status),
        "--stale-file": str(tmp_path / "stale"),
        "--upgrade-log": str(tmp_path / "none.log"),
        "--upgrade-unit": "lab-test-no-such-unit.service",
        "--reload-unit": "apache2.service",
        **os_updates.window_options(None, "nb1.example.org"),
        "--deadline-hours": "168",
        "--restart-script": "/nonexistent",
        "--activity-path": "/activity",
        "--unit": "lab-test-no-such-unit.service",
    }
    command = [str(SCRIPT), *(word for pair in options.items() for word in pair), "status"]

    def pending_line() -> str:
        said = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
        return next(line for line in said.splitlines() if line.startswith("updates pending"))

    assert pending_line() == "updates pending: 7 (3 from a security archive)"
    # Older than the packages installed: counted again (this machine's own plan, not 7 and 3).
    os.utime(status, (1, 1))
    assert pending_line() != "updates pending: 7 (3 from a security archive)"
