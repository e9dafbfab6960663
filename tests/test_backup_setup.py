"""
Backups, the fast layer: the settings' checks, what the deploy writes (schedule, settings
file, units), and files/jupyter-backup itself run against a scratch restic repository
(restic and shellcheck from Debian, installed by .ci/run): back up, lose and change files,
restore in place (changed files moved aside) and into a side directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from operations import backups, settings
from smoke import backup_problem, certificate_problem

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "files" / "jupyter-backup"
ENV = {settings.PASSWORD_ENV: "x", settings.BACKUP_PASSWORD_ENV: "y"}
needs = pytest.mark.skipif(
    not (shutil.which("restic") and shutil.which("systemd-analyze")),
    reason="restic and systemd are installed by .ci/run",
)


@pytest.mark.parametrize(
    "repository",
    [
        "/srv/backups/jupyter",
        "sftp:backup@backup.example.org:/srv/restic/nb1",
        "sftp:b@[2001:db8::1]:/r",
        "rest:https://user:pw@backup.example.org/nb1",
        "s3:s3.amazonaws.com/bucket/nb1",
    ],
)
def test_restic_repositories_are_accepted(repository):
    environ = {**ENV, "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    assert settings.check_values({"backup_repository": repository}, environ=environ) == []


@pytest.mark.parametrize(
    "repository,allowed",
    [
        ("backups", "a restic repository"),
        ("/srv/back ups", "no spaces"),
        ("/etc/backups", "not in a system directory"),
        ("sftp:host:/path", "'sftp:user@host:/path'"),
        ("rest:https://h/x y", "a restic repository"),
        ("/srv/jupyter/backups", "must not be inside or contain what it backs up"),
    ],
)
def test_bad_repositories_get_one_line_naming_the_setting(repository, allowed):
    [error] = settings.check_values({"backup_repository": repository}, environ=ENV)
    assert error.startswith(f"setting backup_repository = {repository!r}") and allowed in error, error


def test_a_repository_needs_the_password_and_s3_its_keys_from_the_control_machine():
    [error] = settings.check_values({"backup_repository": "/srv/backups"}, environ={settings.PASSWORD_ENV: "x"})
    assert "export JUPYTER_BACKUP_PASSWORD" in error
    [error] = settings.check_values({"backup_repository": "s3:host/bucket"}, environ=ENV)
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in error
    # restore.py and uninstall.py use what the host has.
    assert settings.check_values({"backup_repository": "/srv/backups"}, environ={}, secrets=False) == []


@pytest.mark.parametrize(
    "name,value",
    [
        ("backup_keep", {}),
        ("backup_keep", {"daily": 0}),
        ("backup_keep", {"days": 7}),
        ("backup_schedule", "daily; reboot"),
        ("backup_schedule", " daily"),
        ("restore_snapshot", "../x"),
        ("restore_to", "/etc/x"),
        ("backup_ssh_key", "/nonexistent/key"),
        ("uninstall_purge", "yes"),
    ],
)
def test_bad_backup_settings_are_refused(name, value):
    [error] = settings.check_values({name: value}, environ=ENV)
    assert error.startswith(f"setting {name} = {value!r} is not allowed"), error


def test_the_default_schedule_is_a_night_time_of_each_hosts_own_that_never_changes():
    times = {backups.default_schedule(f"nb{i}.example.org") for i in range(50)}
    assert len(times) > 30
    assert backups.default_schedule("nb1.example.org") == backups.default_schedule("nb1.example.org")
    for schedule in times:
        hour = int(schedule.split()[1].split(":")[0])
        assert schedule.startswith("*-*-* ") and 1 <= hour <= 4, schedule


def test_the_settings_file_is_quoted_shell_and_holds_no_secret():
    text = backups.config_file(
        "sftp:backup@10.0.0.9:/srv/restic",
        "/srv/jupyter",
        "jupyter",
        "*-*-* 03:10:00",
        {"daily": 7, "monthly": 12},
        ssh_key=True,
    )
    assert "KEEP=(--keep-daily 7 --keep-monthly 12)" in text
    assert "SCHEDULE='*-*-* 03:10:00'" in text
    assert "-i /etc/jupyter-backup/ssh_key" in text and "backup@10.0.0.9 -s sftp" in text
    assert "RESTIC" not in text
    listed = subprocess.run(
        ["bash", "-c", 'set -eu; . /dev/stdin; printf "%s\\n" "${PATHS[@]}" "${EXCLUDE_PATTERNS[@]}"'],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert listed[:3] == ["/srv/jupyter", "/var/lib/jupyter", "/var/lib/jupyter/.cache"]
    secrets = backups.secrets_file("s3:host/bucket", {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "se'cret"})
    assert (
        "AWS_SECRET_ACCESS_KEY='se'\"'\"'cret'" in secrets
        and "RESTIC_PASSWORD_FILE=/etc/jupyter-backup/password" in secrets
    )


def test_the_units_verify_and_the_service_writes_only_its_own_directories(tmp_path):
    service = backups.service_unit("/srv/backups/jupyter")
    assert "ProtectSystem=strict" in service and "ReadWritePaths=/srv/backups/jupyter" in service
    assert "CapabilityBoundingSet=CAP_DAC_READ_SEARCH" in service and "NoNewPrivileges=yes" in service
    assert "ReadWritePaths" not in backups.service_unit("sftp:b@h:/r")
    (tmp_path / "jupyter-backup.service").write_text(service.replace(backups.SCRIPT, "/bin/true"))
    (tmp_path / "jupyter-backup.timer").write_text(backups.timer_unit("*-*-* 03:10:00"))
    if shutil.which("systemd-analyze"):
        result = subprocess.run(
            [
                "systemd-analyze",
                "verify",
                "--man=no",
                str(tmp_path / "jupyter-backup.service"),
                str(tmp_path / "jupyter-backup.timer"),
            ],
            capture_output=True,
            text=True,
        )
        assert "Unknown key" not in result.stderr and "Unknown section" not in result.stderr, result.stderr


def test_smoke_calls_a_backup_stale_after_two_intervals_and_a_certificate_under_14_days():
    now = 1_800_000_000
    assert backup_problem({}, now) == ("", None)
    fresh = {"configured": now - 10 * 86400, "last_success": now - 3600, "interval_seconds": 86400}
    assert backup_problem(fresh, now) == ("backup 1.0 h ago", None)
    stale = {**fresh, "last_success": now - 2 * 86400 - 60}
    assert "the last successful backup is 2.0 days old" in backup_problem(stale, now)[1]
    never = {"configured": now - 3 * 86400, "last_success": None, "interval_seconds": 86400}
    assert "no successful backup in the 3.0 days" in backup_problem(never, now)[1]
    assert backup_problem({**never, "configured": now - 3600}, now) == ("no backup yet", None)
    assert certificate_problem(now + 15 * 86400, now)[1] is None
    assert "expires in 13.0 days" in certificate_problem(now + 13 * 86400, now)[1]


def test_the_scripts_pass_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is installed by .ci/run")
    for script in ("jupyter-backup", "jupyter-uninstall"):
        result = subprocess.run(["shellcheck", str(ROOT / "files" / script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@needs
def test_the_script_backs_up_and_restores_every_byte_moving_changed_files_aside(tmp_path):
    notebooks, home, state = tmp_path / "notebooks", tmp_path / "home", tmp_path / "state"
    for directory in (notebooks / "data dir", home / ".cache", state):
        directory.mkdir(parents=True)
    (notebooks / "analysis.ipynb").write_text('{"cells": []}')
    (notebooks / "data dir" / "odd 'name' $HOME [1] é.txt").write_text("odd\n")
    (notebooks / "notes.md").write_text("notes\n" * 100)
    (home / "settings.json").write_text("{}")
    (home / ".cache" / "big").write_text("cache")
    config = tmp_path / "backup.conf"
    config.write_text(
        backups.config_file(str(tmp_path / "repo"), str(notebooks), "x", "daily", {"last": 3})
        .replace("/var/lib/x", str(home))
        .replace(backups.STATE_DIR, str(state))
        .replace(backups.CACHE_DIR, str(tmp_path / "cache"))
    )
    (tmp_path / "password").write_text("scratch password\n")
    secrets = tmp_path / "restic.env"
    secrets.write_text(
        backups.secrets_file(str(tmp_path / "repo")).replace(backups.PASSWORD_FILE, str(tmp_path / "password"))
    )
    env = {**os.environ, "JUPYTER_BACKUP_CONFIG": str(config), "JUPYTER_BACKUP_SECRETS": str(secrets)}

    def script(*args, check=True):
        return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, check=check)

    assert script("check-repository", check=False).returncode == 3
    assert "created the repository" in script("init").stdout
    assert script("init").stdout == ""  # never twice
    before = tree_hashes(notebooks)
    script("run")
    status = (state / "status").read_text()
    assert '"interval_seconds": 86400' in status and '"last_success": null' not in status
    # Lose two files, change one, add one.
    (notebooks / "analysis.ipynb").unlink()
    (notebooks / "data dir" / "odd 'name' $HOME [1] é.txt").unlink()
    (notebooks / "notes.md").write_text("changed\n")
    (notebooks / "new.txt").write_text("new\n")
    out = script("restore", "latest").stdout
    assert "1 file(s) it replaced were moved to" in out, out
    after = tree_hashes(notebooks)
    assert after.pop("new.txt") and after == before
    [aside] = [p for p in (state / "moved-aside").rglob("notes.md")]
    assert aside.read_text() == "changed\n"
    # Into a side directory: there, and only into an empty one.
    side = tmp_path / "side"
    script("restore", "latest", str(side))
    assert tree_hashes(side / str(notebooks).lstrip("/")) == before
    assert not (side / str(home).lstrip("/") / ".cache").exists()
    refused = script("restore", "latest", str(side), check=False)
    assert refused.returncode == 2 and "is not empty" in refused.stderr
    # A wrong password: restic's reason, and no new repository.
    (tmp_path / "password").write_text("wrong\n")
    failed = script("run", check=False)
    assert failed.returncode != 0 and "wrong password" in failed.stderr
    assert script("check-repository", check=False).returncode == 1
