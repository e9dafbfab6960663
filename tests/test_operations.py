"""Custom operations, from JSON fixtures (pyinfra's own test style, via pyinfra-testing).

Each folder under tests/operations is ``<module>.<operation>`` in ``operations/``; each
file is one case: the facts a host reports, the arguments, and the exact commands the
operation must yield -- none at all (with the no-op message) when the host is converged.
"""

from pathlib import Path

from pyinfra_testing.operations import make_operation_tests

TESTS_BASE = Path(__file__).parent / "operations"

for _op_path in sorted(d.name for d in TESTS_BASE.iterdir() if d.is_dir()):
    locals()[_op_path] = make_operation_tests("operations", _op_path, TESTS_BASE / _op_path)
