"""Custom facts, from JSON fixtures (pyinfra's own test style, via pyinfra-testing).

Each folder under tests/facts is ``<module>.<FactClass>`` in ``operations/``; each
file in it is one case: the arguments, the exact command, the output a host gives
and the fact that output must produce.
"""

from pathlib import Path

from pyinfra_testing.facts import make_fact_tests

TESTS_BASE = Path(__file__).parent / "facts"

for _fact_path in sorted(d.name for d in TESTS_BASE.iterdir() if d.is_dir()):
    locals()[_fact_path] = make_fact_tests("operations", _fact_path, TESTS_BASE / _fact_path)
