"""What each probe (``snapshot.Probe``) runs on a host and what it makes of the answer, from
JSON fixtures.

Each folder under tests/probes is ``<module>.<ProbeClass>`` in ``operations/``; each file in
it is one case: the probe's arguments (``args``), its exact command, the lines a host prints
(``output``) and what ``parse`` must make of them (``answer``).
"""

import json
from importlib import import_module
from pathlib import Path

import pytest

from operations import snapshot

TESTS_BASE = Path(__file__).parent / "probes"
CASES = sorted(TESTS_BASE.glob("*/*.json"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_probe(case):
    data = json.loads(case.read_text())
    module, name = case.parent.name.split(".")
    probe = getattr(import_module(f"operations.{module}"), name)(**data["args"])
    assert isinstance(probe, snapshot.Probe)
    assert probe.command() == data["command"]
    # As JSON holds it (a tuple is a list there).
    assert json.loads(json.dumps(probe.parse(data["output"]))) == data["answer"]
