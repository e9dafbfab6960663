"""
    python bench/fake_fleet.py N [--parallel P]

The real CLI (``pyinfra -y INVENTORY deploy.py``, as users and CI run it) against N
simulated converged hosts on pyinfra's @fake connector, each command taking 50 ms; with
pyinfra's default parallelism, or ``--parallel P``. Prints wall time, peak memory of the
pyinfra process and the run's totals as JSON. Run by bench/run.py.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from operations import settings  # noqa: E402
from tests.fake_hosts import PASSWORD  # noqa: E402

# The inventory pyinfra loads: N hosts sharing one set of canned answers (tests/fake_hosts.py).
INVENTORY = """\
import sys
sys.path.insert(0, {root!r})
from pyinfra.connectors.fake import FakeConnector
from tests.fake_hosts import NAME, FakeDownloads, converged_responses

# The @fake connector downloads nothing: the password file comes from the canned answers.
FakeConnector.get_file = FakeDownloads.get_file
_responses = converged_responses()
notebooks = [
    (f"@fake/nb{{i}}", {{"server_name": NAME, "fake_delay": 0.05, "fake_delay_jitter": 0,
                       "fake_responses": _responses}})
    for i in range({size})
]
"""


def main(size: int, parallel: int | None) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        inventory = Path(directory) / "fleet_inventory.py"
        inventory.write_text(INVENTORY.format(root=str(ROOT), size=size))
        command = [sys.executable, "-m", "pyinfra", "-y", "--json", str(inventory), "deploy.py"]
        if parallel:
            command += ["--parallel", str(parallel)]
        started = time.monotonic()
        result = subprocess.run(
            command,
            cwd=ROOT,
            env=dict(os.environ, **{settings.PASSWORD_ENV: PASSWORD}),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"pyinfra failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    totals = json.loads(result.stdout)["results"]["totals"]
    return {
        "hosts": size,
        "parallel": parallel or "default",
        "seconds": seconds,
        "changed": totals["success"],
        "failed_hosts": totals["error"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("size", type=int)
    parser.add_argument("--parallel", type=int)
    args = parser.parse_args()
    print(json.dumps(main(args.size, args.parallel)))
