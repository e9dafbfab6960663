"""
Backups, the fast layer: the settings' checks, what the deploy writes (schedule, settings
file, units), and files/jupyter-backup itself run against a scratch restic repository
(restic and shellcheck from Debian, installed by .ci/run): back up, lose and change files,
restore in place (changed files moved aside) and into a side directory.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from operations import backups, people, records, settings
from operations.hub import layout as hub_layout
from smoke import backup_problem, certificate_problem

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "files" / "jupyter-backup"
RESTORE_FILES = ROOT / "files" / "jupyter-restore-files"
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
    assert settings.check_values({"backup_repository": "/srv/backups"}, environ={}, script="uninstall") == []


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
        ("restore_from", "old-host; reboot"),
        ("restore_from", "-old"),
        ("restore_from", ""),
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


def sourced(config: str, *arrays: str) -> list[str]:
    """The items of each bash array in ``config`` (a backup.conf) as bash sources it, in order."""
    words = " ".join(f'"${{{name}[@]}}"' for name in arrays)
    return subprocess.run(
        ["bash", "-c", f'set -eu; . /dev/stdin; printf "%s\\n" {words}'],
        input=config,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()


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
    listed = sourced(text, "PATHS", "EXCLUDE_PATTERNS")
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
    # per_person_servers: the hub's database copy too, and nothing else of the hub's.
    per_person = backups.service_unit("sftp:b@h:/r", per_person=True)
    assert [line for line in per_person.splitlines() if line.startswith("ReadWritePaths")] == [
        f"ReadWritePaths={hub_layout.DATABASE_COPY_DIR}"
    ]
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
    for script in ("jupyter-backup", "jupyter-restore-files", "jupyter-uninstall"):
        result = subprocess.run(["shellcheck", str(ROOT / "files" / script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@needs
def test_the_script_backs_up_and_restores_every_byte_into_a_side_directory(tmp_path):
    notebooks, home, state = tmp_path / "notebooks", tmp_path / "home", tmp_path / "state"
    for directory in (notebooks / "data dir", home / ".cache", state):
        directory.mkdir(parents=True)
    (notebooks / "analysis.ipynb").write_text('{"cells": []}')
    (notebooks / "data dir" / "odd 'name' $HOME [1] é.txt").write_text("odd\n")
    (notebooks / "notes.md").write_text("notes\n" * 100)
    (home / "settings.json").write_text("{}")
    (home / ".cache" / "big").write_text("cache")
    record = tmp_path / "created"
    config = tmp_path / "backup.conf"
    config.write_text(
        backups.config_file(str(tmp_path / "repo"), str(notebooks), "x", "daily", {"last": 3}, ssh_key=False)
        .replace("/var/lib/x", str(home))
        .replace(backups.STATE_DIR, str(state))
        .replace(backups.CACHE_DIR, str(tmp_path / "cache"))
        .replace(records.RECORD, str(record))
    )
    (tmp_path / "password").write_text("scratch password\n")
    secrets = tmp_path / "restic.env"
    secrets.write_text(
        backups.secrets_file(str(tmp_path / "repo")).replace(backups.PASSWORD_FILE, str(tmp_path / "password"))
    )
    options = ["--config", str(config), "--secrets", str(secrets)]

    def script(*args, check=True):
        return subprocess.run(["bash", str(SCRIPT), *options, *args], capture_output=True, text=True, check=check)

    assert script("check-repository", check=False).returncode == 3
    assert "created the repository" in script("init").stdout
    assert script("init").stdout == ""  # never twice
    # A local repository it created is recorded: uninstall_purge may delete it.
    assert record.read_text() == f"repository {tmp_path / 'repo'}\n"
    before = tree_hashes(notebooks)
    script("run")
    status = (state / "status").read_text()
    assert '"interval_seconds": 86400' in status and '"last_success": null' not in status
    # Into a side directory: there, and only into an empty one outside the backed-up paths.
    side = tmp_path / "side"
    script("restore", "latest", str(side))
    assert tree_hashes(side / str(notebooks).lstrip("/")) == before
    assert not (side / str(home).lstrip("/") / ".cache").exists()
    refused = script("restore", "latest", str(side), check=False)
    assert refused.returncode == 2 and "is not empty" in refused.stderr
    inside = script("restore", "latest", str(notebooks / "restored"), check=False)
    assert inside.returncode == 2 and "which the notebook user can write" in inside.stderr
    assert not (notebooks / "restored").exists()
    # The repository also holds a newer snapshot of another host (one this host replaces):
    # 'latest' is this host's own; with --from-host, that host's; a host with none is refused
    # with the hosts it has.
    elsewhere = tmp_path / "old host notebooks"
    elsewhere.mkdir()
    (elsewhere / "theirs.ipynb").write_text('{"cells": ["theirs"]}')
    restic = ["restic", "-r", str(tmp_path / "repo"), "--password-file", str(tmp_path / "password")]
    subprocess.run([*restic, "backup", "-q", "--host", "old-host", "--tag", "jupyter", str(elsewhere)], check=True)
    restored = script("restore", "latest", str(tmp_path / "own")).stdout
    assert f"restored snapshot latest under {tmp_path / 'own'} (snapshot " in restored, restored
    assert tree_hashes(tmp_path / "own" / str(notebooks).lstrip("/")) == before
    assert not (tmp_path / "own" / str(elsewhere).lstrip("/")).exists()
    restored = script("--from-host", "old-host", "restore", "latest", str(tmp_path / "theirs")).stdout
    assert f"restored snapshot latest of host old-host under {tmp_path / 'theirs'} (snapshot " in restored
    assert (tmp_path / "theirs" / str(elsewhere).lstrip("/") / "theirs.ipynb").exists()
    assert not (tmp_path / "theirs" / str(notebooks).lstrip("/")).exists()
    missing = script("--from-host", "no-such-host", "restore", "latest", str(tmp_path / "none"), check=False)
    assert missing.returncode == 1 and not (tmp_path / "none").exists()
    hosts = " ".join(sorted([socket.gethostname(), "old-host"]))
    assert f"has no snapshot of host no-such-host (it has snapshots of: {hosts})" in missing.stderr, missing.stderr
    # A wrong password: restic's reason, and no new repository.
    (tmp_path / "password").write_text("wrong\n")
    failed = script("run", check=False)
    assert failed.returncode != 0 and "wrong password" in failed.stderr
    assert script("check-repository", check=False).returncode == 1


def test_a_per_person_hosts_settings_add_the_hubs_state_the_shared_data_and_peoples_homes():
    text = backups.config_file(
        "/srv/backups",
        "/srv/jupyter",
        "jupyter",
        "daily",
        {"last": 3},
        ssh_key=False,
        per_person=True,
        shared_data_dir="/srv/course",
    )
    listed = sourced(text, "ROOT_PATHS", "EXCLUDE_PATTERNS")
    assert listed[:2] == [hub_layout.STATE_DIR, "/srv/course"]
    assert f"{people.HOMES}/{people.PREFIX}*/.cache" in listed and f"{hub_layout.DATABASE}*" in listed
    assert f"PEOPLE_COMMENT={shlex.quote(people.COMMENT_PREFIX)}" in text
    single = backups.config_file("/srv/backups", "/srv/jupyter", "jupyter", "daily", {"last": 3}, ssh_key=False)
    assert "ROOT_PATHS=()" in single and "PEOPLE_COMMENT" not in single


@needs
def test_a_per_person_backup_holds_a_consistent_copy_of_the_hubs_database_never_the_live_file(tmp_path):
    hub_state, repository = tmp_path / "jupyterhub", tmp_path / "repo"
    hub_state.mkdir()
    database = hub_state / "jupyterhub.sqlite"
    with sqlite3.connect(database) as live:
        live.execute("create table users (name text)")
        live.execute("insert into users values ('alice')")
    live.close()
    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "backup.conf"
    config.write_text(
        backups.config_file(
            str(repository), str(tmp_path / "none"), "x", "daily", {"last": 3}, ssh_key=False, per_person=True
        )
        .replace(hub_layout.STATE_DIR, str(hub_state))
        .replace(shlex.quote(hub_layout.PYTHON), shlex.quote(sys.executable))
        .replace(backups.STATE_DIR, str(state))
        .replace(backups.CACHE_DIR, str(tmp_path / "cache"))
        .replace(records.RECORD, str(tmp_path / "created"))
    )
    (tmp_path / "password").write_text("scratch password\n")
    secrets = tmp_path / "restic.env"
    secrets.write_text(backups.secrets_file(str(repository)).replace(backups.PASSWORD_FILE, str(tmp_path / "password")))
    options = ["--config", str(config), "--secrets", str(secrets)]

    def script(*args, check=True):
        return subprocess.run(["bash", str(SCRIPT), *options, *args], capture_output=True, text=True, check=check)

    script("init")
    script("run")
    side = tmp_path / "side"
    script("restore", "latest", str(side))
    copy = side / str(hub_state / "backup" / "jupyterhub.sqlite").lstrip("/")
    assert sqlite3.connect(copy).execute("select name from users").fetchall() == [("alice",)]
    assert not (side / str(database).lstrip("/")).exists()
    # Only a person's account may be named, and only on a per-person host.
    refused = script("restore-person", "latest", "root", "jupyter-x.service", check=False)
    assert refused.returncode == 2 and "root is not a person's account" in refused.stderr
    # Beside too: refused, and nothing of the snapshot restored there.
    elsewhere = tmp_path / "elsewhere"
    refused = script("restore-person", "latest", "root", "jupyter-x.service", str(elsewhere), check=False)
    assert refused.returncode == 2 and "root is not a person's account" in refused.stderr
    assert not elsewhere.exists()


@needs
def test_init_refuses_a_local_directory_that_holds_something_else(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "other.txt").write_text("not a repository\n")
    config = tmp_path / "backup.conf"
    config.write_text(backups.config_file(str(taken), "/srv/jupyter", "x", "daily", {"last": 3}, ssh_key=False))
    (tmp_path / "password").write_text("scratch password\n")
    secrets = tmp_path / "restic.env"
    secrets.write_text(backups.secrets_file(str(taken)).replace(backups.PASSWORD_FILE, str(tmp_path / "password")))
    options = ["--config", str(config), "--secrets", str(secrets)]
    result = subprocess.run(["bash", str(SCRIPT), *options, "init"], capture_output=True, text=True)
    assert result.returncode == 1 and "is not empty and not a restic repository" in result.stderr
    assert sorted(p.name for p in taken.iterdir()) == ["other.txt"]


def as_unprivileged(argv: list[str]) -> list[str]:
    """``argv`` as ``nobody`` when this runs as root (CI), else as this user."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs", "--", *argv]


