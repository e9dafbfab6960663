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
from pyinfra.api import FactBase, StringCommand, deploy, operation

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
    Returns which of ``paths`` exist (a dangling symlink counts), in one command; with
    ``user``, also ``"user"`` when that account exists.
    """

    def command(self, paths, user=None):
        check_user = f"id -u {shlex.quote(user)} >/dev/null 2>&1 && echo user; " if user else ""
        return (
            "for p in "
            + " ".join(shlex.quote(p) for p in paths)
            + '; do { [ -e "$p" ] || [ -L "$p" ]; } && echo "$p"; done; '
            + check_user
            + "true"
        )

    def process(self, output):
        return [line for line in output if line]
