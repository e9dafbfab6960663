"""
Writes the two documents made from operations/settings/registry.py, the one definition of every
setting: the settings table of docs/settings.md and group_data/all.py (every setting as a
commented-out example: uncomment a line to change it).

    python -m scripts.settings_docs            rewrite both
    python -m scripts.settings_docs --check    exit 1 when either is stale (the tests run this)
"""

from __future__ import annotations

import sys
from pathlib import Path

from operations import settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_PAGE = ROOT / "docs" / "settings.md"
GROUP_DATA = ROOT / "group_data" / "all.py"
TABLE_START = (
    "<!-- settings table: generated from operations/settings/registry.py by python -m scripts.settings_docs -->"
)
TABLE_END = "<!-- end of the settings table -->"

GROUP_DATA_HEADER = '''"""
Your settings for every host of the inventory. Each setting is here as a commented-out
line with its default and meaning: uncomment a line and change the value to set it.
Host data in inventory.py (per host) and `--data name=value` (per run) override these.

The defaults live in operations/settings/registry.py (ad hoc runs, `pyinfra HOST deploy.py`, load
no group_data and get them too); python -m scripts.settings_docs writes this file's comments
from there, so only change values, not the comment lines.
"""
'''


def table() -> str:
    rows = ["| Setting | Default | Meaning |", "|---|---|---|"]
    for group in settings.GROUPS:
        rows.append(f"| **{group.title}** | | |")
        rows += [f"| `{s.name}` | `{s.default!r}` | {s.meaning} |" for s in group.settings]
    return "\n".join(rows)


def settings_page(text: str) -> str:
    """``text`` (docs/settings.md) with the generated table between its markers."""
    before, start, rest = text.partition(TABLE_START)
    _, end, after = rest.partition(TABLE_END)
    if not (start and end):
        raise SystemExit(f"docs/settings.md lacks the markers {TABLE_START!r} ... {TABLE_END!r}")
    return f"{before}{TABLE_START}\n{table()}\n{TABLE_END}{after}"


def group_data(current: str = "") -> str:
    """group_data/all.py: the header, then each setting commented out, keeping a value a user
    uncommented (a line ``name = value`` in ``current``)."""
    chosen = {}
    for line in current.splitlines():
        name = line.split("=", 1)[0].strip()
        if name in settings.BY_NAME and not line.startswith("#"):
            chosen[name] = line
    blocks = [GROUP_DATA_HEADER]
    for group in settings.GROUPS:
        blocks.append(f"# --- {group.title} ({group.modules}) ---\n")
        for s in group.settings:
            blocks.append(f"# {s.meaning}\n{chosen.get(s.name, f'# {s.name} = {s.default!r}')}\n")
    return "\n".join(blocks)


def main(argv: list[str]) -> int:
    wanted = {SETTINGS_PAGE: settings_page(SETTINGS_PAGE.read_text()), GROUP_DATA: group_data(GROUP_DATA.read_text())}
    stale = [path for path, text in wanted.items() if path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run python -m scripts.settings_docs", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
