"""
Backups: the notebooks and the Jupyter user's home, encrypted and deduplicated by restic,
on a systemd timer. Off until ``backup_repository`` is set.

The repository password comes from ``$JUPYTER_BACKUP_PASSWORD`` on the control machine and
lives on the host only in a root-only file restic reads (``RESTIC_PASSWORD_FILE``): it is
uploaded, never put on a command line, never diffed. The deploy creates the repository
when there is none and never initialises one that exists (``files/jupyter-backup``).
``restore.py`` restores from it; the smoke check reports the age of the last backup.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, deploy, operation

from . import jupyter, layout, passwords, people, records, settings, snapshot, system
from .hub import layout as hub_layout
from .render import FILES, render

# procps: pgrep, with which a restore waits until no process of the notebook user is left.
PACKAGES = ["restic", "procps"]
CONFIG_DIR = "/etc/jupyter-backup"
CONFIG_FILE = f"{CONFIG_DIR}/backup.conf"
SECRETS_FILE = f"{CONFIG_DIR}/restic.env"
PASSWORD_FILE = f"{CONFIG_DIR}/password"
SSH_KEY_FILE = f"{CONFIG_DIR}/ssh_key"
SCRIPT = f"{layout.LIB}/jupyter-backup"
# files/jupyter-restore-files: the part of an in-place restore that runs as the notebook user.
RESTORE_SCRIPT = f"{layout.LIB}/jupyter-restore-files"
STATE_NAME = "jupyter-backup"
STATE_DIR = f"/var/lib/{STATE_NAME}"
# What the smoke check reads (through a notebook kernel): times and a snapshot id.
STATUS_FILE = f"{STATE_DIR}/status"
CACHE_DIR = f"/var/cache/{STATE_NAME}"
# sftp: the server's host key, learnt on first contact (accept-new) and pinned from then on.
KNOWN_HOSTS = f"{STATE_DIR}/known_hosts"
# What the last restore did (files/jupyter-backup writes it, restore.py shows it).
LAST_RESTORE = f"{STATE_DIR}/last-restore"
# What an in-place restore replaced, by time of the restore: kept until uninstall purges it
# (root only; switching backups off keeps it too).
MOVED_ASIDE = f"{STATE_DIR}/moved-aside"
UNIT = "jupyter-backup"
SERVICE = f"{UNIT}.service"
SERVICE_FILE = f"{layout.SYSTEMD_DIR}/{UNIT}.service"
TIMER_FILE = f"{layout.SYSTEMD_DIR}/{UNIT}.timer"
# Left out of the home (all three come back by themselves or are worthless after a restart):
# caches; packages the user pip-installed (large, binary, reinstallable from PyPI: keep a
# `pip freeze --user` in the notebooks to have the list backed up); kernel connection files
# (each kernel's secret key, stale once the kernel is gone).
HOME_EXCLUDES = (".cache", ".local/lib", ".local/share/jupyter/runtime")
# The night window a default schedule falls in (minutes after midnight, host time).
NIGHT_START, NIGHT_MINUTES = 60, 240


def packages(data) -> list[str]:
    """What the concern installs (through ``system.install_packages``)."""
    return PACKAGES if data.get("backup_repository", settings.DEFAULTS["backup_repository"]) else []


def default_schedule(host_name: str) -> str:
    """Daily at a night time of its own for each host (so a fleet does not back up at once),
    the same on every run."""
    minute = NIGHT_START + system.spread(host_name, NIGHT_MINUTES)
    return f"*-*-* {minute // 60:02d}:{minute % 60:02d}:00"


def keep_arguments(keep: dict[str, int]) -> list[str]:
    arguments = []
    for kind in settings.KEEP_KINDS:
        if keep.get(kind):
            arguments += [f"--keep-{kind}", str(keep[kind])]
    return arguments


def backup_paths(notebook_dir: str, user: str) -> list[str]:
    return [notebook_dir, settings.home_of(user)]


def root_paths(per_person: bool, shared_data_dir: str | None) -> list[str]:
    """What else a per-person host's backup holds, restored only beside (restore_to), never in
    place: the hub's state (its database as a consistent copy) and the shared data directory.
    People's homes are found when the backup runs (every account the hub made)."""
    if not per_person:
        return []
    return [hub_layout.STATE_DIR, *([shared_data_dir] if shared_data_dir else [])]


