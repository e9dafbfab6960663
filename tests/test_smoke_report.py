"""The fleet page (smoke/report.py, ``python -m smoke --report``): rows, order, and escaping."""

from __future__ import annotations

import html.parser
import json
import platform
import subprocess
import sys

import smoke
import smoke.__main__
from scripts import ci_deploy
from smoke import Verdict, host_facts
from smoke.report import COLUMNS, page

NOW = 1_800_000_000.0
# What a host's answer may carry (the notebook user shapes most of what a host says).
HOSTILE = '<script>alert(1)</script><img src="https://example.org/x.png" onerror="alert(2)"><b>bold</b>'


class Tags(html.parser.HTMLParser):
    """Every tag and attribute the page's markup has, and the text of each row's cells."""

    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.rows: list[list[str]] = []
        self.row_classes: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
        if tag == "tr" and dict(attrs).get("class"):
            self.rows.append([])
            self.row_classes.append(dict(attrs)["class"])
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None and data.strip():
            self._cell.append(data.strip())


def parsed(text: str) -> Tags:
    tags = Tags()
    tags.feed(text)
    return tags


def well(target: str, **changes) -> Verdict:
    verdict = Verdict(
        target,
        ok=True,
        cell_ran=True,
        certificate_days=80.0,
        backup="backup 3.0 h ago",
        system={"pending": 0, "security_pending": 0, "last_result": "nothing-to-install", "reboot_needed_since": 0},
        facts={"kernel": "6.1.0-28-amd64", "memory_used": 300 * 2**20, "memory_limit": 2048 * 2**20},
        versions={
            "distribution": "Debian GNU/Linux 12 (bookworm)",
            "python": "3.11.2",
            "running": {"notebook": "7.6.5", "jupyter-server": "2.21.1"},
            "installed": {"notebook": "7.6.5", "jupyter-server": "2.21.1"},
        },
        audited=True,
    )
    for name, value in changes.items():
        setattr(verdict, name, value)
    return verdict


def test_a_row_per_host_with_every_column_and_failures_first_then_hosts_that_owe():
    reboot = well("b-reboot.example.org")
    reboot.system = {**reboot.system, "reboot_needed_since": NOW - 7200, "reboot_next": NOW + 3600,
                     "reboot_reason": "kernel"}  # fmt: skip
    down = Verdict("c-down.example.org", ok=False, error="cannot connect: connection refused")
    expiring = well("d-cert.example.org", certificate_days=9.6)
    expiring.fail(["the certificate expires in 9.6 days (under 14: is renewal working?)"])
    text = page([well("a-well.example.org"), reboot, down, expiring], now=NOW)
    tags = parsed(text)
    assert [row[0] for row in tags.rows] == [
        "c-down.example.org",
        "d-cert.example.org",
        "b-reboot.example.org",
        "a-well.example.org",
    ]
    assert tags.row_classes == ["failed", "failed", "owes", "well"]
    assert all(len(row) == len(COLUMNS) for row in tags.rows)
    cells = {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in tags.rows}
    assert cells["c-down.example.org"]["Answered"] == "no"
    assert cells["c-down.example.org"]["Check"] == "FAIL: cannot connect: connection refused"
    assert cells["d-cert.example.org"]["Certificate"] == "10 days left"
    assert '<td class="bad">10 days left</td>' in text
    assert cells["b-reboot.example.org"]["Reboot"].startswith("owed for 2.0 h (kernel)")
    assert "2027-01-15 09:00 UTC" in cells["b-reboot.example.org"]["Reboot"]
    well_row = cells["a-well.example.org"]
    assert well_row["Kernel"] == "6.1.0-28-amd64" and well_row["OS release"] == "Debian GNU/Linux 12 (bookworm)"
    assert well_row["Memory (server's unit)"] == "300 MiB of 2048 MiB (15%)"
    assert (
        well_row["Jupyter server (Python and packages running)"] == "Python 3.11.2 jupyter-server 2.21.1 notebook 7.6.5"
    )
    assert well_row["Updates pending"] == "0 (0 security) last unattended run: nothing-to-install"
    assert well_row["Last backup"] == "backup 3.0 h ago" and well_row["Advisories"] == "none published"
    assert "Made 2027-01-15 08:00:00 UTC" in text and "1 owing something" in text and "2 failing" in text


def test_a_restart_owed_updates_pending_and_advisories_are_shown():
    verdict = well("h.example.org")
    verdict.versions["installed"] = {"notebook": "7.6.5", "jupyter-server": "2.22.0"}
    verdict.system = {**verdict.system, "pending": 4, "security_pending": 2}
    verdict.advisories = ["ADVISORY GHSA-xxxx jupyter-server 2.21.1: a flaw (fixed in 2.22.0)"]
    verdict.people = {"alice": {"jupyter-server": "2.21.1"}}
    row = dict(zip(COLUMNS, parsed(page([verdict], now=NOW)).rows[0], strict=True))
    assert row["Jupyter restart owed"] == "jupyter-server 2.21.1 runs, 2.22.0 installed alice's server: jupyter-server"
    assert row["Updates pending"].startswith("4 (2 security)")
    assert row["Advisories"] == "ADVISORY GHSA-xxxx jupyter-server 2.21.1: a flaw (fixed in 2.22.0)"
    unaudited = well("h.example.org", audited=False)
    assert "not looked up (smoke --audit)" in page([unaudited], now=NOW)


