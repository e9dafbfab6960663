"""
Smoke check for deployed notebook servers: what a user does first, from outside.

    JUPYTER_PASSWORD=... python -m smoke nb1.example.org 203.0.113.7

For each host: log in through Apache with the password, start a fresh kernel, run one
cell over its websocket, delete the kernel. The cell also reads the backup status the
host's backup timer writes: with backups on, a host whose last successful backup is older
than twice its schedule fails. The served certificate fails with fewer than
CERTIFICATE_MIN_DAYS days left. One line per host with timings and those ages; the exit
code is non-zero when any host fails. ``scripts/ci-deploy`` runs it after every deploy,
and the real-host tests use the same client (``smoke/client.py``).

With ``--audit`` it also reports each host's distribution, Python and the server it runs, with
the published advisories for that server, and fails a host with one (``smoke/advisories.py``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from .client import Jupyter

# The cell run on every host: its first line proves a kernel really executed it; the
# second is the backup status (operations/backups.py's STATUS_FILE), or {} without backups.
BACKUP_STATUS = "/var/lib/jupyter-backup/status"
CELL = (
    "import pathlib\n"
    "print(6 * 7)\n"
    f"status = pathlib.Path({BACKUP_STATUS!r})\n"
    "print(status.read_text().strip() if status.exists() else '{}')\n"
)
EXPECTED = "42"
# Where the server says which versions it runs (files/jupyter_activity.py's VERSIONS_PATH).
VERSIONS_PATH = "jupyter-deploy/versions"
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}")
# Let's Encrypt renews 30 days ahead and the deploy renews a self-signed one 30 days ahead:
# a certificate this close to its end means renewal has stopped working.
CERTIFICATE_MIN_DAYS = 14
# A backup older than this many schedule intervals means the timer or the repository is broken.
BACKUP_STALE_INTERVALS = 2


@dataclass
class Verdict:
    target: str
    ok: bool
    timings: dict[str, float] = field(default_factory=dict)
    error: str = ""
    # Ages worth seeing even when all is well ("certificate 89 days left", "backup 5.2 h ago").
    notes: list[str] = field(default_factory=list)
    # With --audit: what the server says it runs (smoke/advisories.py), and the lines shown under the host's.
    versions: dict = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    def line(self) -> str:
        spent = "  ".join(f"{what} {seconds:.2f} s" for what, seconds in self.timings.items())
        notes = "  " + "  ".join(self.notes) if self.notes else ""
        if self.ok:
            first = f"ok    {self.target}  {spent}{notes}"
        else:
            first = f"FAIL  {self.target}  {self.error}{notes}" + (f"  (after: {spent})" if spent else "")
        return "\n".join([first, *(f"      {detail}" for detail in self.details)])

    def fail(self, problems: list[str]) -> None:
        if problems:
            self.error = "; ".join(filter(None, [self.error, *problems]))
            self.ok = False


def clean_versions(answer) -> dict:
    """The server's versions answer, as far as it is names and versions. Whoever has the
    password can shape it, and it reaches the terminal and the CI summary: no control
    characters, nothing but a package name and a version where those are expected."""
    if not isinstance(answer, dict):
        raise ValueError("the server's versions answer is not a JSON object")

    def text(value) -> str:
        return "".join(ch for ch in str(value) if ch.isprintable())[:100] or "unknown"

    def packages(value) -> dict[str, str]:
        if not isinstance(value, dict):
            return {}
        return {
            name: version
            for name, version in value.items()
            if isinstance(name, str)
            and _PACKAGE.fullmatch(name)
            and isinstance(version, str)
            and _VERSION.fullmatch(version)
        }

    python = answer.get("python")
    return {
        "distribution": text(answer.get("distribution", "unknown")),
        "python": python if isinstance(python, str) and _VERSION.fullmatch(python) else "unknown",
        "running": packages(answer.get("running")),
        "installed": packages(answer.get("installed")),
    }


def _age(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds < 2 * 86400 else f"{seconds / 86400:.1f} days"


def backup_problem(status: dict, now: float) -> tuple[str, str | None]:
    """(a note on the last backup, or what is wrong with it); ('', None) without backups."""
    if not status:
        return "", None
    interval = status.get("interval_seconds") or 86400
    limit = BACKUP_STALE_INTERVALS * interval
    if status.get("last_success"):
        age = now - status["last_success"]
        note = f"backup {_age(age)} ago"
        if age > limit:
            return (
                note,
                f"the last successful backup is {_age(age)} old (over {_age(limit)}: see journalctl -u jupyter-backup)",
            )
        return note, None
    waited = now - (status.get("configured") or now)
    if waited > limit:
        return "no backup yet", (
            f"no successful backup in the {_age(waited)} since backups were set up (see journalctl -u jupyter-backup)"
        )
    return "no backup yet", None


def certificate_problem(expires: float, now: float) -> tuple[str, str | None]:
    days = (expires - now) / 86400
    note = f"certificate {days:.0f} days left"
    if days < CERTIFICATE_MIN_DAYS:
        return note, f"the certificate expires in {days:.1f} days (under {CERTIFICATE_MIN_DAYS}: is renewal working?)"
    return note, None


def base_url(target: str, path: str = "/jupyter/") -> str:
    """``nb1.example.org`` -> ``https://nb1.example.org/jupyter/``; a full https:// URL is kept."""
    if target.startswith("https://"):
        return target if target.endswith("/") else target + "/"
    if target.startswith("http://"):
        raise ValueError(f"{target}: the smoke check only talks HTTPS")
    return f"https://{target}{path}"