@pytest.fixture
def restore_tree():
    """A scratch tree the restore writes as the unprivileged user (``as_unprivileged``), with a
    root-owned directory beside it standing in for /etc."""
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="restore-test."))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


def test_restore_files_puts_the_snapshot_back_as_the_user_moving_aside_what_is_in_the_way(restore_tree):
    base = restore_tree
    live, staged, aside, system = base / "srv" / "notebooks", base / "staged", base / "aside", base / "etc"
    system.mkdir()
    (system / "hostname").write_text("the real hostname\n")
    system_before = tree_hashes(system)
    snapshot = staged / str(live).lstrip("/")
    for directory in (snapshot / "acc-trap", snapshot / "data dir", live / "data dir"):
        directory.mkdir(parents=True)
    (snapshot / "acc-trap" / "hostname").write_text("the user's file\n")
    (snapshot / "notes.md").write_text("notes\n")
    (snapshot / "data dir" / "odd 'name' $HOME [1] é.txt").write_text("odd\n")
    (snapshot / "same.txt").write_text("same\n")
    # Live: a link where the snapshot has a directory (the trap), a changed file, an
    # unchanged one, and one made since the snapshot.
    (live / "acc-trap").symlink_to(system)
    (live / "notes.md").write_text("changed\n")
    (live / "same.txt").write_text("same\n")
    (live / "new.txt").write_text("new\n")
    aside.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "nobody:nogroup", str(base / "srv"), str(staged), str(aside)], check=True)
    result = subprocess.run(
        as_unprivileged(["bash", str(RESTORE_FILES), str(staged), str(aside), str(live)]),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"  # the link and the changed file
    assert tree_hashes(system) == system_before and not (system / "hostname").is_symlink()
    assert not (live / "acc-trap").is_symlink() and (live / "acc-trap" / "hostname").read_text() == "the user's file\n"
    restored = tree_hashes(live)
    assert restored.pop("new.txt") and restored == tree_hashes(snapshot)
    assert (aside / str(live).lstrip("/") / "acc-trap").readlink() == system
    assert (aside / str(live).lstrip("/") / "notes.md").read_text() == "changed\n"


def test_restore_files_refuses_root_and_as_the_user_cannot_touch_what_is_not_its_own(restore_tree):
    if os.geteuid() != 0:
        pytest.skip("needs root to own a directory the unprivileged user cannot write")
    base = restore_tree
    refused = subprocess.run(["bash", str(RESTORE_FILES), str(base), str(base), "/srv"], capture_output=True, text=True)
    assert refused.returncode == 2 and "refusing to run as root" in refused.stderr
    # Root's own file in the user's tree (as an admin's copy would be): not the user's to replace.
    live, staged, aside = base / "srv" / "notebooks", base / "staged", base / "aside"
    (staged / str(live).lstrip("/")).mkdir(parents=True)
    (staged / str(live).lstrip("/") / "roots.txt").write_text("from the snapshot\n")
    live.mkdir(parents=True)
    aside.mkdir()
    subprocess.run(["chown", "-R", "nobody:nogroup", str(staged), str(aside), str(live)], check=True)
    roots = base / "srv" / "roots-dir"
    roots.mkdir()
    (live / "roots.txt").symlink_to(roots / "roots.txt")
    (roots / "roots.txt").write_text("root's\n")
    result = subprocess.run(
        as_unprivileged(["bash", str(RESTORE_FILES), str(staged), str(aside), str(live)]),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (roots / "roots.txt").read_text() == "root's\n"
    assert (live / "roots.txt").read_text() == "from the snapshot\n" and not (live / "roots.txt").is_symlink()
