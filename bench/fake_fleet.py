"""
    python bench/fake_fleet.py N

The whole deploy.py against N simulated converged hosts on pyinfra's @fake connector,
each command taking 50 ms; prints wall time, peak memory of this (control) process and
the number of changed operations as JSON. Run by bench/run.py.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import resource  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pyinfra.api import Config, Inventory, State  # noqa: E402
from pyinfra.api.connect import connect_all  # noqa: E402
from pyinfra.api.deploy import add_deploy  # noqa: E402
from pyinfra.api.operations import run_ops  # noqa: E402
from test_fake_deploy import NAME, PASSWORD, converged_responses  # noqa: E402

from operations import settings  # noqa: E402


def main(size: int) -> dict:
    import os

    os.chdir(ROOT)
    os.environ[settings.PASSWORD_ENV] = PASSWORD
    responses = converged_responses()
    hosts = [
        (f"@fake/nb{i}", {"server_name": NAME, "fake_delay": 0.05, "fake_delay_jitter": 0, "fake_responses": responses})
        for i in range(size)
    ]
    started = time.monotonic()
    # check_for_changes=False: what `pyinfra -y` (and CI) runs; with it pyinfra would also
    # evaluate every operation once more while planning, one host after another.
    state = State(Inventory((hosts, {})), Config(PARALLEL=size), check_for_changes=False)
    connect_all(state)
    add_deploy(state, lambda: runpy.run_path(str(ROOT / "deploy.py")))
    run_ops(state)
    seconds = time.monotonic() - started
    changed = sum(
        1
        for host in state.inventory
        for op_hash in state.get_op_order()
        if (op := state.ops[host].get(op_hash)) and op.operation_meta.is_complete() and op.operation_meta.did_change()
    )
    return {
        "hosts": size,
        "seconds": seconds,
        "changed": changed,
        "failed_hosts": len(state.failed_hosts),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