def config_file(
    repository: str,
    notebook_dir: str,
    user: str,
    schedule: str,
    keep: dict[str, int],
    ssh_key: bool,
    per_person: bool = False,
    shared_data_dir: str | None = None,
) -> str:
    """``backup.conf``: what to back up and how (no secret), sourced by the script."""
    home = settings.home_of(user)
    excludes = [f"{home}/{name}" for name in HOME_EXCLUDES]
    if per_person:
        excludes += [f"{people.HOMES}/{people.PREFIX}*/{name}" for name in HOME_EXCLUDES]
        # The live database and its journal: the backup holds DATABASE_COPY.
        excludes.append(f"{hub_layout.DATABASE}*")
    sftp_command = None
    sftp = settings.sftp_parts(repository)
    if sftp:
        sftp_user, sftp_host, _ = sftp
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new"]
        ssh += ["-o", f"UserKnownHostsFile={KNOWN_HOSTS}"]
        if ssh_key:
            ssh += ["-i", SSH_KEY_FILE, "-o", "IdentitiesOnly=yes"]
        sftp_command = " ".join([*ssh, f"{sftp_user}@{sftp_host.strip('[]')}", "-s", "sftp"])
    return render(
        "jupyter-backup.conf.j2",
        paths=backup_paths(notebook_dir, user),
        root_paths=root_paths(per_person, shared_data_dir),
        exclude_patterns=excludes,
        keep_arguments=keep_arguments(keep),
        schedule=schedule,
        state_dir=STATE_DIR,
        status_file=STATUS_FILE,
        cache_dir=CACHE_DIR,
        restore_files=RESTORE_SCRIPT,
        created_record=records.RECORD,
        user=user,
        jupyter_unit=jupyter.UNIT,
        sftp_command=sftp_command,
        per_person=per_person,
        people_comment=people.COMMENT_PREFIX,
        hub_python=hub_layout.PYTHON,
        hub_database=hub_layout.DATABASE,
        hub_database_copy=hub_layout.DATABASE_COPY,
        server_script=hub_layout.RESTART_SERVER_SCRIPT,
    )


def secrets_file(repository: str, environ=None) -> str:
    """``restic.env``: the repository (it may carry credentials) and the S3 keys, root-only."""
    environ = os.environ if environ is None else environ
    names = settings.S3_CREDENTIAL_ENVS if repository.startswith("s3:") else ()
    return render(
        "restic.env.j2",
        repository=repository,
        password_file=PASSWORD_FILE,
        credentials={name: environ[name] for name in names},
    )


def scripts(state: snapshot.Snapshot) -> None:
    """The backup script and the restore script it runs as the notebook user, as this
    checkout has them."""
    snapshot.script(name="Backup script", dest=SCRIPT, src=FILES / "jupyter-backup", state=state)
    snapshot.script(
        name="Restore script (run as the notebook user)",
        dest=RESTORE_SCRIPT,
        src=FILES / "jupyter-restore-files",
        state=state,
    )


def script_command() -> str:
    """``files/jupyter-backup`` with the files it reads its settings from, for a subcommand."""
    return system.script_line(SCRIPT, {"--config": CONFIG_FILE, "--secrets": SECRETS_FILE})


def service_unit(repository: str, per_person: bool = False) -> str:
    local = repository if repository.startswith("/") else None
    return render(
        f"{UNIT}.service.j2",
        command=script_command(),
        state_name=STATE_NAME,
        local_repository=local,
        database_copy_dir=hub_layout.DATABASE_COPY_DIR if per_person else None,
    )


