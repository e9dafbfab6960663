"""
operations/planning.py: pyinfra's operation order from a frame walk instead of
``inspect.stack()``. A real run of the command line over simulated hosts (fresh, converged,
letsencrypt mode with backups on, three hosts) records every operation's (host, names, op
order, op hash) with pyinfra's own function and with the replacement: they must be identical.
The same comparison run against a replacement that drops pyinfra's ``current_op_file_number``
must find a difference (so it can fail). The change as a patch for pyinfra
(docs/upstream/pyinfra-operation-order-frame-walk.patch) must apply to the pyinfra installed
here and give the same records.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from operations import planning
from tests.fake_hosts import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = """\
from pyinfra.connectors.fake import FakeConnector
from operations import backups
from tests.fake_hosts import FRESH, NAME, FakeDownloads, converged_responses, fresh_host

FakeConnector.get_file = FakeDownloads.get_file
instant = {"fake_delay": 0, "fake_delay_jitter": 0}
# No backup repository yet (its check says so: exit 3).
no_repository = backups.BackupRepositoryState(backups.default_schedule("@fake/letsencrypt"))
notebooks = [
    ("@fake/fresh", {**instant, "server_name": "fresh.test", "fake_responses": FRESH}),
    # A global argument in host data: each operation gets it (the same with and without the
    # project's lookup of host data).
    ("@fake/converged", {**instant, "server_name": NAME, "_timeout": 45, "fake_responses": converged_responses()}),
    ("@fake/letsencrypt", {**instant, "server_name": "le.example.org", "tls_mode": "letsencrypt",
                           "backup_repository": "/srv/backups/nb",
                           "fake_responses": fresh_host().answer(no_repository, ["exit=3"]).responses()}),
]
"""


UPSTREAM_PATCH = ROOT / "docs" / "upstream" / "pyinfra-operation-order-frame-walk.patch"


def recorded(mode: str, tmp_path: Path, *pyinfra_arguments: str, pythonpath: tuple[Path, ...] = ()) -> list:
    inventory = tmp_path / "inventory.py"
    inventory.write_text(INVENTORY)
    output = tmp_path / f"{mode}.json"
    env = dict(
        os.environ,
        JUPYTER_PASSWORD=PASSWORD,
        JUPYTER_BACKUP_PASSWORD="backup",
        PYTHONPATH=os.pathsep.join(str(path) for path in (*pythonpath, ROOT)),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.planning.recorded_run",
            mode,
            str(output),
            "--",
            "-y",
            "--json",
            *pyinfra_arguments,
            str(inventory),
            "deploy.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(output.read_text())


def by_host(records: list) -> list:
    """The records host by host, each host's in the order pyinfra planned them (hosts are
    planned side by side, so their interleaving differs from run to run)."""
    return sorted(records, key=lambda record: record[0])


def test_the_frame_walk_gives_every_operation_the_order_and_hash_pyinfra_gives_it(tmp_path):
    stock = by_host(recorded("stock", tmp_path))
    assert len(stock) > 100 and {host for host, *_ in stock} == {"@fake/fresh", "@fake/converged", "@fake/letsencrypt"}
    assert by_host(recorded("project", tmp_path)) == stock
    # The comparison catches a replacement that loses one of pyinfra's quirks.
    assert by_host(recorded("broken", tmp_path)) != stock


def patched_pyinfra(tmp_path: Path) -> Path:
    """A copy of the installed pyinfra (and its CLI, which sits beside it as in pyinfra's own
    tree, so ``PYINFRA_INSTALL_DIR`` covers it the same way) with the upstream patch applied."""
    source = tmp_path / "src"
    site = Path(planning.util.__file__).resolve().parents[2]
    for package in ("pyinfra", "pyinfra_cli"):
        shutil.copytree(site / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    # The patch's paths are pyinfra's repository's; its new test file is not part of the package.
    subprocess.run(
        ["git", "apply", "--include=src/pyinfra/*", str(UPSTREAM_PATCH)],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    return source


def test_the_upstream_patch_applies_to_this_pyinfra_and_plans_the_same(tmp_path):
    stock = by_host(recorded("stock", tmp_path))
    source = patched_pyinfra(tmp_path)
    assert "sys._getframe()" in (source / "pyinfra" / "api" / "util.py").read_text()
    assert by_host(recorded("upstream", tmp_path, pythonpath=(source,))) == stock


def test_it_replaces_only_pyinfra_3_10s_function(monkeypatch):
    planning.uninstall()
    try:
        monkeypatch.setattr(planning, "ORDER_SOURCE_SHA256", "0" * 64)
        monkeypatch.setattr(planning, "ARGUMENTS_SOURCE_SHA256", "0" * 64)
        monkeypatch.setitem(planning.POP_SOURCE_SHA256, "Host.__init__", "0" * 64)
        assert planning.install() == []
        assert planning.pyinfra_operation.get_operation_order_from_stack is planning.util.get_operation_order_from_stack
        assert planning.pyinfra_operation.pop_global_arguments is planning._original_pop_global_arguments
        monkeypatch.undo()
        assert planning.install() == ["operation_order", "all_global_arguments", "pop_global_arguments"]
        assert planning.pyinfra_operation.get_operation_order_from_stack is planning.operation_order
        for module in (planning.arguments, planning.pyinfra_deploy, planning.pyinfra_operation, planning.facts):
            assert module.pop_global_arguments is planning.pop_global_arguments
    finally:
        planning.install()


def test_global_arguments_are_worked_out_once_and_are_pyinfras():
    assert planning.all_global_arguments() == planning._original_all_global_arguments()
    assert planning.all_global_arguments() is not planning.all_global_arguments()  # a fresh list each call
