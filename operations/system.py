"""
Distribution packages: one apt transaction for every concern of the deploy.

Each concern names what it needs with a ``packages(data)`` function registered by
``@needs_packages`` when its module is imported (deploy.py imports every concern before
anything runs); ``install_packages`` (first in deploy.py) installs the union with
one ``apt-get install``, after an index refresh only when something is missing and the
index is over an hour old. Its state is one command: ``PackageState``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from pyinfra import host
from pyinfra.api import FactBase, FunctionCommand, StringCommand, deploy, operation

APT_CACHE_SECONDS = 3600
# Touched after every successful index refresh (by apt's daily job and by this deploy).
UPDATE_STAMP = "/var/lib/apt/periodic/update-success-stamp"
_NEEDS: list[Callable] = []


def needs_packages(packages: Callable) -> Callable:
    """Register a concern's ``packages(data) -> list[str]`` (host data in, package names out)."""
    _NEEDS.append(packages)
    return packages


def wanted_packages(data) -> list[str]:
    """Every registered concern's packages for this host, duplicates dropped, order kept."""
    return list(dict.fromkeys(name for needs in _NEEDS for name in needs(data)))


class PackageState(FactBase):
    """
    Returns ``{"installed": [...], "index_age": seconds}``: which of ``packages`` dpkg has
    installed, and how old apt's package index is (very old when never refreshed).
    """

    @staticmethod
    def default():
        return {"installed": [], "index_age": 10**10}

    def command(self, packages):
        names = " ".join(shlex.quote(p) for p in packages)
        stamp = shlex.quote(UPDATE_STAMP)
        return (
            f"dpkg-query -W -f='${{db:Status-Abbrev}} ${{Package}}\n' {names} 2>/dev/null; "
            f'echo "index-age $(( $(date +%s) - $(stat -c %Y {stamp} 2>/dev/null || echo 0) ))"'
        )

    def process(self, output):
        installed, age = [], 10**10
        for line in output:
            fields = line.split()
            if len(fields) == 2 and fields[0] == "index-age":
                age = int(fields[1])
            elif len(fields) == 2 and fields[0] == "ii":
                installed.append(fields[1].split(":")[0])
        return {"installed": sorted(installed), "index_age": age}


@operation()
def packages_installed(packages: list[str]):
    """
    Install the distribution packages that are missing, in one ``apt-get install``.

    + packages: package names

    The index is refreshed first when something is missing and it is over
    ``APT_CACHE_SECONDS`` old; nothing runs when everything is installed.

    **Example:**

    .. code:: python

        system.packages_installed(name="System packages", packages=["apache2", "ufw"])
    """
    state = host.get_fact(PackageState, packages=packages)
    missing = [p for p in packages if p not in state["installed"]]
    if not missing:
        host.noop(f"installed: {', '.join(packages)}")
        return
    if state["index_age"] > APT_CACHE_SECONDS:
        stamp = shlex.quote(UPDATE_STAMP)
        yield f"apt-get update -q && mkdir -p {shlex.quote(UPDATE_STAMP.rsplit('/', 1)[0])} && touch {stamp}"
    yield StringCommand(
        "DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confdef "
        "-o Dpkg::Options::=--force-confold install " + " ".join(shlex.quote(p) for p in missing)
    )


@deploy("System packages")
def install_packages():
    """Every concern's distribution packages (``@needs_packages``), in one apt transaction."""
    packages_installed(name="Install system packages", packages=wanted_packages(host.data))


class ExistingPaths(FactBase):
    """
    Returns ``{"paths": [...], "sizes": {path: KiB}, "user": bool}`` in one command: which of
    ``paths`` exist (a dangling symlink counts), the disk use of those of ``measure`` that
    exist, and whether the account ``user`` exists (``False`` when not asked).
    """

    @staticmethod
    def default():
        return {"paths": [], "sizes": {}, "user": False}

    def command(self, paths, user=None, measure=()):
        q = shlex.quote
        parts = [
            f"for p in {' '.join(q(p) for p in paths)}; do "
            '{ [ -e "$p" ] || [ -L "$p" ]; } && printf \'path %s\\n\' "$p"; done'
        ]
        if measure:
            parts.append(f"du -sk {' '.join(q(p) for p in measure)} 2>/dev/null | sed 's/^/size /'")
        if user:
            parts.append(f"id -u {q(user)} >/dev/null 2>&1 && echo user")
        return "; ".join([*parts, "true"])

    def process(self, output):
        state = self.default()
        for line in output:
            kind, _, rest = line.partition(" ")
            if kind == "path":
                state["paths"].append(rest)
            elif kind == "size":
                kib, _, path = rest.partition("\t")
                state["sizes"][path] = int(kib)
            elif line == "user":
                state["user"] = True
        return state


class ReportLines(FactBase):
    """Returns the lines of ``path`` (a report a script of the deploy wrote), ``[]`` when there is none."""

    @staticmethod
    def default():
        return []

    def command(self, path):
        return f"cat {shlex.quote(path)} 2>/dev/null || true"

    def process(self, output):
        return [line for line in output if line.strip()]


def shown_report(path: str) -> FunctionCommand:
    """A command for an operation to yield after the script that writes ``path``: when it runs,
    each line of the report is shown in the run's output (a script's own output shows only
    with ``-vvv``)."""

    def show():
        for line in host.get_fact(ReportLines, path=path):
            host.log(line)

    return FunctionCommand(show, (), {})
