"""
Build the stand-in conda installer (tests only): a bash header with Anaconda's batch
interface followed by a tar of the wheels Jupyter Notebook 7 needs, for the Python
versions of the lab's Debian releases. Cached by content: rebuilt only when missing.

    python -m lab.standin OUTPUT_DIR [VARIANT]   # prints the installer path and sha256

Its own package (``lab.standin``), beside the lab that serves it to the hosts, used by the
real-host tests, ``./demo`` and the benchmark.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "StandIn-Conda-TEST-ONLY-Linux-x86_64.sh"
# Debian 12 ships Python 3.11, Debian 13 Python 3.13.
PYTHON_VERSIONS = ("3.11", "3.13")
# pip too: the prefix gets its own pip, as Anaconda has.
REQUIREMENTS = ("notebook>=7,<8", "pip")
# Releases for the upgrade tests, each a distribution a user can tell from the others:
#  default           the latest Jupyter Notebook 7 (what every other test deploys)
#  older             an earlier Jupyter Notebook release (the distribution upgraded from)
#  next              the default plus a marker package, standin_release 2.0 (upgraded to)
#  cannot-start      the default, but its server exits at start (kernels still work)
#  fails-as-service  the default, but its server exits when it runs as jupyter.service (its
#                    cgroup says so) or as a person's server the hub started (JUPYTERHUB_USER,
#                    but not the check account's): it passes the check (a unit of its own, or
#                    the check account's server) and fails where people's work runs
VARIANTS = {
    "default": REQUIREMENTS,
    "older": ("notebook==7.5.8", "pip"),
    "next": REQUIREMENTS,
    "cannot-start": REQUIREMENTS,
    "fails-as-service": REQUIREMENTS,
}
MARKER_PACKAGE = "standin_release"


def download_wheels(dest: Path, requirements=REQUIREMENTS) -> None:
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
                *requirements,
            ],
            check=True,
            capture_output=True,
        )


def marker_wheel(dest: Path) -> None:
    """``standin_release`` 2.0, a pure-Python wheel made here: what tells the ``next`` release apart."""
    name = f"{MARKER_PACKAGE}-2.0"
    files = {
        f"{MARKER_PACKAGE}.py": 'RELEASE = "next"\n',
        f"{name}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {MARKER_PACKAGE}\nVersion: 2.0\n",
        f"{name}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: lab.standin\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{path},,\n" for path in files) + f"{name}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(dest / f"{name}-py3-none-any.whl", "w") as wheel:
        for path, content in {**files, f"{name}.dist-info/RECORD": record}.items():
            wheel.writestr(path, content)


def url_path(installer: Path) -> str:
    """Where the lab's file server (serving the ``build`` output directory) has ``installer``."""
    return f"{installer.parent.name}/{installer.name}"


def build(out_dir: Path, variant: str = "default") -> tuple[Path, str]:
    requirements = VARIANTS[variant]
    # The header says which release it is; the default's header is the file as it is.
    header = (HERE / "installer-header.sh").read_bytes()
    header = header.replace(b"\nVARIANT=default\n", f"\nVARIANT={variant}\n".encode())
    # Cached by what goes into it: a changed header or requirement builds a new one.
    recipe = hashlib.sha256(header + repr((PYTHON_VERSIONS, requirements)).encode()).hexdigest()[:12]
    out_dir = out_dir / recipe
    out_dir.mkdir(parents=True, exist_ok=True)
    installer = out_dir / NAME
    if not installer.exists():
        wheels = out_dir / "wheels"
        wheels.mkdir(exist_ok=True)
        download_wheels(wheels, requirements)
        if variant == "next":
            marker_wheel(wheels)
        payload = io.BytesIO()
        with tarfile.open(fileobj=payload, mode="w") as tar:
            tar.add(wheels, arcname="wheels")
        partial = installer.with_suffix(".part")
        partial.write_bytes(header + payload.getvalue())
        partial.rename(installer)
    return installer, hashlib.sha256(installer.read_bytes()).hexdigest()


def main() -> None:
    path, digest = build(Path(sys.argv[1]), *sys.argv[2:3])
    print(path, digest)
