"""
A host's state, read in one command for the whole run, and the operations that decide from it.

pyinfra 3.10 caches no facts: every ``host.get_fact`` is one SSH round trip, and its own
``files.put`` reads three facts per file, ``systemd.service`` two, ``server.user`` three.
A concern instead names everything it manages in one ``Snapshot`` (paths, systemd units,
and ``Probe``s: a command and its parser, for anything else it reads). Every snapshot of a
host registers when its concern is planned; the first one an operation reads reads them all,
with one command (the ``HostSnapshot`` fact), and each later one decides from that copy as
long as no operation of the run has changed the host since. Once one has, a snapshot read
after it reads the host again (with every other one not read yet). So a run that changes
nothing reads each host once; a first deploy reads it about once per concern, as it changes.

The copy is the host as it was when the read was made, which is what pyinfra's facts
describe when a run is planned without ``-y``. That is sound because each path and unit is
decided by one operation of the whole deploy (``Snapshot.claim``: a second claim, by any
operation of any concern, raises while the run is planned): no operation decides from
something an earlier operation changed. What a change calls for (a restart, a reload, a
command) is ``Changes``: the operations it follows, asked what they will do while the run is
planned and what they did once it runs.

The operations mirror pyinfra's own: ``put`` (``files.put``), ``directory``
(``files.directory``), ``link`` (``files.link``), ``absent`` (``files.file`` with
``present=False``), ``service`` (``systemd.service``) and ``shell`` (``server.shell`` with
``_if``), each with ``state``, the concern's ``Snapshot``, added: going back to pyinfra's
operation is a one-line change.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO, StringIO
from pathlib import Path
from typing import IO

from pyinfra import host, logger
from pyinfra.api import FactBase, FileUploadCommand, FunctionCommand, StringCommand, operation
from pyinfra.api.output import format_text
from pyinfra.facts.files import FileContents
from pyinfra.operations.util.files import generate_color_diff

from . import layout, records

# Marks each line of the fact's output: a path, a unit, a probe's line, or what the deploy
# last made at a path (records.MADE).
PATH, UNIT, PROBE, MADE = "P", "U", "X", "M"
READ_MARKER = "jupyter-deploy-host-read"
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
class Made:
    """What the deploy last made at a path (``records.MADE``): ``what`` is a file's sha256,
    ``link:TARGET`` or ``dir``; ``owner`` is ``user:group``; ``mode`` is ``-`` for a link."""

    what: str
    owner: str
    mode: str


@dataclass(frozen=True)
class UnitState:
    """One systemd unit: ``active`` (ActiveState), ``enabled`` (UnitFileState), and what a restart check needs."""

    active: str = ""
    enabled: str = ""
    needs_daemon_reload: bool = False
    main_pid: int = 0
    # When the running main process started, seconds since the epoch (0: not running).
    started: float = 0.0


class Probe:
    """
    What a concern reads of a host beyond paths and units: one shell command (``command``) and
    the parser of the lines it prints (``parse``). Read with the concern's snapshot, never on
    its own; its errors are not shown (what it prints on stdout is all it says).
    """

    def command(self) -> str:
        raise NotImplementedError

    def parse(self, lines: list[str]):
        return lines


def probe_key(probe: Probe) -> str:
    """The name a probe's lines carry in a read: the same probe (the same command) in two
    concerns' snapshots is run once."""
    return hashlib.sha256(probe.command().encode()).hexdigest()[:16]


class Lines(Probe):
    """A command whose output lines are the answer."""

    def __init__(self, command: str):
        self._command = command

    def command(self) -> str:
        return self._command


