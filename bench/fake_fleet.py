"""
    python -m bench.fake_fleet N [--parallel P] [--shards K]

The real CLI (``pyinfra -y INVENTORY deploy.py``, as users and CI run it) against N
simulated converged hosts on pyinfra's @fake connector, each command taking 50 ms; with
pyinfra's default parallelism, or ``--parallel P``; with ``--shards K``, K such processes side
by side, each over its slice of the hosts (``JUPYTER_SHARD``, shards.py), as
``scripts/ci-deploy --shards K`` runs them. Prints wall time, peak memory of a pyinfra
process and the run's totals as JSON. Run by ``python -m bench.run``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from operations import settings
from tests.fake_hosts import PASSWORD

ROOT = Path(__file__).resolve().parents[1]

# The inventory pyinfra loads: N hosts sharing one set of canned answers (tests/fake_hosts.py).
INVENTORY = """\
import os
from pyinfra.connectors.fake import FakeConnector
from shards import parse, slice_of
from tests.fake_hosts import NAME, FakeDownloads, converged_responses

# The @fake connector downloads nothing: the password file comes from the canned answers.
FakeConnector.get_file = FakeDownloads.get_file
_responses = converged_responses()
_index, _count = parse(os.environ.get("JUPYTER_SHARD", "1/1"))
notebooks = [
    (f"@fake/nb{{i}}", {{"server_name": NAME, "fake_delay": 0.05, "fake_delay_jitter": 0,
                       "fake_responses": _responses}})
    for i in range({size})
    if slice_of(f"@fake/nb{{i}}", _count) == _index
]
"""


def main(size: int, parallel: int | None, shards: int = 1) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        inventory = Path(directory) / "fleet_inventory.py"
        inventory.write_text(INVENTORY.format(root=str(ROOT), size=size))
        command = [sys.executable, "-m", "pyinfra", "-y", "--json", str(inventory), "deploy.py"]
        if parallel:
            command += ["--parallel", str(parallel)]
        started = time.monotonic()
        processes = [
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=dict(os.environ, **{settings.PASSWORD_ENV: PASSWORD, "JUPYTER_SHARD": f"{index}/{shards}"}),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for index in range(1, shards + 1)
        ]
        outputs = [process.communicate(timeout=1800) for process in processes]
        seconds = time.monotonic() - started
    totals = {"success": 0, "error": 0}
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"pyinfra failed (exit {process.returncode}):\n{stderr[-3000:]}")
        for key in totals:
            totals[key] += json.loads(stdout)["results"]["totals"][key]
    return {
        "hosts": size,
        "parallel": parallel or "default",
        "shards": shards,
        "seconds": seconds,
        "changed": totals["success"],
        "failed_hosts": totals["error"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("size", type=int)
    parser.add_argument("--parallel", type=int)
    parser.add_argument("--shards", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(main(args.size, args.parallel, args.shards)))
