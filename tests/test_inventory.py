"""The repository's inventory.py: hosts from the file or JUPYTER_HOSTS, never silently none."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load(env):
    code = "import runpy; print(runpy.run_path('inventory.py')['notebooks'])"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True)


def test_hosts_from_the_environment_join_the_group():
    result = load({"JUPYTER_HOSTS": "nb1.example.org, 203.0.113.7,"})
    assert result.returncode == 0
    assert result.stdout.strip() == "['nb1.example.org', '203.0.113.7']"


def test_no_hosts_at_all_is_an_error_that_says_what_to_do():
    result = load({})
    assert result.returncode != 0
    assert "inventory.py lists no hosts" in result.stderr and "JUPYTER_HOSTS" in result.stderr
