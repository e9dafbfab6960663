"""
A concern's host state, read in one command, and the operations that decide from it.

pyinfra 3.10 caches no facts: every ``host.get_fact`` is one SSH round trip, and its own
``files.put`` reads three facts per file, ``systemd.service`` two, ``server.user`` three.
A concern instead names everything it manages in one ``Snapshot`` (paths, systemd units,
and any probe of its own); the first of its operations to run reads it all with one
command (the ``HostSnapshot`` fact) and every other operation of the concern decides
from that copy.

The copy is the host as it was when the concern began, which is what pyinfra's facts
describe when a run is planned without ``-y``. That is sound because each path and unit
of a snapshot is decided by one operation of the concern: no operation decides from
something an earlier operation of the same concern changed. (Restarts and reloads are
gated on the changes, ``_if``, not on the snapshot.)
"""

from __future__ import annotations

import datetime
import hashlib
import shlex
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.api.output import format_text
from pyinfra.facts.files import FileContents, Sha256File
from pyinfra.operations.util.files import generate_color_diff

from . import records

# Marks each line of the fact's output: a path, a unit, or a probe's line.
PATH, UNIT, PROBE = "P", "U", "X"
UNIT_PROPERTIES = ("ActiveState", "UnitFileState", "NeedDaemonReload", "MainPID", "ExecMainStartTimestamp")


@dataclass(frozen=True)
class PathState:
    """One path as the host has it: ``kind`` is ``file``, ``dir``, ``link``, ``other`` or ``None`` (absent)."""

    kind: str | None
    mode: str = ""
    user: str = ""
    group: str = ""
    mtime: float = 0.0
    # A file's sha256 (not read for secret paths), or a link's target.
    detail: str = ""


@dataclass(frozen=True)
class UnitState:
    """One systemd unit: ``active`` (ActiveState), ``enabled`` (UnitFileState), and what a restart check needs."""

    active: str = ""
    enabled: str = ""
    needs_daemon_reload: bool = False
    main_pid: int = 0
    # When the running main process started, seconds since the epoch (0: not running).
    started: float = 0.0


def _systemd_time(value: str) -> float:
    # `--timestamp=us+utc`: "Wed 2026-12-02 12:00:00.123456 UTC"
    try:
        parsed = datetime.datetime.strptime(value.strip(), "%a %Y-%m-%d %H:%M:%S.%f UTC")
    except ValueError:
        return 0.0
    return parsed.replace(tzinfo=datetime.UTC).timestamp()


class HostSnapshot(FactBase):
    """
    Returns ``{"paths": {path: PathState}, "units": {unit: UnitState}, "probes": {name: [line]}}``
    for ``paths`` (with each file's sha256, except ``secret_paths``: only their owner and mode),
    systemd ``units`` and ``probes`` (name -> a shell command whose output lines are kept).
    """

    @staticmethod
    def default():
        return {"paths": {}, "units": {}, "probes": {}}

    def command(self, paths=(), secret_paths=(), units=(), probes=None):
        q = shlex.quote
        parts = []
        for names, read_sum in ((paths, True), (secret_paths, False)):
            if not names:
                continue
            content = 'x=$(sha256sum < "$p" | cut -c1-64)' if read_sum else "x="
            parts.append(
                f"for p in {' '.join(q(p) for p in names)}; do "
                'if [ -L "$p" ]; then k=link; x=$(readlink -- "$p"); '
                f'elif [ -d "$p" ]; then k=dir; x=; elif [ -f "$p" ]; then k=file; {content}; '
                'elif [ -e "$p" ]; then k=other; x=; '
                f"else printf '{PATH}\\t%s\\tnone\\n' \"$p\"; continue; fi; "
                f'printf \'{PATH}\\t%s\\t%s\\t%s\\t%s\\n\' "$p" "$k" '
                '"$(stat --printf \'%a\\t%U\\t%G\\t%.9Y\' -- "$p")" "$x"; done'
            )
        if units:
            properties = " ".join(f"-p {p}" for p in UNIT_PROPERTIES)
            parts.append(
                f"for u in {' '.join(q(u) for u in units)}; do "
                f'systemctl show --timestamp=us+utc {properties} -- "$u" 2>/dev/null '
                f'| sed "s/^/{UNIT}\\t$u\\t/"; done'
            )
        for name, probe in (probes or {}).items():
            # GNU sed reads \t as a tab; probe names are identifiers of this code.
            parts.append(f"{{ {probe}; }} 2>/dev/null | sed 's/^/{PROBE}\\t{name}\\t/'")
        return "; ".join(parts + ["true"])

    def process(self, output):
        paths, units, probes = {}, {}, {}
        unit_values: dict[str, dict[str, str]] = {}
        for line in output:
            fields = line.rstrip("\n").split("\t")
            if fields[0] == PATH and len(fields) >= 3:
                if fields[2] == "none":
                    paths[fields[1]] = PathState(None)
                elif len(fields) >= 8:
                    kind, mode, user, group, mtime, detail = fields[2:8]
                    paths[fields[1]] = PathState(kind, mode, user, group, float(mtime or 0), detail)
            elif fields[0] == UNIT and len(fields) >= 3:
                key, _, value = "\t".join(fields[2:]).partition("=")
                unit_values.setdefault(fields[1], {})[key] = value
            elif fields[0] == PROBE and len(fields) >= 2:
                probes.setdefault(fields[1], []).append("\t".join(fields[2:]))
        for unit, values in unit_values.items():
            units[unit] = UnitState(
                active=values.get("ActiveState", ""),
                enabled=values.get("UnitFileState", ""),
                needs_daemon_reload=values.get("NeedDaemonReload") == "yes",
                main_pid=int(values.get("MainPID") or 0),
                started=_systemd_time(values.get("ExecMainStartTimestamp", "")),
            )
        return {"paths": paths, "units": units, "probes": probes}


