"""
    python -m tests.planning.recorded_run MODE OUTPUT -- PYINFRA_ARGUMENTS...

pyinfra's real command line, recording for every operation of every host what pyinfra's
planning gave it: ``[host, names, op order, op hash]``, and before it the global arguments it
got: ``[host, "global arguments", [[name, value], ...]]`` (JSON, to OUTPUT). MODE is the
operation order the run uses: ``project`` (operations.planning's frame walk, as every run of
the deploy has it), ``stock`` (pyinfra's own ``inspect.stack`` one), ``broken`` (the frame
walk without pyinfra's ``current_op_file_number``: a replacement that must be caught) or
``upstream`` (a pyinfra with docs/upstream/'s patch applied, first on ``PYTHONPATH``: the
project's replacement must then stand aside).
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import json
import sys

from operations import planning

pyinfra_operation = importlib.import_module("pyinfra.api.operation")


def broken(state):
    return planning.operation_order(state)[1:]


def main() -> None:
    mode, output, separator, *arguments = sys.argv[1:]
    assert separator == "--"
    # As config.py does for every run (it calls planning.install, which each mode decides here).
    planning.install()
    if mode == "stock":
        planning.uninstall()
    elif mode == "broken":
        pyinfra_operation.get_operation_order_from_stack = broken
    elif mode == "upstream":
        assert pyinfra_operation.get_operation_order_from_stack is not planning.operation_order
        assert "sys._getframe()" in inspect.getsource(pyinfra_operation.get_operation_order_from_stack)
    # config.py's call, when pyinfra reads it below, leaves the mode as it is now.
    planning.install = lambda: []
    records = []
    solve = pyinfra_operation.solve_operation_consistency

    def recording(names, state, host):
        op_order, op_hash = solve(names, state, host)
        records.append([host.name, sorted(names), list(op_order), op_hash])
        return op_order, op_hash

    pyinfra_operation.solve_operation_consistency = recording
    pop = pyinfra_operation.pop_global_arguments

    def recording_arguments(state, host, kwargs):
        found, keys = pop(state, host, kwargs)
        plain = (str, int, float, bool, type(None))
        values = [[key, value if isinstance(value, plain) else type(value).__name__] for key, value in found.items()]
        records.append([host.name, "global arguments", sorted(values), sorted(keys)])
        return found, keys

    pyinfra_operation.pop_global_arguments = recording_arguments
    atexit.register(lambda: json.dump(records, open(output, "w")))
    sys.argv = ["pyinfra", *arguments]
    from pyinfra_cli.main import main as pyinfra_main

    pyinfra_main()


if __name__ == "__main__":
    main()