def check(
    target: str,
    password: str,
    path: str = "/jupyter/",
    ca_file: str | bool = True,
    timeout: float = 30,
    basic_auth=None,
    connect_to: str | None = None,
    audit: bool = False,
) -> Verdict:
    """Log in, run one cell in a fresh kernel, clean up; never raises.

    ``connect_to``: the address to send everything to (the one SSH verified), instead of
    what DNS says ``target`` is; the name still goes in SNI and Host and must match the
    certificate. ``audit``: also ask the server which versions it runs (``verdict.versions``)."""
    verdict = Verdict(target, ok=False)
    started = time.monotonic()

    def step(name, action):
        began = time.monotonic()
        result = action()
        verdict.timings[name] = time.monotonic() - began
        return result

    try:
        jupyter = Jupyter(
            base_url(target, path), ca_file=ca_file, timeout=timeout, basic_auth=basic_auth, connect_to=connect_to
        )
        step("login", lambda: jupyter.login(password))
        kernel = step("kernel", jupyter.start_kernel)
        try:
            output = step("cell", lambda: jupyter.execute_in(kernel, CELL))
        finally:
            jupyter.api("DELETE", f"kernels/{kernel}")
        lines = output.strip().splitlines()
        if not lines or lines[0] != EXPECTED:
            verdict.error = f"the cell printed {output.strip()!r}, not {EXPECTED!r} first"
            return verdict
        now = time.time()
        problems = []
        for note, problem in (
            certificate_problem(jupyter.certificate_expires(), now),
            backup_problem(json.loads(lines[1]) if len(lines) > 1 else {}, now),
        ):
            if note:
                verdict.notes.append(note)
            if problem:
                problems.append(problem)
        if audit:
            answer = step("versions", lambda: jupyter.get(VERSIONS_PATH))
            if answer.status_code == 404:
                problems.append("the server does not say which versions it runs (deployed before the audit existed?)")
            else:
                answer.raise_for_status()
                verdict.versions = clean_versions(answer.json())
        verdict.error = "; ".join(problems)
        verdict.ok = not problems
    except Exception as error:  # one line per host, whatever went wrong
        verdict.error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    finally:
        verdict.timings["total"] = time.monotonic() - started
    return verdict


def audit(verdicts: list[Verdict], ignored: set[str], timeout: float = 30) -> None:
    """Look up the advisories for what every host runs (each version once) and judge each host."""
    # Imported here: pip-audit is needed for --audit only (scripts/ci-deploy's pinned tools lack it).
    from . import advisories

    wanted = set().union(*(advisories.packages_to_look_up(v.versions) for v in verdicts if v.versions))
    found = advisories.look_up(wanted, timeout) if wanted else {}
    for verdict in verdicts:
        if verdict.versions:
            lines, problems = advisories.judge(verdict.versions, found, ignored)
            verdict.details += lines
            verdict.fail(problems)
