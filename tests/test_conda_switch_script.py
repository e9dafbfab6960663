"""files/conda-switch and files/conda-stranded on this machine, on directories of a temporary
tree: which distribution the stable path points at after an upgrade, a rollback and the next
upgrade, what is kept and removed, and what a user built on another Python is listed. This
machine has no Jupyter service: the switch says so and restarts nothing (the real-host tests,
tests/e2e/test_upgrades.py, check and restart a real server)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api import StringCommand

from operations import conda

ROOT = Path(__file__).resolve().parent.parent
SWITCH = ROOT / "files" / "conda-switch"
STRANDED = ROOT / "files" / "conda-stranded"
MARKER = conda.MARKER
NEW = "{}.{}".format(*sys.version_info[:2])

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="takes the installer lock in /run/lock (CI runs as root)")


def distribution(path: Path, sha256: str | None) -> Path:
    (path / "bin").mkdir(parents=True)
    if sha256:
        (path / MARKER).write_text(sha256 + "\n")
    return path


def switch(*args) -> subprocess.CompletedProcess:
    """The script with the options the deploy gives it (operations/conda.py), then ``args``."""
    [_, *options] = shlex.split(StringCommand(*conda.switch_command()).get_raw_value())
    return subprocess.run(["bash", str(SWITCH), *options, *map(str, args)], capture_output=True, text=True, check=False)


@pytest.fixture
def prefix(tmp_path):
    """A prefix as the deploy left it before distributions lived side by side: a real directory."""
    return distribution(tmp_path / "anaconda3", "a" * 64)


def upgrade(prefix: Path, sha256: str, report: Path) -> subprocess.CompletedProcess:
    target = distribution(Path(f"{prefix}.dists/{sha256[:16]}"), sha256)
    return switch("upgrade", prefix, target, "when-idle", 24, "no-backup", report)


def test_a_real_prefix_moves_beside_and_the_link_follows_each_upgrade(prefix, tmp_path):
    report = tmp_path / "report"
    dists = Path(f"{prefix}.dists")
    first = upgrade(prefix, "b" * 64, report)
    assert first.returncode == 0, first.stderr
    assert os.readlink(prefix) == str(dists / ("b" * 16))
    assert os.readlink(dists / "previous") == "a" * 16
    # The old prefix moved as it was (its marker with it), not copied.
    assert (dists / ("a" * 16) / MARKER).read_text() == "a" * 64 + "\n"
    said = report.read_text()
    assert "No Jupyter service yet" in said and f"Switched {prefix} from {'a' * 16} to {'b' * 16}" in said

    second = upgrade(prefix, "c" * 64, report)
    assert second.returncode == 0, second.stderr
    assert os.readlink(prefix) == str(dists / ("c" * 16))
    assert os.readlink(dists / "previous") == "b" * 16
    assert sorted(p.name for p in dists.iterdir()) == ["b" * 16, "c" * 16, "previous"]
    assert f"Removed the older distribution {'a' * 16}" in report.read_text()


def test_rollback_goes_back_once_and_the_next_upgrade_goes_forward(prefix, tmp_path):
    report = tmp_path / "report"
    dists = Path(f"{prefix}.dists")
    assert upgrade(prefix, "b" * 64, report).returncode == 0
    back = switch("rollback", prefix, "when-idle", 24, report)
    assert back.returncode == 0, back.stderr
    assert os.readlink(prefix) == str(dists / ("a" * 16))
    assert not (dists / "previous").exists()
    assert f"back from {'b' * 16} to {'a' * 16}" in report.read_text()
    again = switch("rollback", prefix, "when-idle", 24, report)
    assert again.returncode == 0 and os.readlink(prefix) == str(dists / ("a" * 16))
    assert "No previous distribution" in report.read_text()
    # The distribution rolled back from is kept: the next upgrade to it switches again.
    forward = switch("upgrade", prefix, dists / ("b" * 16), "when-idle", 24, "no-backup", report)
    assert forward.returncode == 0, forward.stderr
    assert os.readlink(prefix) == str(dists / ("b" * 16))
    assert os.readlink(dists / "previous") == "a" * 16


def test_an_unfinished_install_is_never_switched_to(prefix, tmp_path):
    report = tmp_path / "report"
    target = distribution(Path(f"{prefix}.dists/{'b' * 16}"), None)
    run = switch("upgrade", prefix, target, "when-idle", 24, "no-backup", report)
    assert run.returncode == 1
    assert "is not a finished install" in run.stderr
    assert prefix.is_dir() and not prefix.is_symlink()


def test_a_fresh_host_gets_a_link(tmp_path):
    target = distribution(tmp_path / "p.dists" / ("d" * 16), "d" * 64)
    run = switch("link", tmp_path / "p", target)
    assert run.returncode == 0, run.stderr
    assert os.readlink(tmp_path / "p") == str(target)


# -- conda-stranded -------------------------------------------------------------------------


def venv(path: Path, home: str, version: str) -> None:
    path.mkdir(parents=True)
    (path / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\nversion = {version}\n")


@pytest.mark.parametrize("left_out", ["--unit", "--sandbox", "--lock", "--marker", "--restart"])
def test_each_path_it_works_on_is_given_or_it_does_nothing(tmp_path, left_out):
    """The deploy's names come as options (operations/conda.py): one left out stops the script
    before it takes the lock or touches the prefix, naming the option."""
    [_, *options] = shlex.split(StringCommand(*conda.switch_command()).get_raw_value())
    at = options.index(left_out)
    end = options.index("--", at) + 1 if left_out == "--restart" else at + 2
    target = distribution(tmp_path / "p.dists" / "dddddddddddddddd", "d" * 64)
    result = subprocess.run(
        ["bash", str(SWITCH), *options[:at], *options[end:], "link", str(tmp_path / "p"), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and left_out in result.stderr, result.stderr
    assert not (tmp_path / "p").exists()


def test_what_needs_recreating_is_listed_and_nothing_else(tmp_path):
    previous = distribution(tmp_path / "p.dists" / "old", "a" * 64)
    current = distribution(tmp_path / "p.dists" / "new", "b" * 64)
    prefix = tmp_path / "p"
    prefix.symlink_to(current)
    home = tmp_path / "home"
    venv(home / "envs" / "pinned", f"{previous}/bin", f"{NEW}.1")
    venv(home / "envs" / "other-python", f"{prefix}/bin", "3.9.18")
    venv(home / "envs" / "follows", f"{prefix}/bin", f"{NEW}.4")
    venv(home / "projects" / "x" / ".venv", "/usr/bin", "3.9.2")  # not made from a distribution
    # Restored from a host this one replaced: its Python's directory is not here.
    venv(home / "envs" / "moved", f"{tmp_path}/elsewhere/bin", "3.10.4")
    kernels = home / ".local" / "share" / "jupyter" / "kernels"
    for name, python in (("old", f"{home}/envs/other-python/bin/python"), ("ok", f"{home}/envs/follows/bin/python")):
        (kernels / name).mkdir(parents=True)
        (kernels / name / "kernel.json").write_text(json.dumps({"argv": [python, "-m", "ipykernel_launcher"]}))
    (home / ".local" / "lib" / "python3.9" / "site-packages" / "tabulate").mkdir(parents=True)
    (home / ".local" / "lib" / f"python{NEW}" / "site-packages" / "toolz").mkdir(parents=True)
    run = subprocess.run(
        [sys.executable, "-I", str(STRANDED), str(home), str(prefix), str(previous)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Built on another Python than the new distribution's")
    assert lines[1:] == [
        f"  ~/envs/moved uses Python 3.10 from {tmp_path}/elsewhere/bin, which this host does not have: recreate it",
        f"  ~/envs/other-python was made with Python 3.9 and {prefix} now has Python {NEW}: recreate it",
        f"  ~/envs/pinned uses Python {NEW} of the previous distribution: "
        "recreate it (it works until the next upgrade)",
        "  kernel spec old runs ~/envs/other-python (listed above)",
        f"  ~/.local/lib/python3.9 (pip install --user for Python 3.9) is not read by Python {NEW}: "
        "reinstall what is needed",
    ]