def timer_unit(schedule: str) -> str:
    return render(f"{UNIT}.timer.j2", schedule=schedule)


class BackupRepositoryState(snapshot.Probe):
    """
    ``{"exit": N, "status_file": bool, "schedule_ok": bool, "reason": str}``:
    ``jupyter-backup check-repository``'s exit code (0 opens, 3 none yet, else failed:
    ``reason`` is restic's), whether the status file the smoke check reads exists, and
    whether systemd accepts ``schedule``. It runs the concern's own script: read before the
    script is on the host (a fresh host), it is read again once the script is there.
    """

    MARKERS = ("status-file", "bad-schedule")

    def __init__(self, schedule: str):
        self.schedule = schedule

    def command(self):
        return (
            f'{script_command()} check-repository 2>&1; echo "exit=$?"; '
            f"test -e {shlex.quote(STATUS_FILE)} && echo status-file; "
            f"systemd-analyze calendar {shlex.quote(self.schedule)} >/dev/null 2>&1 || echo bad-schedule; true"
        )

    def parse(self, output):
        lines = list(output)
        if not lines:
            return {"exit": 1, "status_file": False, "schedule_ok": True, "reason": "the host gave no answer"}
        exit_code = next((int(line[5:]) for line in lines if line.startswith("exit=")), 1)
        reason = " ".join(line.strip() for line in lines if not line.startswith("exit=") and line not in self.MARKERS)
        return {
            "exit": exit_code,
            "status_file": "status-file" in lines,
            "schedule_ok": "bad-schedule" not in lines,
            "reason": reason,
        }


def repository_snapshot(schedule: str) -> snapshot.Snapshot:
    """The repository's state (``BackupRepositoryState``)."""
    return snapshot.Snapshot(probes={"repository": BackupRepositoryState(schedule)})


@operation()
def repository_ready(schedule: str, state: snapshot.Snapshot):
    """
    Create the backup repository when there is none; fail with restic's reason when it
    exists but does not open (a wrong password, an unreachable server). Never initialises
    a repository that exists.

    + schedule: the timer's OnCalendar: the host's systemd must accept it (checked here,
      before the timer is written)
    + state: ``repository_snapshot(schedule)``
    """
    state = state.probe("repository")
    if not state["schedule_ok"]:
        raise OperationError(
            f"setting backup_schedule = {schedule!r} is not allowed: this host's systemd does not "
            f"accept it as OnCalendar (try: systemd-analyze calendar {shlex.quote(schedule)})"
        )
    if state["exit"] == 3 or (state["exit"] == 0 and not state["status_file"]):
        yield StringCommand(script_command(), "init")
    elif state["exit"] != 0:
        raise OperationError(f"the backup repository does not open: {state['reason'][:500]}")
    else:
        host.noop("the backup repository exists and opens")


# What the concern installs (uninstall.py removes these too). Of the state directory only
# its own files: MOVED_ASIDE holds the user's files, kept unless uninstall purges.
INSTALLED = [
    TIMER_FILE,
    SERVICE_FILE,
    CONFIG_DIR,
    SCRIPT,
    RESTORE_SCRIPT,
    STATUS_FILE,
    KNOWN_HOSTS,
    LAST_RESTORE,
    CACHE_DIR,
]


def moved_aside_note(sizes: dict[str, int]) -> str | None:
    """The line that says ``MOVED_ASIDE`` stays, with its size (``None``: there is none)."""
    if MOVED_ASIDE not in sizes:
        return None
    return (
        f"kept {MOVED_ASIDE} ({sizes[MOVED_ASIDE]} KiB): the files restores replaced; "
        "delete it when nobody needs them (uninstall_purge does)"
    )


class DiskUse(snapshot.Probe):
    """KiB used by each of ``paths`` that exists: ``{path: KiB}``."""

    def __init__(self, *paths: str):
        self.paths = paths

    def command(self):
        return f"du -sk {' '.join(shlex.quote(p) for p in self.paths)} 2>/dev/null || true"

    def parse(self, output):
        sizes = {}
        for line in output:
            kib, _, path = line.partition("\t")
            if kib.isdigit():
                sizes[path] = int(kib)
        return sizes


