"""
Backups on real hosts: nb1 to a local restic repository, nb2 over sftp to a backup account
on nb3 (a real SSH server). Notebooks written through the Jupyter API, backed up by
starting the service, deleted and changed, restored byte for byte (sha256), in place and
into a side directory. Failures (wrong password, unreachable server) fail the unit with
restic's reason; the smoke check reports a stale backup and a certificate near its end.
The password never shows. At the end backups are switched off again (the session's other
tests expect the plain deployment).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

from smoke.client import Jupyter
from tests.e2e.scenario import FIGURES, PASSWORD, ROOT, TIMINGS

BACKUP_PASSWORD = "lab backup password, not secret 0451"
LOCAL_REPOSITORY = "/srv/backups/jupyter"
SFTP_USER, SFTP_DIRECTORY = "jdbackup", "/srv/restic/nb2"
FOLDER = "backup-test"
# Text files, a notebook and a name with the characters a shell or a URL gets wrong.
ODD_NAME = "odd 'name' $HOME [1] & é ü.txt"
FILES = {
    "analysis.ipynb": json.dumps(
        {
            "cells": [
                {"cell_type": "code", "source": "print(1)", "metadata": {}, "outputs": [], "execution_count": None}
            ],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    ),
    "notes.md": "# notes\n" + "measurement 42\n" * 200,
    f"data dir/{ODD_NAME}": "odd\n",
}
ENV = {"JUPYTER_BACKUP_PASSWORD": BACKUP_PASSWORD}


def client(deployment, ca_files, name) -> Jupyter:
    jupyter = Jupyter(f"https://{deployment.address(name)}/jupyter/", ca_file=str(ca_files[name]))
    jupyter.login(PASSWORD)
    return jupyter


def api_path(relative: str) -> str:
    return "contents/" + quote(f"{FOLDER}/{relative}")


def write_files(jupyter: Jupyter) -> None:
    for directory in (FOLDER, f"{FOLDER}/data dir"):
        jupyter.api("PUT", "contents/" + quote(directory), json={"type": "directory"})
    for relative, content in FILES.items():
        if relative.endswith(".ipynb"):
            body = {"type": "notebook", "format": "json", "content": json.loads(content)}
        else:
            body = {"type": "file", "format": "text", "content": content}
        jupyter.api("PUT", api_path(relative), json=body)


def hashes(deployment, name: str, root: str = "/srv/jupyter") -> dict[str, str]:
    """sha256 of every file under ROOT/FOLDER on the host, by path relative to it (Jupyter's
    own checkpoint copies left out)."""
    out = deployment.ssh(
        name,
        f"cd {root}/{FOLDER} && find . -type f -not -path '*/.ipynb_checkpoints/*' -print0 | xargs -0 -r sha256sum",
    ).stdout
    return {line[66:].removeprefix("./"): line[:64] for line in out.splitlines()}


def overrides(deployment, key_file) -> dict:
    sftp = f"sftp:{SFTP_USER}@{deployment.address('nb3')}:{SFTP_DIRECTORY}"
    return {
        "nb1": {"backup_repository": LOCAL_REPOSITORY},
        "nb2": {"backup_repository": sftp, "backup_ssh_key": str(key_file)},
    }


def start_backup(deployment, name: str) -> tuple[float, int]:
    """Start the backup service, sample the process list while it runs; (seconds, exit status)."""
    started = time.monotonic()
    result = deployment.ssh(
        name,
        (
            "systemctl start --no-block jupyter-backup.service; "
            "for i in $(seq 600); do ps -eo args >> /run/ps-during-backup; "
            "systemctl is-active --quiet jupyter-backup.service || "
            '[ "$(systemctl show -p ActiveState --value jupyter-backup.service)" = activating ] || break; '
            "sleep 0.05; done; "
            '[ "$(systemctl show -p Result --value jupyter-backup.service)" = success ]'
        ),
        check=False,
    )
    return time.monotonic() - started, result.returncode


@pytest.fixture(scope="module")
def backups(deployment, ca_files, tmp_path_factory):
    key = tmp_path_factory.mktemp("backup-key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = key.with_suffix(".pub").read_text().strip()
    deployment.ssh(
        "nb3",
        (
            f"id {SFTP_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {SFTP_USER}; "
            f"install -d -o {SFTP_USER} -g {SFTP_USER} -m 700 /home/{SFTP_USER}/.ssh {SFTP_DIRECTORY}; "
            f"echo '{public}' > /home/{SFTP_USER}/.ssh/authorized_keys; "
            f"chown {SFTP_USER}: /home/{SFTP_USER}/.ssh/authorized_keys"
        ),
    )
    data = overrides(deployment, key)
    first = deployment.pyinfra("--diff", "-vvv", overrides=data, env=ENV)
    assert first.returncode == 0, first.output[-4000:]
    TIMINGS["backups: deploy run that sets them up (2 hosts)"] = first.seconds
    again = deployment.pyinfra(overrides=data, env=ENV)
    context = {"first": first, "again": again, "data": data, "env": ENV, "key": key, "figures": {}}
    try:
        yield context
    finally:
        off = deployment.pyinfra()
        context["off"] = off
        deployment.ssh("nb1", f"rm -rf /srv/jupyter/{FOLDER} /srv/jupyter/{TRAP} /etc/jupyter-restore-canary")
        deployment.ssh("nb2", f"rm -rf /srv/jupyter/{FOLDER} /srv/restored", check=False)
        assert off.returncode == 0, off.output[-3000:]


def test_backups_are_set_up_quietly_and_a_second_run_changes_nothing(backups, deployment):
    first, again = backups["first"], backups["again"]
    for name in ("nb1", "nb2"):
        changed = first.changed()[deployment.address(name)]
        assert "Backups | Backup repository (created when there is none)" in changed, changed
        assert "Backups | Backup timer running and enabled" in changed
    assert again.returncode == 0 and again.totals["success"] == 0, again.changed()
    assert BACKUP_PASSWORD not in first.output and BACKUP_PASSWORD not in again.output
    # Created, not overwritten: a restic repository on each side.
    assert deployment.ssh("nb1", f"test -f {LOCAL_REPOSITORY}/config").returncode == 0
    assert deployment.ssh("nb3", f"test -f {SFTP_DIRECTORY}/config").returncode == 0


def test_the_timer_is_enabled_and_fires_within_a_day(backups, deployment):
    for name in ("nb1", "nb2"):
        state = deployment.ssh(
            name,
            "systemctl show jupyter-backup.timer -p ActiveState -p UnitFileState --value; "
            "next=$(systemctl show jupyter-backup.timer -p NextElapseUSecRealtime --value); "
            'echo $(( $(date -d "$next" +%s) - $(date +%s) ))',
        ).stdout.split()
        assert state[:2] == ["active", "enabled"], state
        assert 0 < int(state[2]) <= 86400, state


def test_a_backup_and_an_in_place_restore_bring_back_every_byte(backups, deployment, ca_files):
    jupyter = client(deployment, ca_files, "nb1")
    write_files(jupyter)
    before = hashes(deployment, "nb1")
    assert sorted(before) == sorted(FILES)
    seconds, status = start_backup(deployment, "nb1")
    assert status == 0, deployment.ssh("nb1", "journalctl -u jupyter-backup -n 30 --no-pager").stdout
    size = deployment.ssh("nb1", f"du -sk {LOCAL_REPOSITORY} | cut -f1").stdout.strip()
    FIGURES["backup nb1 (local): first backup"] = f"{seconds:.1f} s, repository {size} KiB"
    # Lose two files, change one.
    jupyter.api("DELETE", api_path("analysis.ipynb"))
    jupyter.api("DELETE", api_path(f"data dir/{ODD_NAME}"))
    jupyter.api("PUT", api_path("notes.md"), json={"type": "file", "format": "text", "content": "overwritten\n"})
    changed = hashes(deployment, "nb1")
    assert sorted(changed) == ["notes.md"] and changed["notes.md"] != before["notes.md"]

    started = time.monotonic()
    restore = deployment.only("nb1").pyinfra(script="restore.py", overrides={"nb1": backups["data"]["nb1"]})
    FIGURES["backup nb1 (local): restore in place (pyinfra restore.py)"] = f"{time.monotonic() - started:.1f} s"
    assert restore.returncode == 0, restore.output[-3000:]
    assert hashes(deployment, "nb1") == before
    # The changed file was moved aside, not lost.
    aside = deployment.ssh("nb1", "find /var/lib/jupyter-backup/moved-aside -name notes.md -exec cat {} +").stdout
    assert aside == "overwritten\n"
    listed = {item["name"] for item in jupyter.api("GET", "contents/" + quote(f"{FOLDER}/data dir")).json()["content"]}
    assert listed == {ODD_NAME}
    assert jupyter.api("GET", api_path("analysis.ipynb")).json()["type"] == "notebook"


# Root-side watcher of the files a restore through a planted link would touch (inotify, from
# the host's own python3): /etc's entries, and opens, reads and changes of two files in it.
WATCHER = r"""
import ctypes, os, struct, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
fd = libc.inotify_init1(0)
watches = {}
def watch(path, mask):
    wd = libc.inotify_add_watch(fd, path.encode(), mask)
    assert wd >= 0, path
    watches[wd] = path
