"""
A local apt repository standing in for Debian's security archive (tests only): its Release
file says ``Origin: Debian``, ``Label: Debian-Security`` and the release's ``-security``
codename, as deb.debian.org/debian-security's does, so unattended-upgrades' own patterns
select it. Unsigned: a host lists it with ``[trusted=yes]``, reached directly (not through
the lab's apt proxy, which would cache its changing indices).

    archive = SecurityArchive(directory, "bookworm")
    archive.publish(archive.package("lab-security-canary", "1.0"), ...)

Packages are built here with ``dpkg-deb`` (a small one made up, or one of Debian's rebuilt
with a higher version: the same files, so dpkg replaces them and processes that mapped the
old library see it deleted, as after a real update).
"""

from __future__ import annotations

import email.utils
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from .config import BRIDGE_IP

COMPONENT = "main"
ARCHITECTURE = "amd64"


class SecurityArchive:
    def __init__(self, directory: Path, release: str):
        self.directory = directory
        self.release = release
        self.codename = f"{release}-security"
        self.pool = directory / "pool"
        self.packages: list[Path] = []

    def package(self, name: str, version: str, text: str = "") -> Path:
        """A made-up package whose one file (/usr/share/doc/NAME/VERSION) says its version."""
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch) / "root"
            (root / "DEBIAN").mkdir(parents=True)
            (root / "DEBIAN/control").write_text(
                f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: lab <lab@localhost>\n"
                f"Section: misc\nPriority: optional\nDescription: made for a test of unattended security updates\n"
            )
            doc = root / "usr/share/doc" / name
            doc.mkdir(parents=True)
            (doc / "VERSION").write_text(f"{version}\n{text}")
            return self._build(root, f"{name}_{version}_all.deb")

    def rebuilt(self, deb: Path, suffix: str) -> tuple[Path, str]:
        """``deb`` again with ``suffix`` added to its version: (the new .deb, its version)."""
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch) / "root"
            subprocess.run(["dpkg-deb", "-R", str(deb), str(root)], check=True)
            control = root / "DEBIAN/control"
            lines = control.read_text().splitlines()
            version = ""
            for index, line in enumerate(lines):
                if line.startswith("Version: "):
                    version = line.removeprefix("Version: ") + suffix
                    lines[index] = f"Version: {version}"
            control.write_text("\n".join(lines) + "\n")
            name = _field(deb, "Package")
            arch = _field(deb, "Architecture")
            return self._build(root, f"{name}_{version.split(':')[-1]}_{arch}.deb"), version

    def _build(self, root: Path, filename: str) -> Path:
        self.pool.mkdir(parents=True, exist_ok=True)
        target = self.pool / filename
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(target)],
            check=True,
            capture_output=True,
        )
        return target

    def publish(self, *debs: Path) -> None:
        """Make ``debs`` (and what was published before) the archive's packages, with new indices."""
        self.packages.extend(deb for deb in debs if deb not in self.packages)
        stanzas = []
        for deb in self.packages:
            control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout
            data = deb.read_bytes()
            stanzas.append(
                control.rstrip("\n")
                + f"\nFilename: {deb.relative_to(self.directory)}\nSize: {len(data)}\n"
                + f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
            )
        index_dir = self.directory / "dists" / self.codename / COMPONENT / f"binary-{ARCHITECTURE}"
        index_dir.mkdir(parents=True, exist_ok=True)
        index = "\n".join(stanzas).encode()
        (index_dir / "Packages").write_bytes(index)
        relative = index_dir.relative_to(self.directory / "dists" / self.codename) / "Packages"
        (self.directory / "dists" / self.codename / "Release").write_text(
            "Origin: Debian\nLabel: Debian-Security\nSuite: stable-security\n"
            f"Codename: {self.codename}\nDate: {email.utils.formatdate(usegmt=True)}\n"
            f"Architectures: {ARCHITECTURE}\nComponents: {COMPONENT}\n"
            "Description: a lab stand-in for Debian's security archive (tests only)\n"
            f"SHA256:\n {hashlib.sha256(index).hexdigest()} {len(index)} {relative}\n"
        )

    def sources(self, url: str) -> tuple[str, str]:
        """What a host's apt needs to use the archive at ``url`` (its sources line, and the
        archive reached without the lab's proxy)."""
        return (
            f"deb [trusted=yes] {url} {self.codename} {COMPONENT}\n",
            f'Acquire::http::Proxy::{BRIDGE_IP} "DIRECT";\n',
        )

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True, text=True).stdout.strip()
