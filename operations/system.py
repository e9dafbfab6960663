"""
Distribution packages, installed in one step for every concern of the deploy.

One ``apt-get update`` (skipped while the index is under an hour old) and one
``apt-get install`` serve all modules: each module lists what it needs in its
``PACKAGES`` and ``deploy.py`` hands the union to ``install_packages``.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase, deploy
from pyinfra.operations import apt

APT_CACHE_SECONDS = 3600


@deploy("System packages")
def install_packages(packages):
    """
    Install distribution packages with one index refresh.

    + packages: package names; duplicates are dropped, order kept
    """
    apt.packages(
        name="Install system packages",
        packages=list(dict.fromkeys(packages)),
        update=True,
        cache_time=APT_CACHE_SECONDS,
    )


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
