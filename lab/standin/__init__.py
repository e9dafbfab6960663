"""
Build the stand-in conda installer (tests only): a bash header with Anaconda's batch
interface followed by a tar of the wheels Jupyter Notebook 7 needs, for the Python
versions of the lab's Debian releases. Cached by content: rebuilt only when missing.

    python -m lab.standin OUTPUT_DIR   # prints the installer path and sha256

Its own package (``lab.standin``), beside the lab that serves it to the hosts, used by the
real-host tests, ``./demo`` and the benchmark.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "StandIn-Conda-TEST-ONLY-Linux-x86_64.sh"
# Debian 12 ships Python 3.11, Debian 13 Python 3.13.
PYTHON_VERSIONS = ("3.11", "3.13")
# pip too: the prefix gets its own pip, as Anaconda has.
REQUIREMENTS = ("notebook>=7,<8", "pip")


def download_wheels(dest: Path) -> None:
    for version in PYTHON_VERSIONS:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                "--python-version",
                version,
                "--implementation",
                "cp",
                "--platform",
                "manylinux_2_28_x86_64",
                "--platform",
                "manylinux_2_17_x86_64",
                "--platform",
                "manylinux2014_x86_64",
                "--platform",
                "linux_x86_64",
                "-d",
                str(dest),
                *REQUIREMENTS,
            ],
            check=True,
            capture_output=True,
        )


def build(out_dir: Path) -> tuple[Path, str]:
    header = (HERE / "installer-header.sh").read_bytes()
    # Cached by what goes into it: a changed header or requirement builds a new one.
    recipe = hashlib.sha256(header + repr((PYTHON_VERSIONS, REQUIREMENTS)).encode()).hexdigest()[:12]
    out_dir = out_dir / recipe
    out_dir.mkdir(parents=True, exist_ok=True)
    installer = out_dir / NAME
    if not installer.exists():
        wheels = out_dir / "wheels"
        wheels.mkdir(exist_ok=True)
        download_wheels(wheels)
        payload = io.BytesIO()
        with tarfile.open(fileobj=payload, mode="w") as tar:
            tar.add(wheels, arcname="wheels")
        partial = installer.with_suffix(".part")
        partial.write_bytes(header + payload.getvalue())
        partial.rename(installer)
    return installer, hashlib.sha256(installer.read_bytes()).hexdigest()


def main() -> None:
    path, digest = build(Path(sys.argv[1]))
    print(path, digest)