class FileLines(Probe):
    """The non-empty lines of a file (``[]`` when there is none)."""

    def __init__(self, path: str):
        self.path = path

    def command(self) -> str:
        return f"cat {shlex.quote(self.path)} 2>/dev/null || true"

    def parse(self, lines: list[str]) -> list[str]:
        return [line for line in lines if line.strip()]


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
        return {"paths": {}, "units": {}, "probes": {}, "made": {}}

    def command(self, paths=(), secret_paths=(), units=(), probes=None):
        q = shlex.quote
        # A no-op word naming the read (a fake host answers it: tests/fake_hosts.py).
        parts = [f": {READ_MARKER}"]
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
        if paths:
            # awk reads escapes in -v values: each path's backslashes doubled, one path a line.
            wanted = "\\n".join(p.replace("\\", "\\\\") for p in paths)
            parts.append(
                f"awk -F '\\t' -v want={q(wanted)} "
                '\'BEGIN { n = split(want, list, "\\n"); for (i = 1; i <= n; i++) w[list[i]] = 1 } '
                f'($1 in w) {{ print "{MADE}\\t" $0 }}\' {q(records.MADE)} 2>/dev/null'
            )
        return "; ".join(parts + ["true"])

    def process(self, output):
        paths, units, probes, made = {}, {}, {}, {}
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
            elif fields[0] == MADE and len(fields) == 5:
                made[fields[1]] = Made(*fields[2:5])
        for unit, values in unit_values.items():
            units[unit] = UnitState(
                active=values.get("ActiveState", ""),
                enabled=values.get("UnitFileState", ""),
                needs_daemon_reload=values.get("NeedDaemonReload") == "yes",
                main_pid=int(values.get("MainPID") or 0),
                started=_systemd_time(values.get("ExecMainStartTimestamp", "")),
            )
        return {"paths": paths, "units": units, "probes": probes, "made": made}


def _current_host():
    """The host being planned or run (``None`` outside a pyinfra run: a test's own snapshot)."""
    return host._get_module()


def _executing() -> bool:
    """Whether the run executes its operations now (not planning them)."""
    current = _current_host()
    return bool(current is not None and getattr(current.state, "is_executing", False))


def _changes_so_far() -> int:
    """How many operations of this run have changed the current host (done, with commands)."""
    current = _current_host()
    operations = getattr(current.state, "ops", {}).get(current, {}) if current is not None else {}
    return sum(
        1 for data in operations.values() if data.operation_meta.is_complete() and data.operation_meta.did_change()
    )


class HostReads:
    """
    Every snapshot of one host in this run, and what the host's operations claim: the first
    snapshot read reads all that are not read yet, with one command; a snapshot whose copy came
    from a read made before an operation changed the host reads again (with all that are not
    read yet).
    """

    def __init__(self):
        self.snapshots: list[Snapshot] = []
        self.claims: dict[str, str] = {}

    def state_for(self, wanted: Snapshot) -> dict:
        """``wanted``'s copy: the one read with the others, unless an operation changed the host
        since that read (then read again, with every snapshot not in use yet)."""
        if wanted._fetched is None or wanted._fetched_at != _changes_so_far():
            self.read([wanted, *(s for s in self.snapshots if s is not wanted and not s._in_use)])
        return wanted._fetched

    def read(self, group: list[Snapshot]) -> None:
        plain = list(dict.fromkeys(p for s in group for p in s.paths))
        secret = [p for p in dict.fromkeys(p for s in group for p in s.secret_paths) if p not in plain]
        units = list(dict.fromkeys(u for s in group for u in s.units))
        probes = {probe_key(probe): probe.command() for s in group for probe in s.probes.values()}
        changes = _changes_so_far()
        found = host.get_fact(HostSnapshot, paths=plain, secret_paths=secret, units=units, probes=probes)
        for s in group:
            s._fetched_at = changes
            s._fetched = {
                "paths": {p: found["paths"][p] for p in [*s.paths, *s.secret_paths] if p in found["paths"]},
                "units": {u: found["units"][u] for u in s.units if u in found["units"]},
                "probes": {name: found["probes"].get(probe_key(probe), []) for name, probe in s.probes.items()},
                "made": {p: found["made"][p] for p in s.paths if p in found.get("made", {})},
            }


def host_reads() -> HostReads | None:
    """The current host's ``HostReads`` (made at its first snapshot of the run; ``None``
    outside a run)."""
    current = _current_host()
    if current is None:
        return None
    reads = getattr(current, "_jupyter_deploy_reads", None)
    if reads is None:
        reads = HostReads()
        current._jupyter_deploy_reads = reads
    return reads