watch("/etc", 0x40 | 0x80 | 0x100 | 0x200)
for name in ("hostname", "jupyter-restore-canary"):
    watch("/etc/" + name, 0x1 | 0x2 | 0x4 | 0x20 | 0x400 | 0x800)
out = open(sys.argv[1], "a", buffering=1)
print("watching", file=out)
while True:
    data = os.read(fd, 65536)
    offset = 0
    while offset < len(data):
        wd, mask, cookie, length = struct.unpack_from("iIII", data, offset)
        name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
        offset += 16 + length
        print(watches.get(wd), hex(mask), name, file=out)
"""
TRAP = "trap-test"
# A process of the notebook user that flips race-trap between a directory and a link to
# /etc for five minutes (started from a notebook, as an attacker would).
FLIP = """
import os, time
end = time.time() + 300
while time.time() < end:
    try:
        if os.path.islink("race-trap"):
            os.unlink("race-trap")
            os.rename("race-trap.real", "race-trap")
        else:
            os.rename("race-trap", "race-trap.real")
            os.symlink("/etc", "race-trap")
    except OSError:
        pass
"""
# From a notebook: the backed-up directory acc-trap becomes a link to /etc, and the flipper starts.
PLANT = f"""
import os, shutil, subprocess, sys
os.chdir("/srv/jupyter/{TRAP}")
shutil.rmtree("acc-trap")
os.symlink("/etc", "acc-trap")
print(subprocess.Popen([sys.executable, "-c", {FLIP!r}], start_new_session=True).pid)
"""


def etc_state(deployment, name: str) -> str:
    """Every entry of /etc (type, owner, mode, size, link target) and every regular file's sha256."""
    return deployment.ssh(
        name,
        "find /etc -xdev -printf '%p %y %u:%g %m %s %l\\n' | sort; "
        "find /etc -xdev -type f -print0 | sort -z | xargs -0 sha256sum",
    ).stdout


