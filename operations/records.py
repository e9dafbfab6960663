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
"""

from __future__ import annotations

import shlex

# The deploy's own state on the host (also Apache's reload stamp and default-site marker).
STATE_DIR = "/var/lib/jupyter-apache-deploy"
RECORD = f"{STATE_DIR}/created"


def append(kind: str, value: str) -> str:
    """A shell command that records ``kind value`` (a line twice does no harm)."""
    return f"mkdir -p {shlex.quote(STATE_DIR)} && echo {shlex.quote(f'{kind} {value}')} >> {shlex.quote(RECORD)}"