class Snapshot:
    """
    What one concern manages on the current host, read with every other concern's (``read``)
    when the first of them is needed; create it inside the concern's ``@deploy`` so each host
    gets its own, registered for the host's one read.

    + paths: files, directories and links (each file's sha256 is read)
    + secret_paths: files whose content must not be hashed in a command's output (owner, mode)
    + units: systemd units
    + probes: name -> ``Probe``, for state of the concern's own (``probe(name)``: its answer)
    """

    def __init__(self, paths=(), secret_paths=(), units=(), probes=None):
        self.paths = list(dict.fromkeys(paths))
        self.secret_paths = list(dict.fromkeys(secret_paths))
        self.units = list(dict.fromkeys(units))
        self.probes: dict[str, Probe] = dict(probes or {})
        assert all(isinstance(probe, Probe) for probe in self.probes.values()), "probes are Probe objects"
        self.claims: dict[str, str] = {}
        self._state = None
        # Its copy from the host's last read that included it, and how many operations had
        # changed the host then; whether an operation decides from the copy already.
        self._fetched = None
        self._fetched_at = -1
        self._in_use = False
        self._used_executing = False
        self._reads = host_reads()
        if self._reads is not None:
            self._reads.snapshots.append(self)

    def claim(self, what: str, by: str) -> None:
        """Record that the operation named ``by`` decides ``what`` (a path or unit of this
        snapshot); a second operation claiming it, in any concern of the run, would decide from
        a stale copy: refused."""
        assert what in self.paths or what in self.secret_paths or what in self.units, f"{what} is not in this snapshot"
        claims = self._reads.claims if self._reads is not None else self.claims
        if what in claims:
            raise ValueError(f"{what} is decided by two operations: {claims[what]!r} and {by!r}")
        claims[what] = by
        self.claims[what] = by

    def read(self) -> dict:
        """The copy its operations decide from: the host as it was when the first of them ran
        (in a run planned first, without ``-y``: as planned, unless an operation has changed the
        host since, when the run gets there)."""
        executing = _executing()
        if self._state is None or (executing and not self._used_executing):
            if self._reads is None:
                self._reads = HostReads()
                self._reads.snapshots.append(self)
            self._state = self._reads.state_for(self)
            self._in_use, self._used_executing = True, executing
        return self._state

    def path(self, path: str) -> PathState:
        assert path in self.paths or path in self.secret_paths, f"{path} is not in this snapshot"
        return self.read()["paths"].get(path, PathState(None))

    def sha256(self, path: str) -> str | None:
        """The file's sha256 (``None``: no file there)."""
        current = self.path(path)
        return current.detail if current.kind == "file" else None

    def unit(self, unit: str) -> UnitState:
        assert unit in self.units, f"{unit} is not in this snapshot"
        return self.read()["units"].get(unit, UnitState())

    def probe(self, name: str):
        """The answer of the probe ``name`` (its ``parse`` of what its command printed)."""
        assert name in self.probes, f"no probe {name} in this snapshot"
        return self.probes[name].parse(self.read()["probes"].get(name, []))

    def made(self, path: str) -> Made | None:
        """What the deploy last made at ``path`` (``None``: no record, e.g. a host deployed before
        the record existed)."""
        assert path in self.paths, f"{path} is not in this snapshot"
        return self.read().get("made", {}).get(path)

    def drift(self, path: str) -> str | None:
        """How ``path`` changed outside the deploy since the deploy last made it, in words
        (``None``: as the deploy left it, or no record of it)."""
        last = self.made(path)
        if last is None:
            return None
        current = self.path(path)
        kind = "link" if last.what.startswith("link:") else "dir" if last.what == "dir" else "file"
        if current.kind is None:
            return f"the {kind} the deploy made there was removed"
        if current.kind != kind:
            return f"a {current.kind} stood where the deploy's {kind} belongs"
        changes = []
        if kind == "file" and current.detail != last.what:
            changes.append("its content was changed")
        if kind == "link" and f"link:{current.detail}" != last.what:
            changes.append(f"it pointed at {current.detail}")
        if f"{current.user}:{current.group}" != last.owner:
            changes.append(f"its owner was {current.user}:{current.group}, not {last.owner}")
        if last.mode != "-" and current.mode != last.mode:
            changes.append(f"its mode was {current.mode}, not {last.mode}")
        return ", ".join(changes) or None

    def newer_than(self, paths, since: float) -> list[str]:
        """Which of ``paths`` exist and were modified after ``since`` (seconds since the epoch)."""
        return [p for p in paths if self.path(p).kind and self.path(p).mtime > since]