# Made for backups in the hub's state (per_person_servers): removed with them, while an
# uninstall keeps the hub's state (its database) whole.
REMOVED_WITH_BACKUPS = [*INSTALLED, hub_layout.DATABASE_COPY_DIR]


def removal_snapshot() -> snapshot.Snapshot:
    """What there is to remove when backups are switched off, and how big ``MOVED_ASIDE`` is."""
    return snapshot.Snapshot(paths=REMOVED_WITH_BACKUPS, probes={"kept": DiskUse(MOVED_ASIDE)})


@operation()
def backups_removed(state: snapshot.Snapshot):
    """No backup timer, unit, scripts, settings or secrets (the repository and ``MOVED_ASIDE`` are kept).

    + state: ``removal_snapshot()``
    """
    note = moved_aside_note(state.probe("kept"))
    present = [path for path in REMOVED_WITH_BACKUPS if state.path(path).kind]
    if not present:
        host.noop("no backups are set up" + (f"; {note}" if note else ""))
        return
    if note:
        host.log(note)
    yield f"systemctl disable --now {UNIT}.timer 2>/dev/null || true"
    yield StringCommand("rm", "-rf", *(shlex.quote(p) for p in present))
    # An interrupted restore's staging, then the state directory if nothing else is left.
    state_dir = shlex.quote(STATE_DIR)
    yield StringCommand(f"rm -rf {state_dir}/restore.*; rmdir {state_dir} 2>/dev/null || true")
    yield "systemctl daemon-reload"


@deploy(
    "Backups",
    data_defaults=settings.defaults(
        "backup_repository",
        "backup_schedule",
        "backup_keep",
        "backup_ssh_key",
        "notebook_dir",
        "jupyter_user",
        "per_person_servers",
        "shared_data_dir",
    ),
)
def configure_backups():
    """restic backups on a timer, or none (needs ``packages``)."""
    repository = host.data.backup_repository
    if not repository:
        backups_removed(name="No backups", state=removal_snapshot())
        return
    schedule = host.data.backup_schedule or default_schedule(host.name)
    ssh_key = host.data.backup_ssh_key
    # The repository's own state is its own snapshot (repository_snapshot): it runs the script
    # this concern uploads first.
    per_person = host.data.per_person_servers
    state = snapshot.Snapshot(
        paths=[CONFIG_DIR, SCRIPT, RESTORE_SCRIPT, CONFIG_FILE, STATE_DIR, SERVICE_FILE, TIMER_FILE]
        + ([hub_layout.DATABASE_COPY_DIR] if per_person else []),
        secret_paths=[SECRETS_FILE, PASSWORD_FILE, SSH_KEY_FILE],
        units=[f"{UNIT}.timer"],
    )
    root_only = {"user": "root", "group": "root", "state": state}
    snapshot.directory(name="Backup settings directory (root only)", path=CONFIG_DIR, mode="700", **root_only)
    scripts(state)
    snapshot.put(
        name="Backup settings",
        src=snapshot.text(
            config_file(
                repository,
                host.data.notebook_dir,
                host.data.jupyter_user,
                schedule,
                host.data.backup_keep,
                ssh_key=bool(ssh_key),
                per_person=per_person,
                shared_data_dir=host.data.shared_data_dir,
            )
        ),
        dest=CONFIG_FILE,
        mode="600",
        **root_only,
    )
    passwords.secret_file(
        name="Backup repository and its credentials (never shown)",
        path=SECRETS_FILE,
        content=secrets_file(repository),
        state=state,
    )
    passwords.secret_file(
        name="Backup repository password (never shown)",
        path=PASSWORD_FILE,
        content=os.environ.get(settings.BACKUP_PASSWORD_ENV, "") + "\n",
        state=state,
    )
    if ssh_key:
        passwords.secret_file(
            name="SSH key for the backup server (never shown)",
            path=SSH_KEY_FILE,
            content=Path(ssh_key).read_text(),
            state=state,
        )
    snapshot.directory(name="Backup state directory", path=STATE_DIR, mode="755", **root_only)
    repository_ready(
        name="Backup repository (created when there is none)", schedule=schedule, state=repository_snapshot(schedule)
    )
    if per_person:
        # The one place the backup unit writes outside its own directories (ReadWritePaths).
        snapshot.directory(
            name="The hub's database copy for backups (root only)",
            path=hub_layout.DATABASE_COPY_DIR,
            mode="700",
            **root_only,
        )
    service = snapshot.put(
        name="Backup service",
        src=snapshot.text(service_unit(repository, per_person)),
        dest=SERVICE_FILE,
        mode="644",
        **root_only,
    )
    timer = snapshot.put(
        name="Backup timer", src=snapshot.text(timer_unit(schedule)), dest=TIMER_FILE, mode="644", **root_only
    )
    # Restarted for a new schedule.
    snapshot.service(
        name="Backup timer running and enabled",
        service=f"{UNIT}.timer",
        daemon_reload=snapshot.Changes(service, timer),
        restarted=snapshot.Changes(timer),
        state=state,
    )