def test_an_in_place_restore_never_acts_through_a_link_a_notebook_planted(backups, deployment, ca_files):
    """The trap of the second security review: root used to move /etc/hostname aside."""
    jupyter = client(deployment, ca_files, "nb1")
    deployment.ssh("nb1", "echo 'root canary' > /etc/jupyter-restore-canary")
    for directory in (TRAP, f"{TRAP}/acc-trap", f"{TRAP}/race-trap"):
        jupyter.api("PUT", "contents/" + quote(directory), json={"type": "directory"})
    files = {
        f"{TRAP}/acc-trap/hostname": "the user's hostname\n",
        f"{TRAP}/acc-trap/jupyter-restore-canary": "the user's canary\n",
        f"{TRAP}/race-trap/hostname": "the user's other hostname\n",
    }
    for path, content in files.items():
        jupyter.api("PUT", "contents/" + quote(path), json={"type": "file", "format": "text", "content": content})
    _, status = start_backup(deployment, "nb1")
    assert status == 0, deployment.ssh("nb1", "journalctl -u jupyter-backup -n 30 --no-pager").stdout
    flipper = jupyter.execute(PLANT).strip()
    assert deployment.ssh("nb1", f"readlink /srv/jupyter/{TRAP}/acc-trap").stdout.strip() == "/etc"
    before = etc_state(deployment, "nb1")
    deployment.ssh("nb1", f"cat > /run/watch.py <<'EOF'\n{WATCHER}\nEOF\n")
    deployment.ssh(
        "nb1",
        "rm -f /run/watch.out; systemd-run --unit=restore-watch --collect python3 /run/watch.py /run/watch.out; "
        "for i in $(seq 50); do grep -q watching /run/watch.out 2>/dev/null && exit 0; sleep 0.1; done; exit 1",
    )
    try:
        restore = deployment.only("nb1").pyinfra(script="restore.py", overrides={"nb1": backups["data"]["nb1"]})
    finally:
        deployment.ssh("nb1", "systemctl stop restore-watch", check=False)
    events = deployment.ssh("nb1", "cat /run/watch.out").stdout.splitlines()[1:]
    watched = ("hostname", "jupyter-restore-canary")
    touched = [e for e in events if not e.startswith("/etc ") or e.split()[-1] in watched]
    FIGURES["restore through planted links: events on /etc/hostname or the canary"] = str(len(touched))
    assert restore.returncode == 0, restore.output[-3000:]
    assert "restored snapshot latest in place as jupyter" in restore.output
    assert touched == [], touched
    assert etc_state(deployment, "nb1") == before
    # Jupyter was stopped for the restore: the user's process planting links is gone.
    assert deployment.ssh("nb1", f"kill -0 {flipper}", check=False).returncode != 0
    # The user's own files are back, the planted link is aside, and Jupyter answers again.
    restored = deployment.ssh(
        "nb1",
        f"cd /srv/jupyter/{TRAP} && stat -c '%F %U' acc-trap race-trap && cat acc-trap/hostname race-trap/hostname",
    ).stdout.splitlines()
    assert restored == ["directory jupyter", "directory jupyter", "the user's hostname", "the user's other hostname"]
    aside = deployment.ssh(
        "nb1", f"find /var/lib/jupyter-backup/moved-aside -path '*/{TRAP}/acc-trap' -printf '%y %l\\n'"
    ).stdout.split()
    assert aside == ["l", "/etc"], aside
    assert client(deployment, ca_files, "nb1").execute("print(6 * 7)") == "42\n"