class Changes:
    """
    Whether any of ``operations`` changes something in this run, or ``owed()`` says so: for
    a restart or reload an operation owes after them (``service(restarted=Changes(...))``).

    While the run is planned (without ``-y``) each operation is asked what it will do; when
    the run executes, what it did. ``owed``: read from the host when asked (a restart an
    interrupted earlier run left owed, computed from the concern's snapshot).
    """

    def __init__(self, *operations, owed: Callable[[], object] | None = None):
        self.operations = [op for op in operations if op is not None]
        self.owed = owed

    def __call__(self) -> bool:
        if host.state.is_executing:
            changed = any(op.did_change() for op in self.operations)
        else:
            changed = any(op.will_change for op in self.operations)
        return changed or bool(self.owed and self.owed())


def _wanted(value) -> bool:
    """A flag, or a ``Changes`` (anything callable) asked now."""
    return bool(value()) if callable(value) else bool(value)


def claiming(claimed: str | Callable[[dict], list[str]]):
    """
    For an operation deciding from a snapshot (``state``): records, when the operation is
    called (while the run is planned), that it decides the path or unit its argument
    ``claimed`` names, or those ``claimed(arguments)`` lists (``Snapshot.claim``).
    """
    what = claimed if callable(claimed) else (lambda arguments: [arguments[claimed]])

    def decorate(op):
        @functools.wraps(op)
        def claiming_call(*args, **kwargs):
            for each in what(kwargs):
                kwargs["state"].claim(each, kwargs.get("name") or op.__name__)
            return op(*args, **kwargs)

        return claiming_call

    return decorate


def _content(src: str | Path | IO) -> bytes:
    if isinstance(src, (str, Path)):
        return Path(src).read_bytes()
    # From the start, every time: an operation's commands are made once while the run is
    # planned and again when it executes.
    src.seek(0)
    data = src.read()
    return data.encode() if isinstance(data, str) else data


def _owner_and_mode(path: str, current: PathState, user: str, group: str, mode: str):
    q = shlex.quote
    if (current.user, current.group) != (user, group):
        yield StringCommand(f"chown {q(f'{user}:{group}')} {q(path)}")
    if current.mode != mode.lstrip("0").rjust(3, "0"):
        yield StringCommand(f"chmod {q(mode)} {q(path)}")


def say_repaired(message: str) -> None:
    """Run as a ``FunctionCommand`` when the operation executes: the line in the run's output."""
    host.log(message, logger.warning)


def repairing(path: str, state: Snapshot) -> list:
    """For an operation that is about to put ``path`` back: a line in the run's output (when it
    executes) saying what had changed there outside the deploy, if anything did."""
    drift = state.drift(path)
    if drift is None:
        return []
    message = f"Repairing {path}: {drift} (outside the deploy); put back as the deploy makes it"
    return [FunctionCommand(say_repaired, (message,), {})]


@claiming("dest")
@operation()
def put(src, dest: str, user: str, group: str, mode: str, state: Snapshot, create_remote_dir: bool = False):
    """
    Upload a file with this owner and mode, decided from the concern's snapshot.

    + src: a local file (``str`` or ``Path``) or a file-like object (``StringIO(text)``)
    + dest: remote path (in ``state.paths``)
    + user, group, mode: owner and octal mode, e.g. ``"640"``
    + state: the concern's ``Snapshot``
    + create_remote_dir: create the parent directory (root, 755) when the file is written

    A new content is uploaded beside the file and moved over it, so the file is never
    seen half-written.

    **Example:**

    .. code:: python

        snapshot.put(name="Jupyter config", src=StringIO(config), dest="/etc/jupyter/jupyter_server_config.py",
                     user="root", group="jupyter", mode="640", state=state)
    """
    current = state.path(dest)
    data = _content(src)
    sha256 = hashlib.sha256(data).hexdigest()
    if current.kind == "file" and current.detail == sha256:
        changes = list(_owner_and_mode(dest, current, user, group, mode))
        if not changes:
            host.noop(f"{dest} is up to date")
            return
        yield from repairing(dest, state)
        yield from changes
        yield StringCommand(records.made(dest, sha256, f"{user}:{group}", mode))
        return
    yield from repairing(dest, state)
    if host.state.config.DIFF:
        _show_diff(dest, data, current.kind == "file")
    if current.kind not in (None, "file", "link"):
        # A directory (or other) where the file belongs: kept aside, not deleted.
        yield StringCommand(set_aside(dest))
    yield from staged_upload(data, dest, user, group, mode, create_remote_dir)