def test_what_a_host_says_is_text_on_the_page_never_markup_and_nothing_is_fetched():
    verdict = well(HOSTILE, ok=False, error=f"the cell printed {HOSTILE!r}")
    verdict.facts = {**verdict.facts, "kernel": HOSTILE}
    verdict.versions = {**verdict.versions, "distribution": HOSTILE}
    verdict.system = {**verdict.system, "reboot_needed_since": NOW - 60, "reboot_waits_for": HOSTILE}
    verdict.backup = HOSTILE
    text = page([verdict], now=NOW)
    tags = parsed(text)
    # Only the page's own markup; no attribute that loads or runs anything.
    assert tags.tags == {
        "html", "head", "meta", "title", "style", "body", "h1", "p", "code", "table", "thead", "tbody", "tr", "th",
        "td", "ul", "li",
    }  # fmt: skip
    assert tags.attributes <= {"lang", "charset", "http-equiv", "content", "name", "class"}
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    # Shown as the text it is.
    row = tags.rows[0]
    assert row[0] == HOSTILE and HOSTILE in row[COLUMNS.index("Kernel")]
    assert "default-src 'none'" in text and "http://" not in text.replace(HOSTILE, "")


def test_control_characters_from_a_host_do_not_reach_the_page():
    verdict = Verdict("h\x1b[31m.example.org", ok=False, error="bad\x07\x00 answer")
    text = page([verdict], now=NOW)
    assert "\x1b" not in text and "\x07" not in text and "\x00" not in text
    assert "h[31m.example.org" in text


def test_the_cells_fourth_line_gives_kernel_and_memory_and_a_shaped_one_gives_nothing_it_should_not():
    output = subprocess.run([sys.executable, "-c", smoke.CELL], capture_output=True, text=True, check=True).stdout
    lines = output.splitlines()
    assert lines[0] == "42" and len(lines) == 4
    facts = host_facts(lines[3])
    assert facts["kernel"] == platform.release()
    assert isinstance(facts.get("memory_used"), int) and facts["memory_used"] > 0
    # cgroup version 1's "no limit" is no limit.
    assert "memory_limit" not in host_facts(json.dumps({"kernel": "6", "memory": ["5", "9223372036854771712"]}))
    assert host_facts(json.dumps({"kernel": "6", "memory": ["5", "max"]})) == {"kernel": "6", "memory_used": 5}
    assert host_facts(json.dumps({"kernel": 7, "memory": ["-1", "10"]})) == {}
    assert host_facts('["kernel"]') == {} and host_facts("not json") == {}
    assert host_facts(json.dumps({"kernel": "a\x1bb" + "x" * 500}))["kernel"] == "ab" + "x" * 98


def test_the_command_writes_the_page_for_a_host_that_is_down(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PASSWORD", "not-sent-anywhere")
    report = tmp_path / "fleet.html"
    # Port 9 on loopback: nothing listens there.
    code = smoke.__main__.main(["--timeout", "5", "--report", str(report), "https://127.0.0.1:9/jupyter/"])
    assert code == 1
    row = dict(zip(COLUMNS, parsed(report.read_text()).rows[0], strict=True))
    assert row["Host"] == "https://127.0.0.1:9/jupyter/" and row["Answered"] == "no"
    assert row["Check"].startswith("FAIL: ")


def test_ci_deploy_writes_the_page_from_merged_slices_results(tmp_path):
    verdict = well("a.example.org")
    results = [
        {"smoke": [{"line": verdict.line(), "ok": True, "verdict": json.loads(json.dumps(vars(verdict)))}]},
        # A slice from before the page: its line only.
        {"smoke": [{"line": "FAIL  b.example.org  cell failed", "ok": False}]},
        # A host the deploy failed (never smoke-checked), and a slice pyinfra never reported on.
        {"hosts": ["c.example.org"], "errors": {"c.example.org": "Apache | vhost"}, "smoke": []},
        {"hosts": ["d.example.org"], "errors": {}, "smoke": [], "reported": False},
    ]
    out = tmp_path / "fleet.html"
    ci_deploy.write_fleet_page(results, out)
    rows = parsed(out.read_text()).rows
    assert [row[0] for row in rows] == [
        "FAIL  b.example.org  cell failed",
        "c.example.org",
        "d.example.org",
        "a.example.org",
    ]
    assert rows[1][1] == "FAIL: the deploy failed at: Apache | vhost"
    assert rows[2][1] == "FAIL: the deploy failed at: no report from pyinfra (see the job's log)"
    assert dict(zip(COLUMNS, rows[3], strict=True))["Kernel"] == "6.1.0-28-amd64"