def test_a_backup_over_sftp_restores_into_a_side_directory(backups, deployment, ca_files):
    jupyter = client(deployment, ca_files, "nb2")
    write_files(jupyter)
    before = hashes(deployment, "nb2")
    seconds, status = start_backup(deployment, "nb2")
    assert status == 0, deployment.ssh("nb2", "journalctl -u jupyter-backup -n 30 --no-pager").stdout
    size = deployment.ssh("nb3", f"du -sk {SFTP_DIRECTORY} | cut -f1").stdout.strip()
    FIGURES["backup nb2 (sftp to nb3): first backup"] = f"{seconds:.1f} s, repository {size} KiB"
    restore = deployment.only("nb2").pyinfra(
        script="restore.py", overrides={"nb2": {**backups["data"]["nb2"], "restore_to": "/srv/restored"}}
    )
    assert restore.returncode == 0, restore.output[-3000:]
    assert hashes(deployment, "nb2", root="/srv/restored/srv/jupyter") == before
    # The live files were not touched.
    assert hashes(deployment, "nb2") == before


def test_the_password_is_in_no_output_process_list_unit_or_journal(backups, deployment):
    for name in ("nb1", "nb2"):
        mode = deployment.ssh(name, "stat -c '%U:%G:%a' /etc/jupyter-backup/password /etc/jupyter-backup/restic.env")
        assert mode.stdout.split() == ["root:root:600", "root:root:600"]
        found = deployment.ssh(
            name,
            (
                f"grep -rlF {json.dumps(BACKUP_PASSWORD)} /etc/systemd /var/log /run/ps-during-backup "
                "/var/lib/jupyter-backup 2>/dev/null; "
                f"journalctl --no-pager | grep -cF {json.dumps(BACKUP_PASSWORD)}; "
                "wc -l < /run/ps-during-backup"
            ),
            check=False,
        ).stdout.split()
        # No file names a match, 0 journal lines, and the process list was sampled.
        assert found[0] == "0" and int(found[1]) > 0, found
        assert "restic" in deployment.ssh(name, "cat /run/ps-during-backup").stdout


def test_a_failing_backup_fails_its_unit_with_restics_reason(backups, deployment):
    # Wrong password (nb1)...
    deployment.ssh("nb1", "cp -p /etc/jupyter-backup/password /run/saved && echo wrong > /etc/jupyter-backup/password")
    try:
        _, status = start_backup(deployment, "nb1")
        journal = deployment.ssh("nb1", "journalctl -u jupyter-backup -n 20 --no-pager").stdout
    finally:
        deployment.ssh("nb1", "mv /run/saved /etc/jupyter-backup/password")
    assert status != 0
    assert deployment.ssh("nb1", "systemctl show -p Result --value jupyter-backup").stdout.strip() == "exit-code"
    assert "wrong password" in journal, journal
    # ...and the backup server out of reach (nb2).
    nb3 = deployment.address("nb3")
    deployment.ssh("nb2", f"ip route add blackhole {nb3}/32")
    try:
        _, status = start_backup(deployment, "nb2")
        journal = deployment.ssh("nb2", "journalctl -u jupyter-backup -n 20 --no-pager").stdout
    finally:
        deployment.ssh("nb2", f"ip route del blackhole {nb3}/32")
    assert status != 0
    assert "unable to start the sftp session" in journal or "Network is unreachable" in journal, journal