def staged_upload(data: bytes, dest: str, user: str, group: str, mode: str, create_remote_dir: bool = False):
    """The commands that write ``data`` to ``dest`` with this owner and mode, uploaded beside it
    and moved over it (never seen half-written): for an operation that decided to write it."""
    q = shlex.quote
    staged = f"{dest}.pyinfra-new"
    if create_remote_dir:
        yield StringCommand(f"mkdir -p {q(dest.rsplit('/', 1)[0])}")
    yield FileUploadCommand(BytesIO(data), staged)
    yield StringCommand(
        f"chown {q(f'{user}:{group}')} {q(staged)} && chmod {q(mode)} {q(staged)} && mv -f {q(staged)} {q(dest)} && "
        + records.made(dest, hashlib.sha256(data).hexdigest(), f"{user}:{group}", mode)
    )


# Where something that stood where the deploy's file, link or directory belongs is kept.
SET_ASIDE_DIR = f"{layout.STATE_DIR}/set-aside"


def set_aside(path: str) -> str:
    """A shell command moving ``path`` (whatever it is) into ``SET_ASIDE_DIR``, stamped."""
    q = shlex.quote
    aside = q(f"{SET_ASIDE_DIR}/{path.strip('/').replace('/', '_')}.")
    return f'mkdir -p {q(SET_ASIDE_DIR)} && mv -T {q(path)} {aside}"$(date +%s.%N)"'


def text(content: str) -> StringIO:
    """A file-like ``src`` for ``put`` holding ``content`` (rendered config, a template)."""
    return StringIO(content)


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


def script(name: str, dest: str, src: Path, state: Snapshot):
    """``put`` for a root-owned executable from ``files/``, its directory created when needed."""
    return put(
        name=name, src=src, dest=dest, user="root", group="root", mode="755", create_remote_dir=True, state=state
    )


@claiming("path")
@operation()
def directory(path: str, user: str, group: str, mode: str, state: Snapshot, record_as: str | None = None):
    """
    A directory (and its parents) with this owner and mode, decided from the snapshot.

    + path: remote path (in ``state.paths``)
    + user, group, mode: owner and octal mode
    + state: the concern's ``Snapshot``
    + record_as: when this creates the directory, record it as ``record_as PATH`` in
      ``records.RECORD`` (data the deploy made, which uninstall_purge may delete)

    **Example:**

    .. code:: python

        snapshot.directory(name="Config directory", path="/etc/jupyter", user="root",
                           group="jupyter", mode="750", state=state)
    """
    current = state.path(path)
    made = records.made(path, "dir", f"{user}:{group}", mode)
    if current.kind not in (None, "dir"):
        yield from repairing(path, state)
        yield StringCommand(set_aside(path))
        current = PathState(None)
    elif current.kind is None:
        yield from repairing(path, state)
    if current.kind is None:
        q = shlex.quote
        record = f" && {records.append(record_as, path)}" if record_as else ""
        yield StringCommand(
            f"mkdir -p {q(path)} && chown {q(f'{user}:{group}')} {q(path)} && chmod {q(mode)} {q(path)}{record}"
            f" && {made}"
        )
        return
    changes = list(_owner_and_mode(path, current, user, group, mode))
    if not changes:
        host.noop(f"{path} is up to date")
        return
    yield from repairing(path, state)
    yield from changes
    yield StringCommand(made)


@claiming("path")
@operation()
def link(path: str, target: str, user: str, group: str, state: Snapshot):
    """
    A symbolic link to ``target``, decided from the snapshot.

    + path: the link (in ``state.paths``); a file or link there is replaced
    + target: what it points at
    + user, group: the link's own owner
    + state: the concern's ``Snapshot``

    **Example:**

    .. code:: python

        snapshot.link(name="Kernel specs", path="/etc/jupyter/user/kernels",
                      target="/var/lib/jupyter/.local/share/jupyter/kernels",
                      user="root", group="jupyter", state=state)
    """
    current = state.path(path)
    q = shlex.quote
    if current.kind == "link" and current.detail == target:
        if (current.user, current.group) == (user, group):
            host.noop(f"{path} points at {target}")
            return
        yield from repairing(path, state)
    elif current.kind == "dir":
        raise ValueError(f"{path} is a directory, not a link")
    else:
        yield from repairing(path, state)
        if current.kind == "file":
            # A file where the link belongs (an edited copy, say): kept aside, not deleted.
            yield StringCommand(set_aside(path))
        yield StringCommand(f"ln -sfn {q(target)} {q(path)}")
    yield StringCommand(
        f"chown -h {q(f'{user}:{group}')} {q(path)} && {records.made(path, f'link:{target}', f'{user}:{group}', '-')}"
    )


