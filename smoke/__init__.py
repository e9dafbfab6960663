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
the published advisories for that server, and fails a host with one (``smoke/advisories.py``);
on a per-person host, for each person's running server too. With ``--report FILE`` it also
writes the fleet page (``smoke/report.py``): one self-contained HTML page, a row per host.

A host with per-person servers (JupyterHub) is checked with the hub's smoke-check token, read
over SSH (root's alone on the host, never shown): ``check_per_person`` starts the check
account's server through Apache, runs the cell there and stops it.

A single sign-on host (``auth = 'oidc'``) has no password to log in with: ``check_single_sign_on``
checks from outside what a person meets first (TLS and the certificate's days, a page sending
the browser to the provider, 401 for the API), and runs the same cell on the host itself over
SSH (``files/jupyter-cell-check``: through Jupyter on loopback, with what Apache would add).

Whatever a host sends back (an error, a kernel's output, the versions it runs) is the
notebook user's to shape: only printable text of it reaches a terminal or the CI summary.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from .client import Jupyter, LoginFailed

# The deploy's names this check uses on a host. The smoke check stands apart from the deploy
# (importing operations/ brings in pyinfra's command line, which patches the whole process
# with gevent), so they are written here once more and tests/test_smoke_single_sign_on.py
# keeps each equal to the deploy's own (operations/backups.py, operations/sign_in.py,
# operations/jupyter/layout.py).
BACKUP_STATUS = "/var/lib/jupyter-backup/status"
# What the host owes (operations/os_updates.py's STATUS_FILE): a reboot, updates, the last
# unattended upgrade.
OS_STATUS = "/var/lib/jupyter-os-updates/status"
PROXY_SECRET = "/etc/apache2/jupyter-sign-in/proxy-secret"
SECRET_HEADER = "X-Jupyter-Proxy-Secret"
USER_HEADER = "X-Jupyter-User"
JUPYTER_UNIT = "jupyter.service"
CELL_CHECK = "/usr/local/lib/jupyter-deploy/jupyter-cell-check"
CELL_CHECK_CLIENT = "/usr/local/lib/jupyter-deploy/jupyter_cell_check.py"
RESTART_SCRIPT = "/usr/local/lib/jupyter-deploy/jupyter-restart-when-idle"
# Per-person servers (operations/hub/layout.py): the smoke check's token (root's alone on the
# host) and the check account whose server it starts.
HUB_SMOKE_TOKEN = "/etc/jupyterhub/secrets/smoke-token"
HUB_CHECK_NAME = "smoke-check"
# With --audit: what each person's running server answers root on the host (the deploy's
# files/jupyterhub-restart-people, as operations/hub/restarts.py's script_command() runs it).
PEOPLE_SERVERS = (
    "/usr/local/lib/jupyter-deploy/jupyterhub-restart-people --slice jupyter-people.slice --unit-prefix jupyter- "
    "--restart-script /usr/local/lib/jupyter-deploy/jupyter-restart-when-idle "
    "--restart-command /usr/local/lib/jupyter-deploy/jupyterhub-restart-server "
    "--owed-dir /var/lib/jupyterhub/restarts-owed --timer-prefix jupyterhub-restart@ "
    "--activity-path /jupyter-deploy/activity"
)
PEOPLE_ANSWERS_COMMAND = f"{PEOPLE_SERVERS} answers"
# A person's server's unit, as those answers name it: jupyter-NAME.service (NAME: the hub's).
_PERSON_UNIT = re.compile(r"jupyter-([a-z0-9][a-z0-9-]{0,62})\.service")

# The cell run on every host: its first line proves a kernel really executed it; the
# second is the backup status, or {} without backups; the third what the system owes, or {};
# the fourth the host's kernel release and the memory of the server's unit the cell runs in
# (its cgroup's use and limit: version 2's files, or version 1's memory controller; in a
# container whose version 1 memory hierarchy shows only its root, none: that is not the unit's).
CELL = (
    "import json, pathlib, platform\n"
    "print(6 * 7)\n"
    f"for status in map(pathlib.Path, ({BACKUP_STATUS!r}, {OS_STATUS!r})):\n"
    "    print(status.read_text().strip().replace('\\n', ' ') if status.exists() else '{}')\n"
    "def memory():\n"
    "    for line in pathlib.Path('/proc/self/cgroup').read_text().splitlines():\n"
    "        number, controllers, path = line.split(':', 2)\n"
    "        if number == '0':\n"
    "            files = '/sys/fs/cgroup' + path, 'memory.current', 'memory.max'\n"
    "        elif 'memory' in controllers.split(',') and path != '/':\n"
    "            files = '/sys/fs/cgroup/memory' + path, 'memory.usage_in_bytes', 'memory.limit_in_bytes'\n"
    "        else:\n"
    "            continue\n"
    "        try:\n"
    "            return [pathlib.Path(files[0], name).read_text().strip() for name in files[1:]]\n"
    "        except OSError:\n"
    "            pass\n"
    "    return []\n"
    "print(json.dumps({'kernel': platform.release(), 'memory': memory()}))\n"
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


def printable(text: str, limit: int = 300) -> str:
    """``text`` without control characters (no escape sequence rewrites the terminal), at most
    ``limit`` characters: what a host said, as a terminal or the CI summary may show it."""
    return "".join(ch for ch in str(text) if ch.isprintable())[:limit]


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
    # With --audit on a per-person host: what each person's running server runs, by their hub name.
    people: dict[str, dict[str, str]] = field(default_factory=dict)
    # What the system owes (``os_status``): a reboot, updates, the last unattended upgrade.
    system: dict = field(default_factory=dict)
    # What the fleet page shows besides (``host_facts``, the certificate's and backup's notes):
    # the kernel release and the server unit's memory; the certificate's days left; the
    # backup's note; the advisories the audit found (``audit``); whether the cell ran.
    facts: dict = field(default_factory=dict)
    certificate_days: float | None = None
    backup: str = ""
    backup_failed: bool = False
    advisories: list[str] = field(default_factory=list)
    audited: bool = False
    cell_ran: bool = False

    def line(self) -> str:
        """The host's line (and its details' lines), printable text only."""
        spent = "  ".join(f"{printable(what)} {seconds:.2f} s" for what, seconds in self.timings.items())
        notes = "  " + "  ".join(printable(note) for note in self.notes) if self.notes else ""
        target = printable(self.target)
        if self.ok:
            first = f"ok    {target}  {spent}{notes}"
        else:
            error = printable(self.error, 600)
            first = f"FAIL  {target}  {error}{notes}" + (f"  (after: {spent})" if spent else "")
        return "\n".join([first, *(f"      {printable(detail, 600)}" for detail in self.details)])

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


def people_running(lines: list[str]) -> dict[str, dict[str, str]]:
    """Each person's running server's packages (``{hub name: {package: version}}``) from the
    host's ``PEOPLE_ANSWERS_COMMAND``: "UNIT running NAME VERSION" lines. What a person's server
    says is theirs to shape: only a unit, a package name and a version where those are expected."""
    people: dict[str, dict[str, str]] = {}
    for line in lines:
        words = line.split()
        unit = _PERSON_UNIT.fullmatch(words[0]) if words else None
        if not unit or unit.group(1) == HUB_CHECK_NAME:
            continue
        running = people.setdefault(unit.group(1), {})
        if len(words) == 4 and words[1] == "running" and _PACKAGE.fullmatch(words[2]) and _VERSION.fullmatch(words[3]):
            running[words[2]] = words[3]
    return people


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
        problems = judged_cell(verdict, output, jupyter)
        if problems is None:
            return verdict
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
        verdict.error = why(error, ca_file)
    finally:
        verdict.timings["total"] = time.monotonic() - started
    return verdict


def judged_cell(verdict: Verdict, output: str, jupyter: Jupyter) -> list[str] | None:
    """What is wrong with a host, from ``CELL``'s ``output`` and its served certificate (the ages
    worth seeing go to ``verdict.notes``); ``None`` when the cell did not print what it must
    (``verdict.error`` says so)."""
    lines = output.strip().splitlines()
    if not lines or lines[0] != EXPECTED:
        verdict.error = f"the cell printed {printable(' '.join(lines[:2]))!r}, not {EXPECTED!r} first"
        return None
    verdict.cell_ran = True
    now = time.time()
    problems = []
    expires = jupyter.certificate_expires()
    verdict.certificate_days = (expires - now) / 86400
    backup_note, backup_said = backup_problem(json.loads(lines[1]) if len(lines) > 1 else {}, now)
    verdict.backup = backup_said or backup_note or "backups off"
    verdict.backup_failed = bool(backup_said)
    for note, problem in (certificate_problem(expires, now), (backup_note, backup_said)):
        if note:
            verdict.notes.append(note)
        if problem:
            problems.append(problem)
    verdict.system = os_status(lines[2] if len(lines) > 2 else "{}")
    verdict.notes.extend(os_notes(verdict.system, now))
    verdict.facts = host_facts(lines[3] if len(lines) > 3 else "{}")
    return problems


def _json_object(line: str) -> dict:
    """A line a host printed, as the JSON object it should be; ``{}`` when it is not one."""
    try:
        answer = json.loads(line)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


# A cgroup limit this large is no limit (cgroup version 1 says "none" with the largest page-aligned number).
_NO_LIMIT = 2**60


def host_facts(line: str) -> dict:
    """The kernel release and the server unit's memory from ``CELL``'s fourth line (the notebook
    user can shape it): printable text where text is expected, whole numbers where numbers are."""
    answer = _json_object(line)
    facts: dict = {}
    if isinstance(answer.get("kernel"), str):
        facts["kernel"] = printable(answer["kernel"], 100)
    memory = answer.get("memory")
    if isinstance(memory, list) and len(memory) == 2 and all(isinstance(value, str) for value in memory):
        used, limit = memory
        if used.isdigit() and len(used) < 20:
            facts["memory_used"] = int(used)
            if limit.isdigit() and len(limit) < 20 and int(limit) < _NO_LIMIT:
                facts["memory_limit"] = int(limit)
    return facts


def os_status(line: str) -> dict:
    """The host's system status (files/os-updates writes it; the notebook user can shape what
    the cell prints): its numbers, and its words where a word is expected."""
    answer = _json_object(line)
    status = {}
    for key in ("written", "pending", "security_pending", "last_run", "reboot_needed_since", "reboot_next"):
        value = answer.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**11:
            status[key] = value
    for key in ("last_result", "reboot_reason", "reboot_waits_for"):
        status[key] = printable(answer.get(key, ""), 200) if isinstance(answer.get(key, ""), str) else ""
    return status


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def os_notes(status: dict, now: float) -> list[str]:
    """What the system owes, as the host's notes: a reboot (since when, and when it happens),
    updates pending, and an unattended upgrade's failure."""
    notes = []
    since = status.get("reboot_needed_since")
    if since:
        next_ = status.get("reboot_next")
        when = f"from {_when(next_)} when nothing is busy" if next_ else "never by itself (reboot_window None)"
        notes.append(f"reboot owed for {_age(now - since)}: {when}")
    if status.get("pending"):
        notes.append(f"{status['pending']} updates pending ({status.get('security_pending', 0)} security)")
    if status.get("last_result") == "failed":
        notes.append(f"the last unattended upgrade failed ({_when(status.get('last_run', 0))})")
    return notes


def why(error: Exception, ca_file: str | bool = True) -> str:
    """One line for what went wrong, pointing at the fix where there is a usual one."""
    text = str(error).splitlines()[0] if str(error) else ""
    if isinstance(error, LoginFailed) and "401" in text:
        return f"{text}: is JUPYTER_PASSWORD this host's notebook password?"
    if "CERTIFICATE_VERIFY_FAILED" in str(error) or isinstance(error, ssl.SSLCertVerificationError):
        hint = (
            "not the certificate --ca-file trusts"
            if isinstance(ca_file, str)
            else "a self-signed host is checked with --ca-file FILE, FILE its /etc/ssl/certs/jupyter-apache.crt"
        )
        return f"its certificate is not trusted ({hint})"
    return printable(f"{type(error).__name__}: {text}")


def audit(verdicts: list[Verdict], ignored: set[str], timeout: float = 30) -> None:
    """Look up the advisories for what every host runs (each version once) and judge each host."""
    # Imported here: pip-audit is needed for --audit only (scripts/ci-deploy's pinned tools lack it).
    from . import advisories

    reports = [v.versions for v in verdicts if v.versions]
    reports += [{"running": running} for v in verdicts for running in v.people.values()]
    wanted = set().union(*map(advisories.packages_to_look_up, reports))
    found = advisories.look_up(wanted, timeout) if wanted else {}
    for verdict in verdicts:
        verdict.audited = True
        if verdict.versions:
            lines, problems = advisories.judge(verdict.versions, found, ignored)
            verdict.details += lines
            verdict.advisories += [line.strip() for line in lines if line.startswith("  ")] + [
                problem for problem in problems if "could not be looked up" in problem
            ]
            verdict.fail(problems)
        # Per-person servers: what each person's runs, against what is installed now.
        installed = verdict.versions.get("installed", {})
        for name, running in sorted(verdict.people.items()):
            lines, problems = advisories.judge_packages(running, installed, found, ignored)
            lines = lines or ["does not say what it runs (started before the deploy that made it say so?)"]
            verdict.details += [f"{name}'s server:", *(f"  {line}" for line in lines)]
            verdict.advisories += [f"{name}'s server: {line.strip()}" for line in lines if line.startswith("  ")]
            verdict.fail([f"{name}'s server: {problem}" for problem in problems])


def cell_check_command(path: str = "/jupyter/") -> str:
    """The command that runs ``CELL`` on a single sign-on host itself (as root, over SSH:
    ``files/jupyter-cell-check`` where the deploy put it, with the server's unit, its client
    and the restart script that finds the server's port); the code goes base64-encoded, one
    word whatever shell or command line carries it."""
    code = base64.b64encode(CELL.encode()).decode()
    words = (
        CELL_CHECK,
        *("--unit", JUPYTER_UNIT, "--client", CELL_CHECK_CLIENT),
        *("--restart", RESTART_SCRIPT, "--unit", JUPYTER_UNIT, "--"),
        *(path, PROXY_SECRET, SECRET_HEADER, USER_HEADER, code),
    )
    return " ".join(shlex.quote(word) for word in words)


def check_single_sign_on(
    target: str,
    on_host: Callable[[], str],
    path: str = "/jupyter/",
    ca_file: str | bool = True,
    timeout: float = 30,
    connect_to: str | None = None,
) -> Verdict:
    """A single sign-on host: from outside, TLS and the certificate's days, a page sent to the
    provider, 401 for the API; then ``on_host()``, which runs ``cell_check_command`` on the host
    (over SSH) and returns what it printed: the cell's output. Never raises."""
    verdict = Verdict(target, ok=False)
    started = time.monotonic()
    try:
        jupyter = Jupyter(base_url(target, path), ca_file=ca_file, timeout=timeout, connect_to=connect_to)
        began = time.monotonic()
        page = jupyter.get("", headers={"Accept": "text/html"}, allow_redirects=False)
        verdict.timings["sign-in redirect"] = time.monotonic() - began
        location = page.headers.get("Location", "")
        ours = urlsplit(jupyter.base).netloc
        if page.status_code != 302 or urlsplit(location).netloc in ("", ours) or "client_id=" not in location:
            verdict.error = (
                f"a page answered {page.status_code}, not a redirect to the sign-in provider "
                "(is this host deployed with auth 'oidc'?)"
            )
            return verdict
        began = time.monotonic()
        api = jupyter.get("api/status", allow_redirects=False)
        verdict.timings["api"] = time.monotonic() - began
        if api.status_code != 401:
            verdict.error = f"the API answered {api.status_code} without a session, not 401"
            return verdict
        began = time.monotonic()
        answer = on_host()
        verdict.timings["cell on the host"] = time.monotonic() - began
        lines = answer.strip().splitlines()
        try:
            report = json.loads(lines[-1]) if lines else {}
        except ValueError:
            report = {}
        if not isinstance(report, dict) or "ok" not in report:
            verdict.error = (
                f"the check on the host said nothing it understands: {printable(answer.strip()) or '(nothing)'}"
            )
            return verdict
        if not report["ok"]:
            verdict.error = f"on the host: {printable(report.get('error', ''))}"
            return verdict
        problems = judged_cell(verdict, str(report.get("output", "")), jupyter)
        if problems is None:
            return verdict
        verdict.error = "; ".join(problems)
        verdict.ok = not problems
    except Exception as error:  # one line per host, whatever went wrong
        verdict.error = why(error, ca_file)
    finally:
        verdict.timings["total"] = time.monotonic() - started
    return verdict


def is_per_person(
    target: str, path: str = "/jupyter/", ca_file: str | bool = True, timeout: float = 30, connect_to: str | None = None
) -> bool:
    """Whether ``target`` serves JupyterHub (per_person_servers): its API says its version
    without a sign-in. ``False`` when it cannot be told."""
    try:
        jupyter = Jupyter(base_url(target, path), ca_file=ca_file, timeout=timeout, connect_to=connect_to)
        answer = jupyter.get("hub/api/", allow_redirects=False)
        return answer.status_code == 200 and isinstance(answer.json().get("version"), str)
    except (requests.RequestException, ValueError, OSError, AttributeError):
        return False


def check_per_person(
    target: str,
    token_on_host: Callable[[], str],
    path: str = "/jupyter/",
    ca_file: str | bool = True,
    timeout: float = 30,
    connect_to: str | None = None,
    start_seconds: float = 120,
    people_on_host: Callable[[], str] | None = None,
) -> Verdict:
    """A host with per-person servers: with the hub's smoke-check token (``token_on_host()``,
    over SSH), start the check account's server through Apache, run ``CELL`` in it, stop it.
    Never raises; the token is never shown.

    ``people_on_host`` (the audit): ``PEOPLE_ANSWERS_COMMAND`` run on the host; then the check
    server also says what the distribution runs (its versions route: a server just started
    runs what is installed), and each person's running server what it runs."""
    verdict = Verdict(target, ok=False)
    started = time.monotonic()
    hub = None
    try:
        token = token_on_host().strip()
        if not re.fullmatch(r"[0-9a-f]{64}", token):
            verdict.error = (
                "the host has no smoke-check token the check understands (deployed with per_person_servers?)"
            )
            return verdict
        hub = Jupyter(base_url(target, path) + "hub/", ca_file=ca_file, timeout=timeout, connect_to=connect_to)
        hub.session.headers["Authorization"] = f"token {token}"
        began = time.monotonic()
        answer = hub.session.post(f"{hub.base}api/users/{HUB_CHECK_NAME}/server", timeout=timeout, verify=hub.verify)
        if answer.status_code not in (201, 202, 400):  # 400: already running
            verdict.error = f"the hub answered {answer.status_code} to starting the check server"
            return verdict
        while True:
            model = hub.session.get(f"{hub.base}api/users/{HUB_CHECK_NAME}", timeout=timeout, verify=hub.verify)
            model.raise_for_status()
            server = (model.json().get("servers") or {}).get("", {})
            if server.get("ready"):
                break
            if time.monotonic() - began > start_seconds:
                verdict.error = f"the check server was not ready after {start_seconds:.0f} s"
                return verdict
            time.sleep(1)
        verdict.timings["server start"] = time.monotonic() - began
        jupyter = Jupyter(
            base_url(target, path) + f"user/{HUB_CHECK_NAME}/", ca_file=ca_file, timeout=timeout, connect_to=connect_to
        )
        jupyter.session.headers["Authorization"] = f"token {token}"
        jupyter.ws_headers.append(f"Authorization: token {token}")
        began = time.monotonic()
        output = jupyter.execute(CELL)
        verdict.timings["cell"] = time.monotonic() - began
        problems = judged_cell(verdict, output, jupyter)
        if problems is None:
            return verdict
        if people_on_host is not None:
            answer = jupyter.get(VERSIONS_PATH)
            answer.raise_for_status()
            verdict.versions = clean_versions(answer.json())
            verdict.people = people_running(people_on_host().splitlines())
        verdict.error = "; ".join(problems)
        verdict.ok = not problems
    except Exception as error:  # one line per host, whatever went wrong
        verdict.error = why(error, ca_file)
    finally:
        if hub is not None:
            try:
                hub.session.delete(f"{hub.base}api/users/{HUB_CHECK_NAME}/server", timeout=timeout, verify=hub.verify)
            except requests.RequestException:
                pass
        verdict.timings["total"] = time.monotonic() - started
    return verdict


def over_ssh(
    address: str,
    command: str,
    user: str = "root",
    key: str | None = None,
    known_hosts: str | None = None,
    timeout: float = 60,
) -> Callable[[], str]:
    """``on_host`` for ``check_single_sign_on``: ``command`` run by ssh as ``user`` on ``address``
    (never asking anything: keys only, a host key from ``known_hosts`` or ssh's own)."""

    def run() -> str:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(min(timeout, 30))}"]
        if key:
            argv += ["-i", key, "-o", "IdentitiesOnly=yes"]
        if known_hosts:
            argv += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        result = subprocess.run([*argv, f"{user}@{address}", command], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            said = printable(result.stderr.strip(), 200) or "(nothing)"
            raise RuntimeError(f"ssh {user}@{address} failed ({result.returncode}): {said}")
        return result.stdout

    return run


def is_single_sign_on(
    target: str, path: str = "/jupyter/", ca_file: str | bool = True, timeout: float = 30, connect_to: str | None = None
) -> bool:
    """Whether ``target``'s page sends a browser to an OpenID Connect provider (``False`` when it
    cannot be told: the password check then says what is wrong)."""
    try:
        jupyter = Jupyter(base_url(target, path), ca_file=ca_file, timeout=timeout, connect_to=connect_to)
        page = jupyter.get("", headers={"Accept": "text/html"}, allow_redirects=False)
    except (requests.RequestException, ValueError, OSError):
        return False
    location = page.headers.get("Location", "")
    return (
        page.status_code == 302
        and "client_id=" in location
        and urlsplit(location).netloc
        not in (
            "",
            urlsplit(jupyter.base).netloc,
        )
    )
