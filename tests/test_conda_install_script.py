"""files/conda-install on this machine: a prefix on a filesystem too small for the distribution
is refused before anything is downloaded or installed, with the numbers; one with room is
installed. The installer is a small stand-in served over loopback; the filesystems are tmpfs
mounts of a few MiB (root, as in CI)."""

from __future__ import annotations

import hashlib
import http.server
import os
import shlex
import subprocess
import threading
from functools import partial
from pathlib import Path

import pytest
from pyinfra.api import StringCommand

from operations import conda

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "files" / "conda-install"
INSTALLER_MIB = 2
# A batch-mode installer: -b -p PREFIX [-u]; it writes a file and ends. Padded after `exit`.
INSTALLER = '#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -p ] && prefix=$2; shift; done\n'
INSTALLER += 'mkdir -p "$prefix/bin" && echo installed > "$prefix/bin/marker"\nexit 0\n'

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (CI runs as root)")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, sha256) of the stand-in installer, served on loopback."""
    directory = tmp_path_factory.mktemp("served")
    body = INSTALLER.encode() + b"#" * (INSTALLER_MIB * 1048576 - len(INSTALLER))
    (directory / "installer.sh").write_bytes(body)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/installer.sh", hashlib.sha256(body).hexdigest()
    server.shutdown()


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of the given MiB, mounted under tmp_path."""
    mounts = []

    def mount(mib: int) -> Path:
        where = tmp_path / f"disk{len(mounts)}"
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(where)], check=True)
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(["umount", str(where)], check=True)


def install(url: str, sha256: str, prefix: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "no_proxy": "127.0.0.1"}
    # The options the deploy gives it (operations/conda.py).
    [_, *options] = shlex.split(StringCommand(*conda.install_command()).get_raw_value())
    return subprocess.run(
        ["bash", str(SCRIPT), *options, url, sha256, str(prefix), "install", "any"],
        capture_output=True,
        text=True,
        env=env,
    )


def test_too_little_room_for_the_prefix_fails_before_the_download_with_the_numbers(served, small_disk):
    url, sha256 = served
    disk = small_disk(8)  # 5 x 2 MiB does not fit
    result = install(url, sha256, disk / "conda")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"conda-install: not enough free space on {disk} for {disk}/conda (5 x the 2 MiB installer): "
        "8 MiB free, about 10 MiB needed; free some space or choose another conda_prefix"
    )
    assert list(disk.iterdir()) == []  # nothing installed, not even the prefix directory


def test_a_server_that_does_not_say_the_size_is_checked_after_the_download(served, small_disk, monkeypatch):
    url, sha256 = served
    disk = small_disk(8)
    # HEAD answers 501 here: the size is known only once downloaded.
    monkeypatch.setattr(http.server.SimpleHTTPRequestHandler, "do_HEAD", lambda self: self.send_error(501))
    result = install(url, sha256, disk / "conda")
    assert result.returncode == 1 and "8 MiB free, about 10 MiB needed" in result.stderr
    assert list(disk.iterdir()) == []


def test_with_room_it_installs_and_records_the_installer(served, small_disk):
    url, sha256 = served
    disk = small_disk(12)
    result = install(url, sha256, disk / "conda")
    assert result.returncode == 0, result.stderr
    assert (disk / "conda" / "bin" / "marker").read_text() == "installed\n"
    assert (disk / "conda" / conda.MARKER).read_text() == sha256 + "\n"