class Snapshot:
    """
    What one concern manages on the current host, read once (``read``) when its first
    operation runs; create it inside the concern's ``@deploy`` so each host gets its own.

    + paths: files, directories and links (each file's sha256 is read)
    + secret_paths: files whose content must not be hashed in a command's output (owner, mode)
    + units: systemd units
    + probes: name -> shell command, for state of the concern's own (its lines are kept)
    """

    def __init__(self, paths=(), secret_paths=(), units=(), probes=None):
        self.paths = list(dict.fromkeys(paths))
        self.secret_paths = list(dict.fromkeys(secret_paths))
        self.units = list(dict.fromkeys(units))
        self.probes = dict(probes or {})
        self._state = None

    def read(self) -> dict:
        if self._state is None:
            self._state = host.get_fact(
                HostSnapshot,
                paths=self.paths,
                secret_paths=self.secret_paths,
                units=self.units,
                probes=self.probes,
            )
        return self._state

    def path(self, path: str) -> PathState:
        assert path in self.paths or path in self.secret_paths, f"{path} is not in this snapshot"
        return self.read()["paths"].get(path, PathState(None))

    def unit(self, unit: str) -> UnitState:
        assert unit in self.units, f"{unit} is not in this snapshot"
        return self.read()["units"].get(unit, UnitState())

    def probe(self, name: str) -> list[str]:
        assert name in self.probes, f"no probe {name} in this snapshot"
        return self.read()["probes"].get(name, [])

    def newer_than(self, paths, since: float) -> list[str]:
        """Which of ``paths`` exist and were modified after ``since`` (seconds since the epoch)."""
        return [p for p in paths if self.path(p).kind and self.path(p).mtime > since]


def file_sha256(path: str, state: Snapshot | None = None) -> str | None:
    """A file's sha256 (``None``: no file there), from ``state`` when given, else read (``Sha256File``)."""
    if state is None:
        return host.get_fact(Sha256File, path=path)
    current = state.path(path)
    return current.detail if current.kind == "file" else None


def _content(content: str | bytes | Path) -> bytes:
    if isinstance(content, Path):
        return content.read_bytes()
    return content.encode() if isinstance(content, str) else content


def _owner_and_mode(path: str, current: PathState, user: str, group: str, mode: str):
    q = shlex.quote
    if (current.user, current.group) != (user, group):
        yield StringCommand(f"chown {q(f'{user}:{group}')} {q(path)}")
    if current.mode != mode.lstrip("0").rjust(3, "0"):
        yield StringCommand(f"chmod {q(mode)} {q(path)}")


@operation()
def file(path: str, content, user: str, group: str, mode: str, snapshot: Snapshot, create_dir: bool = False):
    """
    A file with this content, owner and mode, decided from the concern's snapshot.

    + path: remote path (in ``snapshot.paths``)
    + content: the text, bytes, or a local ``Path`` to upload
    + user, group, mode: owner and octal mode, e.g. ``"640"``
    + snapshot: the concern's ``Snapshot``
    + create_dir: create the parent directory (root, 755) when the file is written

    A new content is uploaded beside the file and moved over it, so the file is never
    seen half-written.

    **Example:**

    .. code:: python

        snapshot.file(name="Jupyter config", path="/etc/jupyter/jupyter_server_config.py",
                      content=config, user="root", group="jupyter", mode="640", snapshot=state)
    """
    current = snapshot.path(path)
    data = _content(content)
    if current.kind == "file" and current.detail == hashlib.sha256(data).hexdigest():
        changes = list(_owner_and_mode(path, current, user, group, mode))
        if not changes:
            host.noop(f"{path} is up to date")
        yield from changes
        return
    if host.state.config.DIFF:
        _show_diff(path, data, current.kind == "file")
    q = shlex.quote
    staged = f"{path}.pyinfra-new"
    if create_dir:
        yield StringCommand(f"mkdir -p {q(path.rsplit('/', 1)[0])}")
    yield FileUploadCommand(BytesIO(data), staged)
    yield StringCommand(
        f"chown {q(f'{user}:{group}')} {q(staged)} && chmod {q(mode)} {q(staged)} && mv -f {q(staged)} {q(path)}"
    )


