"""
What the deploy itself created or enabled on a host, so that ``uninstall.py`` undoes only that.

A host may have had Apache modules, firewall rules or directories before the deploy first
came: those are never the deploy's to remove. So each change that makes one of them is
recorded, in the same command that makes it, as a line of ``RECORD``:

    module ssl                        an Apache module it enabled (dependencies too)
    ufw allow 80/tcp                  a firewall rule it added
    notebook_dir /srv/jupyter         a directory it created
    repository /srv/backups/jupyter   a local backup repository it initialised

Lines are only ever added. Hosts deployed before this record existed have none: uninstall
then keeps those things and says why.

``MADE`` holds, for each file, link and directory the deploy last wrote, what it made there
(``made``): a later run that finds something else there knows it changed outside the deploy
and says what it repaired (``operations/snapshot.py``).
"""

from __future__ import annotations

import shlex

from .layout import STATE_DIR

RECORD = f"{STATE_DIR}/created"


def append(kind: str, value: str) -> str:
    """A shell command that records ``kind value`` (a line twice does no harm)."""
    return f"mkdir -p {shlex.quote(STATE_DIR)} && echo {shlex.quote(f'{kind} {value}')} >> {shlex.quote(RECORD)}"


# path TAB what (a file's sha256, "link:TARGET" or "dir") TAB user:group TAB mode ("-" for a link).
MADE = f"{STATE_DIR}/made"


def made(path: str, what: str, owner: str, mode: str, *more: tuple[str, str, str, str]) -> str:
    """A shell command that records what the deploy made at ``path`` (and at each of ``more``,
    ``(path, what, owner, mode)`` each), replacing their earlier lines."""
    q = shlex.quote
    entries = [(path, what, owner, mode), *more]
    lines = ["\t".join((p, w, o, m if m == "-" else m.lstrip("0").rjust(3, "0"))) for p, w, o, m in entries]
    # awk reads escapes in -v values: each path's backslashes doubled, one path a line.
    paths = "\\n".join(p.replace("\\", "\\\\") for p, *_ in entries)
    keep = 'BEGIN { n = split(gone, list, "\\n"); for (i = 1; i <= n; i++) g[list[i]] = 1 } !($1 in g)'
    new = f"{MADE}.new"
    return (
        f"mkdir -p {q(STATE_DIR)} && {{ awk -F '\\t' -v gone={q(paths)} {q(keep)} {q(MADE)} 2>/dev/null; "
        f"printf '%s\\n' {' '.join(q(line) for line in lines)}; }} > {q(new)} && mv -f {q(new)} {q(MADE)}"
    )