@operation(is_idempotent=False)
def restored(snapshot_id: str, target: str | None = None, person: str | None = None, from_host: str | None = None):
    """
    Restore a snapshot in place (as the notebook user, Jupyter stopped meanwhile) or into
    ``target``, with the backup script the deploy installed; then show what it did.

    + snapshot_id: ``latest`` or a restic snapshot id
    + target: a new or empty directory outside the notebook user's tree; ``None``: in place
    + person: per_person_servers: the address of the person whose home alone is restored (in
      place as that person, their server stopped by the hub meanwhile, or into ``target``)
    + from_host: the host name of a host this one replaces: ``latest`` is its latest snapshot,
      and what users built there on a Python this host lacks is listed after (``None``: this
      host's own snapshots)

    **Example:**

    .. code:: python

        backups.restored(name="Restore the latest snapshot", snapshot_id="latest")
    """
    where = [QuoteString(target)] if target else []
    command = [script_command()]
    if from_host:
        from . import conda  # conda's switch stops the backup unit: it imports this module

        command += ["--from-host", QuoteString(from_host), "--stranded", conda.STRANDED_SCRIPT]
        command += ["--python", QuoteString(f"{host.data.conda_prefix}/bin/python")]
    if person:
        account = people.unix_name(person)
        unit = hub_layout.server_unit(people.hub_name(person))
        yield StringCommand(
            *command,
            "restore-person",
            QuoteString(snapshot_id),
            QuoteString(account),
            QuoteString(unit),
            *where,
        )
    else:
        yield StringCommand(*command, "restore", QuoteString(snapshot_id), *where)
    yield system.shown_report(LAST_RESTORE)


@deploy(
    "Restore from backup",
    data_defaults=settings.defaults(
        "backup_repository", "restore_snapshot", "restore_to", "restore_person", "restore_from", "conda_prefix"
    ),
)
def restore_backup():
    """Restore the notebooks and the Jupyter home (or one person's home) from a snapshot, in
    place or into ``restore_to``, with the scripts of this checkout (a host last deployed by an
    older one may have others)."""
    # A host without backup_repository was refused by settings.validate(host, script="restore").
    target, person = host.data.restore_to, host.data.restore_person
    scripts(snapshot.Snapshot(paths=[SCRIPT, RESTORE_SCRIPT]))
    whose = f" of {person}'s home" if person else ""
    source = host.data.restore_from
    origin = f" of host {source}" if source else ""
    restored(
        name=f"Restore snapshot {host.data.restore_snapshot}{origin}{whose}"
        + (f" into {target}" if target else " in place"),
        snapshot_id=host.data.restore_snapshot,
        target=target,
        person=person,
        from_host=source,
    )
