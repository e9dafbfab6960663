"""
A host replaced with nothing lost (docs/backups.md, "Replacing a host"): nb10 (Debian 12) holds
notebooks, a larger data folder and a venv of its user's, backed up over sftp to a repository on
nb3; nb11 (Debian 13), a new host, is deployed with the same settings and the same
backup_repository, and ``restore.py`` with ``restore_from = 'nb10'`` brings nb10's files from its
latest snapshot: byte-identical, the notebook user's, Jupyter serving them; the venv (made with
Debian 12's Python) is listed for its user to recreate; nb10 is not touched.

The scenario runs on a thread of its own from the session's first run on (conftest.py), beside
the other modules' tests; the tests check what it saw. ``REPLACE_DATA_MIB`` sets the size of the data
folder (64 MiB by default; the closing note's figure is for 1024).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from operations.settings.paths import home_of
from operations.settings.registry import DEFAULTS
from smoke.client import Jupyter
from tests.e2e.scenario import FIGURES, PASSWORD, REPLACE_MACHINES, Deployment

(OLD, _), (NEW, _) = REPLACE_MACHINES
REPOSITORY_HOST = "nb3"
SFTP_USER, SFTP_DIRECTORY = "jdreplace", "/srv/restic/replaced"
ENV = {"JUPYTER_BACKUP_PASSWORD": "lab replacement backup password, not secret 7713"}
USER = DEFAULTS["jupyter_user"]
NOTEBOOKS = DEFAULTS["notebook_dir"]
HOME = home_of(USER)
DATA_MIB = int(os.environ.get("REPLACE_DATA_MIB", "64"))
FOLDER = "replaced"
CELL = {"cell_type": "code", "source": "print('from nb10')", "metadata": {}, "outputs": [], "execution_count": None}
NOTEBOOK = {
    "cells": [CELL],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}
# The user's own venv, made from a notebook with the distribution's Python (Debian 12's here).
MAKE_VENV = (
    "import os, subprocess, sys\n"
    "subprocess.run([sys.executable, '-m', 'venv', os.path.expanduser('~/envs/analysis')], check=True)\n"
    "print('made')\n"
)


def tree(deployment: Deployment, name: str, root: str) -> dict[str, str]:
    """sha256 and owner of every file under ``root`` on the host, by relative path (Jupyter's
    checkpoint copies and the venv's caches left out)."""
    out = deployment.ssh(
        name,
        f"cd {shlex.quote(root)} && find . -type f -not -path '*/.ipynb_checkpoints/*' "
        "-not -path '*/__pycache__/*' -printf '%u %p\\0' | "
        "while IFS= read -r -d '' entry; do printf '%s %s\\n' \"${entry%% *}\" "
        '"$(sha256sum < "${entry#* }" | cut -c1-64) ${entry#* }"; done',
        timeout=600,
    ).stdout
    files = {}
    for line in out.splitlines():
        owner, digest, path = line.split(" ", 2)
        files[path.removeprefix("./")] = f"{owner} {digest}"
    return files


def client(deployment: Deployment, name: str, workdir: Path) -> Jupyter:
    ca_file = workdir / f"{name}.pem"
    ca_file.write_text(deployment.ssh(name, "cat /etc/ssl/certs/jupyter-apache.crt").stdout)
    jupyter = Jupyter(f"https://{deployment.address(name)}/jupyter/", ca_file=str(ca_file), timeout=60)
    jupyter.login(PASSWORD)
    return jupyter


def backed_up(deployment: Deployment, name: str) -> None:
    deployment.ssh(
        name,
        "systemctl start jupyter-backup.service && "
        '[ "$(systemctl show -p Result --value jupyter-backup.service)" = success ]',
        timeout=900,
    )


def old_state(deployment: Deployment) -> dict:
    """What the replacement must leave as it was on the old host."""
    return {
        "notebooks": tree(deployment, OLD, NOTEBOOKS),
        "home": tree(deployment, OLD, HOME),
        "jupyter pid": deployment.ssh(OLD, "systemctl show -p MainPID --value jupyter").stdout.strip(),
        "restores": deployment.ssh(OLD, "cat /var/lib/jupyter-backup/last-restore 2>/dev/null || true").stdout,
    }


def scenario(main: Deployment, workdir: Path, seen: dict) -> None:
    """Every step, in order: the old host, its backup, the new host, the restore."""
    lab = main.lab
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = key.with_suffix(".pub").read_text().strip()
    main.ssh(
        REPOSITORY_HOST,
        f"id {SFTP_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {SFTP_USER}; "
        f"install -d -o {SFTP_USER} -g {SFTP_USER} -m 700 /home/{SFTP_USER}/.ssh {SFTP_DIRECTORY}; "
        f"echo {shlex.quote(public)} > /home/{SFTP_USER}/.ssh/authorized_keys; "
        f"chown {SFTP_USER}: /home/{SFTP_USER}/.ssh/authorized_keys",
    )
    settings = {
        "backup_repository": f"sftp:{SFTP_USER}@{main.address(REPOSITORY_HOST)}:{SFTP_DIRECTORY}",
        "backup_ssh_key": str(key),
    }
    replaced = Deployment(
        lab,
        workdir,
        main.installer_url,
        main.installer_sha256,
        names=[OLD, NEW],
        data={OLD: settings, NEW: settings},
    )
    old, new = replaced.only(OLD), replaced.only(NEW)

    # The old host, deployed with backups; notebooks, data and a venv of its user's; backed up.
    seen["old first run"] = run = old.pyinfra(env=ENV)
    assert run.returncode == 0, run.output[-3000:]
    jupyter = client(old, OLD, workdir)
    jupyter.api("PUT", "contents/" + quote(FOLDER), json={"type": "directory"})
    for index in range(3):
        body = {"type": "notebook", "format": "json", "content": NOTEBOOK}
        jupyter.api("PUT", "contents/" + quote(f"{FOLDER}/analysis {index}.ipynb"), json=body)
    assert jupyter.execute(MAKE_VENV).strip() == "made"
    chunks = max(1, DATA_MIB // 64)
    old.ssh(
        OLD,
        f"runuser -u {USER} -- sh -c 'mkdir -p {NOTEBOOKS}/{FOLDER}/data && for i in $(seq {chunks}); do "
        f"head -c {DATA_MIB // chunks}M /dev/urandom > {NOTEBOOKS}/{FOLDER}/data/part-$i.bin; done'",
        timeout=600,
    )
    seen["old hostname"] = old.ssh(OLD, "hostname").stdout.strip()
    started = time.monotonic()
    backed_up(old, OLD)
    seen["backup seconds"] = time.monotonic() - started
    seen["old before"] = old_state(old)

    # The new host: the same settings and repository; then restore.py from the old host.
    started = time.monotonic()
    seen["new first run"] = run = new.pyinfra(env=ENV)
    assert run.returncode == 0, run.output[-3000:]
    seen["new deploy seconds"] = time.monotonic() - started
    restore_started = time.monotonic()
    seen["restore"] = new.pyinfra(script="restore.py", overrides={NEW: {"restore_from": seen["old hostname"]}}, env=ENV)
    seen["restore seconds"] = time.monotonic() - restore_started
    seen["replacement seconds"] = time.monotonic() - started
    FIGURES[f"replacement of {OLD} (Debian 12) by {NEW} (Debian 13), {DATA_MIB} MiB of data: deploy + restore"] = (
        f"{seen['replacement seconds']:.0f} s (deploy {seen['new deploy seconds']:.0f} s, "
        f"restore {seen['restore seconds']:.0f} s; backup before {seen['backup seconds']:.0f} s)"
    )
    listed = [line.strip() for line in seen["restore"].output.splitlines() if "recreate it" in line]
    FIGURES[f"replacement: what {NEW}'s restore listed to recreate"] = "; ".join(listed) or "nothing"
    seen["new notebooks"] = tree(new, NEW, NOTEBOOKS)
    seen["new home"] = tree(new, NEW, HOME)
    jupyter = client(new, NEW, workdir)
    seen["served"] = jupyter.api("GET", "contents/" + quote(f"{FOLDER}/analysis 0.ipynb")).json()
    seen["new rerun"] = new.pyinfra(env=ENV)
    seen["old after"] = old_state(old)
    # restore.py without restore_from: the new host's own latest, and it has none yet.
    seen["new hostname"] = new.ssh(NEW, "hostname").stdout.strip()
    seen["own restore"] = new.pyinfra(script="restore.py", env=ENV)


@pytest.fixture(scope="module")
def replaced(replace_background) -> dict:
    """What the scenario saw (it ran beside the other modules' tests; this waits for its end)."""
    return replace_background.finished("replace")


def test_the_new_host_holds_the_old_hosts_files_byte_for_byte_as_its_notebook_user(replaced):
    restore = replaced["restore"]
    assert restore.returncode == 0, restore.output[-3000:]
    assert f"of host {replaced['old hostname']} in place as {USER}" in restore.output, restore.output[-3000:]
    before = replaced["old before"]
    # Byte-identical, and the notebook user's on the new host (its uid there, whatever it was).
    assert replaced["new notebooks"] == before["notebooks"]
    assert len([path for path in before["notebooks"] if path.startswith(f"{FOLDER}/data/")]) >= 1
    venv = {path: entry for path, entry in before["home"].items() if path.startswith("envs/analysis/")}
    assert venv and all(replaced["new home"].get(path) == entry for path, entry in venv.items())
    assert replaced["served"]["content"]["cells"][0]["source"] == "print('from nb10')"


def test_the_venv_of_the_old_hosts_python_is_listed_to_recreate(replaced):
    output = replaced["restore"].output
    assert "~/envs/analysis" in output and "recreate it" in output, output[-3000:]


def test_the_old_host_is_untouched_and_the_new_one_converged(replaced):
    assert replaced["old after"] == replaced["old before"]
    rerun = replaced["new rerun"]
    assert rerun.returncode == 0 and not rerun.changed(), rerun.output[-3000:]


def test_the_new_hosts_own_latest_is_its_own_and_it_has_none(replaced):
    own = replaced["own restore"]
    assert own.returncode != 0
    said = own.output
    assert f"has no snapshot of host {replaced['new hostname']}" in said and replaced["old hostname"] in said, said[
        -3000:
    ]