def smoke(deployment, ca_file: str, name: str):
    result = subprocess.run(
        [sys.executable, "-m", "smoke", "--ca-file", ca_file, deployment.address(name)],
        cwd=ROOT,
        env={"JUPYTER_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout.strip()


def test_smoke_reports_the_backup_age_and_fails_a_stale_one(backups, deployment, ca_files):
    code, line = smoke(deployment, str(ca_files["nb1"]), "nb1")
    assert code == 0 and "backup 0.0 h ago" in line and "certificate" in line, line
    status = "/var/lib/jupyter-backup/status"
    deployment.ssh(
        "nb1",
        f"cp -p {status} /run/status && printf "
        '\'{"configured": 1, "last_success": %s, "snapshot": "x", "interval_seconds": 86400}\\n\' '
        f"$(( $(date +%s) - 3 * 86400 )) > {status}",
    )
    try:
        code, stale = smoke(deployment, str(ca_files["nb1"]), "nb1")
    finally:
        deployment.ssh("nb1", f"mv /run/status {status}")
    FIGURES["smoke, a backup 3 days old"] = stale
    assert code == 1 and "the last successful backup is 3.0 days old" in stale, stale


def test_smoke_fails_a_certificate_near_its_end_and_the_deploy_renews_it(backups, deployment, ca_files, tmp_path):
    address = deployment.address("nb1")
    deployment.ssh(
        "nb1",
        (
            "openssl req -x509 -newkey rsa:2048 -nodes -days 10 -subj /CN=short-lived "
            f"-addext subjectAltName=IP:{address} -keyout /etc/ssl/private/jupyter-apache.key "
            "-out /etc/ssl/certs/jupyter-apache.crt 2>/dev/null && systemctl reload apache2"
        ),
    )
    short = tmp_path / "short.pem"
    short.write_text(deployment.ssh("nb1", "cat /etc/ssl/certs/jupyter-apache.crt").stdout)
    code, line = smoke(deployment, str(short), "nb1")
    FIGURES["smoke, a certificate 10 days from its end"] = line
    assert code == 1 and "the certificate expires in 10.0 days" in line, line
    renewed = deployment.only("nb1").pyinfra(overrides={"nb1": backups["data"]["nb1"]}, env=ENV)
    assert renewed.returncode == 0, renewed.output[-3000:]
    ca_files["nb1"].write_text(deployment.ssh("nb1", "cat /etc/ssl/certs/jupyter-apache.crt").stdout)
    code, line = smoke(deployment, str(ca_files["nb1"]), "nb1")
    assert code == 0 and "certificate 365 days left" in line, line


def test_a_wrong_password_on_the_control_machine_fails_the_deploy_and_never_reinitialises(backups, deployment):
    config = deployment.ssh("nb1", f"sha256sum {LOCAL_REPOSITORY}/config").stdout
    wrong = deployment.only("nb1").pyinfra(
        overrides={"nb1": backups["data"]["nb1"]}, env={"JUPYTER_BACKUP_PASSWORD": "not the backup password"}
    )
    try:
        assert wrong.returncode != 0
        assert "the backup repository does not open" in wrong.output and "wrong password" in wrong.output
        assert "not the backup password" not in wrong.output
        assert deployment.ssh("nb1", f"sha256sum {LOCAL_REPOSITORY}/config").stdout == config
    finally:
        fixed = deployment.only("nb1").pyinfra(overrides={"nb1": backups["data"]["nb1"]}, env=ENV)
    assert fixed.returncode == 0, fixed.output[-3000:]


def test_switching_backups_off_removes_the_timer_and_keeps_the_repository_and_what_restores_moved_aside(
    backups, deployment
):
    off = deployment.only("nb1").pyinfra()
    assert off.returncode == 0, off.output[-3000:]
    assert off.changed()[deployment.address("nb1")] == ["Backups | No backups"]
    assert deployment.ssh("nb1", "systemctl cat jupyter-backup.timer", check=False).returncode != 0
    assert deployment.ssh("nb1", "test -e /etc/jupyter-backup", check=False).returncode != 0
    # Nothing restores moved aside is lost: it stays (root only), and the run says how big it is.
    aside = "/var/lib/jupyter-backup/moved-aside"
    left = deployment.ssh("nb1", f"ls -A /var/lib/jupyter-backup; stat -c '%U:%G:%a' {aside}")
    assert left.stdout.split() == ["moved-aside", "root:root:700"], left.stdout
    kept = re.search(r"kept /var/lib/jupyter-backup/moved-aside \((\d+) KiB\)", off.output)
    assert kept and int(kept.group(1)) > 0, off.output[-3000:]
    FIGURES["backups off: what it says it kept"] = kept.group(0)
    assert deployment.ssh("nb1", f"find {aside} -name notes.md | grep -c .").stdout == "1\n"
    assert deployment.ssh("nb1", f"test -f {LOCAL_REPOSITORY}/config").returncode == 0
    assert deployment.only("nb1").pyinfra().totals["success"] == 0
