"""
Debian's Chromium for the browser tests: its path, the flags it runs with here, and a HOME
whose NSS database trusts exactly the certificates a test names.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-dev-shm-usage",
]


def trusting_home(home: Path, trusted: list[tuple[str, str, str]]) -> Path:
    """``home`` with an NSS database (Chromium on Linux reads ~/.pki/nssdb) holding each of
    ``trusted``: (nickname, certutil trust flags, PEM file)."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    for nickname, trust, pem in trusted:
        subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", trust, "-n", nickname, "-i", pem], check=True)
    return home


@contextlib.contextmanager
def chromium_signing_in_at(provider, home: Path, host_name: str, host_cert: str):
    """Chromium trusting exactly ``host_cert`` (the notebook host's own certificate) and the
    lab provider's CA, finding the provider at its lab host (the lab has no DNS)."""
    from playwright.sync_api import sync_playwright

    home = trusting_home(home, [(host_name, "P,,", host_cert), ("lab-idp-ca", "C,,", str(provider.ca))])
    resolve = f"--host-resolver-rules=MAP {provider.issuer.split('//')[1]} {provider.host.ip}"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*FLAGS, resolve], env={"HOME": str(home), "PATH": "/usr/bin:/bin"}
        )
        yield chromium
        chromium.close()