@claiming("path")
@operation()
def absent(path: str, state: Snapshot):
    """
    No file or link at ``path`` (a directory is removed with its content), decided from the snapshot.

    + path: remote path (in ``state.paths``)
    + state: the concern's ``Snapshot``

    **Example:**

    .. code:: python

        snapshot.absent(name="No Basic-auth file", path="/etc/apache2/jupyter.htpasswd", state=state)
    """
    if state.path(path).kind is None:
        host.noop(f"{path} is absent")
        return
    yield StringCommand(f"rm -rf {shlex.quote(path)}")


@claiming("service")
@operation()
def service(
    service: str,
    state: Snapshot,
    running: bool = True,
    enabled: bool = True,
    restarted=False,
    reloaded=False,
    daemon_reload=False,
    check_command: str | None = None,
    ready_command: str | None = None,
    restart_commands: list | None = None,
    note=None,
):
    """
    A systemd unit started and enabled (or stopped and disabled), restarted or reloaded when
    that is called for, decided from the snapshot: the one operation of its concern for the unit.

    + service: the unit's full name, e.g. ``jupyter.service`` (in ``state.units``)
    + state: the concern's ``Snapshot``
    + running, enabled: wanted states
    + restarted, reloaded: restart (reload or restart) a running unit; a flag or a ``Changes``
    + daemon_reload: reload systemd's units first (also when systemd says a unit file changed)
    + check_command: run before the unit is started, restarted or reloaded; when it fails,
      the operation fails and the unit is left as it was (e.g. a config test)
    + ready_command: run after, waiting until the unit really serves
    + restart_commands: run instead of ``systemctl restart`` (e.g. a restart that waits)
    + note: added to what a run that changes nothing says (a string, or a function asked then)

    **Example:**

    .. code:: python

        snapshot.service(name="Jupyter running, restarted for a new config", service="jupyter.service",
                         restarted=snapshot.Changes(config), state=state)
    """
    current = state.unit(service)
    q = shlex.quote(service)
    is_running = current.active in ("active", "activating", "reloading")
    commands = []
    if _wanted(daemon_reload) or current.needs_daemon_reload:
        commands.append("systemctl daemon-reload")
    action = None
    if running != is_running:
        action = "start" if running else "stop"
    elif running and _wanted(restarted):
        action = "restart"
    elif running and _wanted(reloaded):
        action = "reload-or-restart"
    if action and action != "stop" and check_command:
        commands.append(check_command)
    if action == "restart" and restart_commands:
        commands.extend(restart_commands)
    elif action:
        commands.append(f"systemctl {action} {q}")
    if action and action != "stop" and ready_command:
        commands.append(ready_command)
    if enabled != (current.enabled == "enabled"):
        commands.append(f"systemctl {'enable' if enabled else 'disable'} {q}")
    if not commands:
        said = f"{service} is {'running' if running else 'stopped'} and {'enabled' if enabled else 'disabled'}"
        note = note() if callable(note) else note
        host.noop(f"{said}; {note}" if note else said)
    for command in commands:
        yield command if isinstance(command, (StringCommand, FunctionCommand)) else StringCommand(command)


@operation()
def shell(commands: list, when):
    """
    Run ``commands`` when ``when`` (a ``Changes``) says an earlier operation changed what they
    follow: pyinfra's ``server.shell(commands=..., _if=...)``, the one way this deploy reacts.

    + commands: shell commands (strings or ``StringCommand``)
    + when: a ``Changes`` (or any callable), asked while the run is planned and when it runs

    **Example:**

    .. code:: python

        snapshot.shell(name="Apply the new limits", commands=["systemctl set-property ..."],
                       when=snapshot.Changes(limits))
    """
    if not _wanted(when):
        host.noop("nothing it follows changed")
        return
    for command in commands:
        yield command if isinstance(command, (StringCommand, FunctionCommand)) else StringCommand(command)
