"""
Distribution packages, installed in one step for every concern of the deploy.

One ``apt-get update`` (skipped while the index is under an hour old) and one
``apt-get install`` serve all modules: each module lists what it needs in its
``PACKAGES`` and ``deploy.py`` hands the union to ``install_packages``.
"""

from __future__ import annotations

from pyinfra.api import deploy
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