def _show_diff(path: str, data: bytes, exists: bool) -> None:
    """With ``--diff``, what the upload will change, as pyinfra's ``files.put`` shows it (its
    current content is read only then, one command)."""
    current = host.get_fact(FileContents, path=path) if exists else None
    host.log(f"Will {'modify' if exists else 'create'} {format_text(path, bold=True)}", logger.info)
    try:
        desired = data.decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        logger.info("  binary file")
        return
    for line in generate_color_diff([line + "\n" for line in current or []], desired):
        logger.info("  %s", line)
    logger.info("")


def script(name: str, path: str, source: Path, snapshot: Snapshot):
    """``file`` for a root-owned executable from ``files/``, its directory created when needed."""
    return file(
        name=name,
        path=path,
        content=source,
        user="root",
        group="root",
        mode="755",
        create_dir=True,
        snapshot=snapshot,
    )


@operation()
def directory(path: str, user: str, group: str, mode: str, snapshot: Snapshot, record_as: str | None = None):
    """
    A directory (and its parents) with this owner and mode, decided from the snapshot.

    + path: remote path (in ``snapshot.paths``)
    + user, group, mode: owner and octal mode
    + record_as: when this creates the directory, record it as ``record_as PATH`` in
      ``records.RECORD`` (data the deploy made, which uninstall_purge may delete)

    **Example:**

    .. code:: python

        snapshot.directory(name="Config directory", path="/etc/jupyter", user="root",
                           group="jupyter", mode="750", snapshot=state)
    """
    current = snapshot.path(path)
    if current.kind not in (None, "dir"):
        yield StringCommand(f"rm -f {shlex.quote(path)}")
        current = PathState(None)
    if current.kind is None:
        q = shlex.quote
        record = f" && {records.append(record_as, path)}" if record_as else ""
        yield StringCommand(
            f"mkdir -p {q(path)} && chown {q(f'{user}:{group}')} {q(path)} && chmod {q(mode)} {q(path)}{record}"
        )
        return
    changes = list(_owner_and_mode(path, current, user, group, mode))
    if not changes:
        host.noop(f"{path} is up to date")
    yield from changes


@operation()
def link(path: str, target: str, user: str, group: str, snapshot: Snapshot):
    """
    A symbolic link to ``target``, decided from the snapshot.

    + path: the link (in ``snapshot.paths``); a file or link there is replaced
    + target: what it points at
    + user, group: the link's own owner

    **Example:**

    .. code:: python

        snapshot.link(name="Kernel specs", path="/etc/jupyter/user/kernels",
                      target="/var/lib/jupyter/.local/share/jupyter/kernels",
                      user="root", group="jupyter", snapshot=state)
    """
    current = snapshot.path(path)
    q = shlex.quote
    if current.kind == "link" and current.detail == target:
        if (current.user, current.group) == (user, group):
            host.noop(f"{path} points at {target}")
            return
    elif current.kind == "dir":
        raise ValueError(f"{path} is a directory, not a link")
    else:
        yield StringCommand(f"ln -sfn {q(target)} {q(path)}")
    yield StringCommand(f"chown -h {q(f'{user}:{group}')} {q(path)}")


@operation()
def absent(path: str, snapshot: Snapshot):
    """
    No file or link at ``path`` (a directory is removed with its content), decided from the snapshot.

    **Example:**

    .. code:: python

        snapshot.absent(name="No Basic-auth file", path="/etc/apache2/jupyter.htpasswd", snapshot=state)
    """
    if snapshot.path(path).kind is None:
        host.noop(f"{path} is absent")
        return
    yield StringCommand(f"rm -rf {shlex.quote(path)}")


@operation()
def service(unit: str, snapshot: Snapshot, running: bool = True, enabled: bool = True):
    """
    A systemd unit started and enabled (or stopped and disabled), decided from the snapshot.

    + unit: the unit's full name, e.g. ``jupyter.service`` (in ``snapshot.units``)
    + running, enabled: wanted states

    **Example:**

    .. code:: python

        snapshot.service(name="fail2ban running", unit="fail2ban.service", snapshot=state)
    """
    current = snapshot.unit(unit)
    q = shlex.quote(unit)
    is_running = current.active in ("active", "activating", "reloading")
    if running != is_running:
        yield StringCommand(f"systemctl {'start' if running else 'stop'} {q}")
    if enabled != (current.enabled == "enabled"):
        yield StringCommand(f"systemctl {'enable' if enabled else 'disable'} {q}")
    if running == is_running and enabled == (current.enabled == "enabled"):
        host.noop(f"{unit} is {'running' if running else 'stopped'} and {'enabled' if enabled else 'disabled'}")
