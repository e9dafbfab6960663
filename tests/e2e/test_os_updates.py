"""
The system under Jupyter (operations/os_updates.py) on a real host, nb9 (Debian 12):

- a local apt repository stands in for Debian's security archive (origin Debian, label
  Debian-Security, bookworm-security); a package made for the test and Debian's zlib rebuilt
  with a higher version (a library Apache and Jupyter's Python map) are published after the
  deploy, and the unattended-upgrades run of Debian's own timer unit installs them, no deploy
  involved: Apache is reloaded after its configtest, Jupyter with a busy kernel is not
  restarted, and is once the kernel is idle; with os_updates None nothing is installed;
- a reboot owed (/run/reboot-required) waits while a kernel is busy inside the window, does
  not happen outside it, happens once the kernel is idle (the lab boots the host again and
  Jupyter answers, a rerun changes nothing), and happens past reboot_deadline whatever runs.

One scenario runs the steps in order, on its own thread from nb9's first run on (beside the
other modules' tests); the tests check what it saw.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import requests

from lab.apt_archive import SecurityArchive
from operations import os_updates, system
from operations.jupyter import layout as server_layout
from smoke.client import Jupyter
from tests.e2e.scenario import FIGURES, PASSWORD, wait_until
from tests.e2e.test_restarts import BusyKernel

NAME = "nb9"
CANARY = "lab-security-canary"
# A library both Apache (through apr-util and mod_deflate) and Jupyter's Python map.
LIBRARY = "zlib1g"
ARCHIVE_LIST = "/etc/apt/sources.list.d/lab-security.list"
ARCHIVE_DIRECT = "/etc/apt/apt.conf.d/03lab-security-direct"
# Debian's daily jobs, as their timers start them: the index refresh, then unattended-upgrades.
# Their stamps are removed first: what a day passing does.
# `systemctl start` of a oneshot returns before its ExecStopPost= (the deploy's after-upgrade
# step) has run: wait for the unit to have stopped.
DAILY_JOBS = (
    "rm -f /var/lib/apt/periodic/*-stamp && systemctl start apt-daily.service && "
    "systemctl start apt-daily-upgrade.service && "
    "for i in $(seq 600); do case $(systemctl show -p ActiveState --value apt-daily-upgrade.service) in "
    "inactive | failed) break ;; esac; sleep 0.2; done"
)
SINCE = "systemctl show -p ExecMainStartTimestamp --value apt-daily-upgrade.service"


def version(deployment, package: str) -> str:
    return deployment.ssh(NAME, f"dpkg-query -W -f='${{Version}}' {package} 2>/dev/null || true").stdout.strip()


def main_pid(deployment, unit: str) -> str:
    return deployment.ssh(NAME, f"systemctl show -p MainPID --value {unit}").stdout.strip()


def journal(deployment, unit: str, since: str) -> str:
    return deployment.ssh(
        NAME, f"journalctl -o cat --no-pager -u {unit} --since {shlex.quote(since)}", check=False
    ).stdout


def client(deployment, ca_file) -> Jupyter:
    jupyter = Jupyter(f"https://{deployment.address(NAME)}/jupyter/", ca_file=str(ca_file), timeout=30)
    jupyter.login(PASSWORD)
    return jupyter


def busy_kernel(deployment, jupyter: Jupyter) -> BusyKernel:
    """A kernel running a long cell, once the server says so (what the reboot and the restart
    ask): sent, a cell is not executing yet."""
    busy = BusyKernel(jupyter, 900)
    activity = f"curl -fsS --noproxy '*' http://127.0.0.1:8888{server_layout.ACTIVITY_PATH}"

    def executing() -> bool:
        first = deployment.ssh(NAME, activity, check=False).stdout.split("\n", 1)[0]
        return "kernels_busy=1" in first.split()

    assert wait_until(executing, 30, step=0.5) is not None, "the server never said the kernel was busy"
    return busy


def interrupt(jupyter: Jupyter, busy: BusyKernel) -> None:
    jupyter.api("POST", f"kernels/{busy.kernel}/interrupt").raise_for_status()
    busy.finished(60)


def host_time(deployment) -> tuple[int, int]:
    """(the host's day of the week, 1 = Monday; minutes after its midnight)."""
    day, hours, minutes = deployment.ssh(NAME, "date '+%u %H %M'").stdout.split()
    return int(day), int(hours) * 60 + int(minutes)


def window_now(deployment) -> str:
    """A daily reboot_window this host's part of which is open now (for about 8 minutes)."""
    _, now = host_time(deployment)
    length = 20
    offset = system.spread(deployment.address(NAME), length // 2)
    start = (now - offset - 2) % 1440
    end = (start + length) % 1440
    return f"daily {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def window_later(deployment) -> str:
    """A daily window that opens in an hour: closed now."""
    _, now = host_time(deployment)
    start, end = (now + 60) % 1440, (now + 80) % 1440
    return f"daily {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def status(deployment) -> dict:
    return json.loads(deployment.ssh(NAME, f"cat {os_updates.STATUS_FILE}").stdout)


def reboot_check(deployment, **data) -> str:
    """The reboot timer's run, with this data's window (as the deploy would write it)."""
    settings = {"reboot_window": None, "reboot_deadline": 1, "per_person_servers": False, **data}
    command = os_updates.script_command(settings, deployment.address(NAME))
    answer = deployment.ssh(NAME, f"{command} reboot-check", check=False)
    return f"{answer.stdout}{answer.stderr}(exit {answer.returncode})"


def reboot_and_wait(deployment, lab, ca_file, start_command: str, timeout: float = 240) -> float:
    """Start ``start_command`` (which reboots the host), wait until the lab booted the host
    again and Jupyter's login page answers through Apache, as a browser sees it: the seconds
    that took."""
    host = lab.hosts[NAME]
    boots = host.boots
    started = time.monotonic()
    deployment.ssh(NAME, start_command, check=False, timeout=60)
    assert wait_until(lambda: host.boots > boots, timeout, step=0.5) is not None, "the host did not reboot"
    login = f"https://{deployment.address(NAME)}/jupyter/login"

    def jupyter_answers() -> bool:
        try:
            return requests.get(login, verify=str(ca_file), timeout=5).status_code == 200
        except requests.RequestException:
            return False

    assert wait_until(jupyter_answers, timeout, step=0.5) is not None, "Jupyter did not answer after the reboot"
    return time.monotonic() - started


def scenario(deployment, lab, workdir: Path, seen: dict) -> None:
    """Every step, in order, on nb9 once deployed; what each saw goes into ``seen``.

    It runs on the thread that deployed nb9 (``BackgroundRun`` in conftest.py), beside the other
    modules' tests: its steps mostly wait (for a kernel to go idle, a host to boot), and nb9 is
    its own host."""
    ca_file = workdir / "nb9.pem"
    ca_file.write_text(deployment.ssh(NAME, "cat /etc/ssl/certs/jupyter-apache.crt").stdout)
    archive = SecurityArchive(lab.files / "lab-security-archive", "bookworm")
    archive.remove()
    try:
        # The archive with the canary's first version, in place of Debian's security archive.
        archive.publish(archive.package(CANARY, "1.0"))
        source, direct = archive.sources(lab.url("lab-security-archive"))
        # Other hosts refresh their indexes through the lab's proxy meanwhile; it answers 503 when
        # two make it refresh one in the same second, and Debian 12's apt then waits forever
        # unless it retries at once (what the deploy's own apt does: system.APT_OPTIONS).
        direct += 'Acquire::Retries::Delay "false";\n'
        deployment.ssh(
            NAME,
            f"echo {shlex.quote(source)} > {ARCHIVE_LIST} && echo {shlex.quote(direct)} > {ARCHIVE_DIRECT} && "
            "sed -i '/security/s/^deb /#lab-test deb /' /etc/apt/sources.list && "
            # The lab's base image masks Debian's daily apt units (lab/base.py); a stock host has them.
            "systemctl unmask apt-daily.service apt-daily-upgrade.service >/dev/null 2>&1 && "
            f"apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q {CANARY} >/dev/null",
        )
        seen["canary before"] = version(deployment, CANARY)
        seen["library before"] = version(deployment, LIBRARY)
        downloads = workdir / "debs"
        downloads.mkdir()
        subprocess.run(["apt-get", "download", "-q", LIBRARY], cwd=downloads, check=True, capture_output=True)
        library, seen["library published"] = archive.rebuilt(next(downloads.glob(f"{LIBRARY}_*.deb")), "+lab1")
        seen["maps before"] = deployment.ssh(
            NAME,
            "for u in apache2 jupyter; do p=$(systemctl show -p MainPID --value $u); "
            "grep -q libz /proc/$p/maps && echo $u; done",
        ).stdout.split()

        # 1. A busy kernel; the new versions published; the timer's jobs run.
        jupyter = client(deployment, ca_file)
        busy = busy_kernel(deployment, jupyter)
        seen["jupyter pid before"] = main_pid(deployment, "jupyter")
        seen["apache pid before"] = main_pid(deployment, "apache2")
        since = deployment.ssh(NAME, "date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
        published = time.monotonic()
        archive.publish(archive.package(CANARY, "1.1"), library)
        deployment.ssh(NAME, DAILY_JOBS, timeout=600)
        seen["installed after"] = time.monotonic() - published
        seen["canary after"] = version(deployment, CANARY)
        seen["library after"] = version(deployment, LIBRARY)
        seen["upgrade journal"] = journal(deployment, "apt-daily-upgrade.service", since)
        seen["apache pid after"] = main_pid(deployment, "apache2")
        seen["apache reloads"] = deployment.ssh(
            NAME, f"journalctl -o cat --no-pager -u apache2 --since {shlex.quote(since)} | grep -c Reload || true"
        ).stdout.strip()
        seen["jupyter pid after"] = main_pid(deployment, "jupyter")
        seen["restart timer"] = deployment.ssh(
            NAME, "systemctl is-active jupyter-restart-when-idle.timer", check=False
        ).stdout.strip()
        seen["stale"] = deployment.ssh(NAME, f"cat {os_updates.STALE_FILE}").stdout.split()

        # 2. The kernel idle: the restart follows (a minute of nothing busy, a 15 s timer).
        pid = seen["jupyter pid after"]
        interrupt(jupyter, busy)
        waited = wait_until(lambda: main_pid(deployment, "jupyter") not in (pid, "0"), 180, step=2)
        seen["restarted after idle"] = waited
        if waited is not None:
            FIGURES["nb9: Jupyter restarted for an updated library, after its kernel went idle"] = f"{waited:.0f} s"
        seen["status"] = status(deployment)
        seen["rerun"] = deployment.pyinfra()

        # 3. os_updates None: the deploy's files taken back; a newer canary is not installed.
        seen["off run"] = deployment.pyinfra(overrides={NAME: {"os_updates": None}})
        seen["off files"] = deployment.ssh(
            NAME,
            " ".join(
                f"test -e {path} && echo {path};"
                for path in (os_updates.APT_CONF, os_updates.NEEDRESTART_CONF, os_updates.UPGRADE_DROPIN)
            ),
            check=False,
        ).stdout.split()
        archive.publish(archive.package(CANARY, "1.2"))
        deployment.ssh(NAME, DAILY_JOBS, timeout=600)
        seen["canary when off"] = version(deployment, CANARY)

        # 4. Reboots: a window open now, a deadline of a day.
        window = window_now(deployment)
        seen["window"] = window
        reboot_data = {"reboot_window": window, "reboot_deadline": 1}
        seen["reboot run"] = deployment.pyinfra(overrides={NAME: reboot_data})
        # The steps below start the timer's service themselves; the timer (each minute) would
        # reboot the host too, once the kernel is idle, in the middle of the step that checks a
        # closed window. It starts again when the host boots.
        deployment.ssh(NAME, f"systemctl stop {os_updates.REBOOT_TIMER}")
        jupyter = client(deployment, ca_file)
        busy = busy_kernel(deployment, jupyter)
        boots = lab.hosts[NAME].boots
        deployment.ssh(NAME, f"touch {os_updates.REBOOT_REQUIRED}")
        deployment.ssh(NAME, f"systemctl start {os_updates.REBOOT_SERVICE}", check=False)
        seen["busy: booted again"] = lab.hosts[NAME].boots > boots
        seen["busy: status"] = status(deployment)
        seen["busy: journal"] = journal(deployment, os_updates.REBOOT_SERVICE, since)
        interrupt(jupyter, busy)
        # Idle now, but outside the window: no reboot.
        seen["outside: said"] = reboot_check(deployment, reboot_window=window_later(deployment))
        seen["outside: booted again"] = lab.hosts[NAME].boots > boots
        # Idle, in the window: the timer's service reboots.
        seen["reboot seconds"] = reboot_and_wait(
            deployment, lab, ca_file, f"systemctl start {os_updates.REBOOT_SERVICE}"
        )
        FIGURES["nb9: a reboot, from the check that found nothing busy to Jupyter answering"] = (
            f"{seen['reboot seconds']:.0f} s"
        )
        seen["after reboot: required"] = deployment.ssh(
            NAME, f"test -e {os_updates.REBOOT_REQUIRED} && echo yes || echo no"
        ).stdout.strip()
        seen["after reboot: rerun"] = deployment.pyinfra(overrides={NAME: reboot_data})

        # 5. Past the deadline: a busy kernel does not hold the reboot.
        jupyter = client(deployment, ca_file)
        busy = busy_kernel(deployment, jupyter)
        deployment.ssh(NAME, f"systemctl stop {os_updates.REBOOT_TIMER}")
        two_days_ago = int(time.time()) - 2 * 86400
        deployment.ssh(NAME, f"touch {os_updates.REBOOT_REQUIRED} && echo {two_days_ago} > {os_updates.SINCE_FILE}")
        seen["deadline seconds"] = reboot_and_wait(
            deployment, lab, ca_file, f"systemctl start {os_updates.REBOOT_SERVICE}"
        )
        seen["timer"] = deployment.ssh(
            NAME, f"systemctl is-enabled {os_updates.REBOOT_TIMER}; systemctl is-active {os_updates.REBOOT_TIMER}"
        ).stdout.split()
    finally:
        archive.remove()
        deployment.ssh(NAME, "systemctl mask apt-daily.service apt-daily-upgrade.service", check=False)


@pytest.fixture(scope="module")
def updates(updates_background) -> dict:
    """What the scenario saw (it ran beside the other modules' tests; this waits for its end)."""
    return updates_background.finished("updates")


def test_the_timers_unattended_run_installs_the_security_archives_update(updates):
    assert updates["canary before"] == "1.0"
    assert updates["canary after"] == "1.1", updates["upgrade journal"][-3000:]
    assert updates["library after"] == updates["library published"] != updates["library before"]
    FIGURES["nb9: a security update, published to installed (the daily jobs run at once)"] = (
        f"{updates['installed after']:.0f} s"
    )


def test_apache_is_reloaded_after_its_configtest_and_jupyter_is_not_restarted_while_busy(updates):
    assert set(updates["maps before"]) == {"apache2", "jupyter"}, updates["maps before"]
    assert (
        "Apache reloaded (graceful) for its updated libraries, after its configtest passed"
        in (updates["upgrade journal"])
    ), updates["upgrade journal"][-3000:]
    # A graceful reload: the same main process, told to reload.
    assert updates["apache pid after"] == updates["apache pid before"]
    assert int(updates["apache reloads"]) >= 1
    assert "jupyter.service" in updates["stale"], updates["stale"]
    assert updates["jupyter pid after"] == updates["jupyter pid before"]
    assert updates["restart timer"] == "active"


def test_jupyter_restarts_once_its_kernel_is_idle(updates):
    assert updates["restarted after idle"] is not None, "Jupyter was not restarted within 180 s of going idle"
    assert updates["restarted after idle"] < 150


def test_the_status_says_what_the_system_owes_and_a_rerun_changes_nothing(updates):
    seen = updates["status"]
    assert seen["last_result"] == "installed" and seen["last_run"] > 0, seen
    assert seen["reboot_needed_since"] == 0, seen
    rerun = updates["rerun"]
    assert rerun.returncode == 0 and not rerun.changed(), rerun.output[-3000:]
    assert "no reboot needed" in rerun.output and "updates pending: 0" in rerun.output, rerun.output[-3000:]


def test_with_os_updates_none_the_deploys_files_are_gone_and_nothing_is_installed(updates):
    assert updates["off run"].returncode == 0, updates["off run"].output[-3000:]
    assert updates["off files"] == []
    assert updates["canary when off"] == "1.1"


def test_a_busy_kernel_holds_the_reboot_inside_the_window(updates):
    assert updates["reboot run"].returncode == 0, updates["reboot run"].output[-3000:]
    assert not updates["busy: booted again"]
    seen = updates["busy: status"]
    assert seen["reboot_needed_since"] > 0 and "jupyter.service: 1 0" in seen["reboot_waits_for"], seen
    assert "waiting in the window for: jupyter.service: 1 0" in updates["busy: journal"], updates["busy: journal"]


def test_outside_the_window_an_idle_host_is_not_rebooted(updates):
    assert not updates["outside: booted again"]
    assert "it happens from" in updates["outside: said"], updates["outside: said"]


def test_once_idle_inside_the_window_the_host_reboots_and_comes_back_converged(updates):
    assert updates["reboot seconds"] < 120
    assert updates["after reboot: required"] == "no"
    rerun = updates["after reboot: rerun"]
    assert rerun.returncode == 0 and not rerun.changed(), rerun.output[-3000:]


def test_past_the_deadline_a_busy_kernel_does_not_hold_the_reboot(updates):
    assert updates["deadline seconds"] < 120
    assert updates["timer"] == ["enabled", "active"]
