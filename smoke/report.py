"""
The fleet page (``python -m smoke --report fleet.html``): one self-contained HTML page, one row
per host, what the smoke check saw: whether it answered, its OS release, kernel and a reboot
owed, updates pending, the server's Python and packages, advisories (with ``--audit``), the
certificate's days left, the last backup's age, a Jupyter restart owed, the server's memory
against its limit. Failing hosts come first, in red; hosts that owe something next, in amber.

Everything on it is text a host sent back (the notebook user can shape most of it): each value
is HTML-escaped, and the page's Content-Security-Policy forbids scripts and every fetch, so a
value that got through would still run nothing and load nothing. No JavaScript, no file beside it.
"""

from __future__ import annotations

import html
import time

from . import CERTIFICATE_MIN_DAYS, Verdict, _age, printable

# The page's columns, in order.
COLUMNS = (
    "Host",
    "Check",
    "Answered",
    "OS release",
    "Kernel",
    "Reboot",
    "Updates pending",
    "Jupyter server (Python and packages running)",
    "Advisories",
    "Certificate",
    "Last backup",
    "Jupyter restart owed",
    "Memory (server's unit)",
)

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b1b1b; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #c8c8c8; padding: .35em .5em; vertical-align: top; text-align: left; }
th { background: #eef0f3; }
tr.failed td { background: #fde8e8; }
tr.owes td { background: #fff6db; }
td.bad { color: #a40000; font-weight: 600; }
td.owed { color: #7a5200; font-weight: 600; }
.summary { margin: 0 0 1em; }
ul { margin: 0; padding-left: 1.1em; }
"""


def _mib(value: int) -> str:
    return f"{value / 2**20:.0f} MiB"


class Row:
    """One host's cells: (text or lines, level) where level is "", "owed" or "bad"."""

    def __init__(self, verdict: Verdict, now: float):
        self.verdict = verdict
        self.cells: list[tuple[str | list[str], str]] = []
        v, system, versions = verdict, verdict.system, verdict.versions
        running = versions.get("running", {})
        installed = versions.get("installed", {})

        self.add(v.target)
        self.add("ok" if v.ok else f"FAIL: {v.error}", "" if v.ok else "bad")
        self.add("yes (a kernel ran the cell)" if v.cell_ran else "no", "" if v.cell_ran else "bad")
        self.add(versions.get("distribution", "") or "—")
        self.add(v.facts.get("kernel", "—"))

        since = system.get("reboot_needed_since")
        if since:
            next_ = system.get("reboot_next")
            when = (
                f"from {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(next_))} when nothing is busy"
                if next_
                else "never by itself (reboot_window None)"
            )
            waits = system.get("reboot_waits_for")
            self.add(
                [f"owed for {_age(now - since)} ({system.get('reboot_reason', '')})", when]
                + ([f"waiting for: {waits}"] if waits else []),
                "owed",
            )
        else:
            self.add("none owed" if system else "—")

        if system:
            pending, security = system.get("pending", 0), system.get("security_pending", 0)
            last = system.get("last_result", "")
            last = "none yet" if last in ("", "none") else last
            self.add(
                [f"{pending} ({security} security)", f"last unattended run: {last}"],
                "bad" if last == "failed" else ("owed" if security else ""),
            )
        else:
            self.add("—")

        if running:
            python = f"Python {versions.get('python', 'unknown')}"
            self.add([python] + [f"{name} {running[name]}" for name in sorted(running)])
        else:
            self.add("—")

        if not v.audited:
            self.add("not looked up (smoke --audit)")
        elif not running and not v.people:
            self.add("—")
        else:
            found = [line for line in v.advisories if not line.startswith("ignored")]
            self.add(v.advisories or ["none published"], "bad" if found else "")

        days = v.certificate_days
        if days is None:
            self.add("—")
        else:
            self.add(f"{days:.0f} days left", "bad" if days < CERTIFICATE_MIN_DAYS else "")

        self.add(v.backup or "—", "bad" if v.backup_failed else "")

        owed = [
            f"{name} {running[name]} runs, {installed[name]} installed"
            for name in sorted(running)
            if installed.get(name, running[name]) != running[name]
        ]
        for person, theirs in sorted(v.people.items()):
            behind = [name for name in sorted(theirs) if installed.get(name, theirs[name]) != theirs[name]]
            if behind:
                owed.append(f"{person}'s server: {', '.join(behind)}")
        if owed:
            self.add(owed, "owed")
        else:
            self.add("none" if running else "—")

        used, limit = v.facts.get("memory_used"), v.facts.get("memory_limit")
        if used is None:
            self.add("—")
        elif limit:
            self.add(f"{_mib(used)} of {_mib(limit)} ({100 * used / limit:.0f}%)", "owed" if used > 0.9 * limit else "")
        else:
            self.add(f"{_mib(used)} (no limit enforced)")

    def add(self, value: str | list[str], level: str = "") -> None:
        self.cells.append((value, level))

    @property
    def rank(self) -> int:
        """0 failing, 1 owing something, 2 all well: the page's order."""
        if not self.verdict.ok:
            return 0
        return 1 if any(level for _, level in self.cells) else 2

    def html(self) -> str:
        cells = []
        for value, level in self.cells:
            if isinstance(value, list):
                inner = "<ul>" + "".join(f"<li>{text(line)}</li>" for line in value) + "</ul>"
            else:
                inner = text(value)
            cells.append(f'<td class="{level}">{inner}</td>' if level else f"<td>{inner}</td>")
        kind = ("failed", "owes", "well")[self.rank]
        return f'<tr class="{kind}">' + "".join(cells) + "</tr>"


def text(value: str) -> str:
    """A host's text as HTML: printable characters only, every one that means something in HTML escaped."""
    return html.escape(printable(value, 2000), quote=True)


def page(verdicts: list[Verdict], now: float | None = None) -> str:
    """The whole page, for ``verdicts`` (the smoke check's, after ``audit`` when it ran)."""
    now = time.time() if now is None else now
    rows = sorted((Row(verdict, now) for verdict in verdicts), key=lambda row: (row.rank, row.verdict.target))
    failed = sum(1 for row in rows if row.rank == 0)
    owing = sum(1 for row in rows if row.rank == 1)
    made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    title = f"Jupyter fleet: {len(rows)} hosts, {failed} failing"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            # Nothing runs and nothing is fetched, whatever a value carries: styles from this page only.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{text(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>{text(title)}</h1>",
            f'<p class="summary">Made {text(made)} by <code>python -m smoke --report</code>: '
            f"{failed} failing, {owing} owing something, {len(rows) - failed - owing} well.</p>",
            "<table>",
            "<thead><tr>" + "".join(f"<th>{text(name)}</th>" for name in COLUMNS) + "</tr></thead>",
            "<tbody>",
            *(row.html() for row in rows),
            "</tbody>",
            "</table>",
            "</body>",
            "</html>",
            "",
        ]
    )
