"""files/jupyter_activity.py without a server: the packages it lists and how it counts a
terminal as busy. (Its answers from a real server: tests/e2e/test_restarts.py.)"""

import importlib.util
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILE = ROOT / "files" / "jupyter_activity.py"


def load():
    spec = importlib.util.spec_from_file_location("jupyter_activity_under_test", FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_server_packages_are_the_roots_and_everything_they_require(monkeypatch):
    activity = load()
    # This environment has pyinfra, not a server: its tree stands in for the server's.
    monkeypatch.setattr(activity, "SERVER_PACKAGES", ("pyinfra",))
    versions = activity.server_versions()
    assert versions["pyinfra"] == metadata.version("pyinfra")
    assert versions["jinja2"] == metadata.version("jinja2")  # required by pyinfra
    assert versions["markupsafe"] == metadata.version("markupsafe")  # required by jinja2
    # Only what the tree requires (optional extras left out), each with its installed version.
    assert "pytest" not in versions and "libpass" not in versions
    assert all(metadata.version(name) == version for name, version in versions.items())


def test_run_as_a_script_it_prints_the_installed_versions():
    out = subprocess.run([sys.executable, "-I", str(FILE)], capture_output=True, text=True, check=True).stdout
    lines = [line.split() for line in out.splitlines()]
    assert all(len(words) == 3 and words[0] == "installed" for words in lines)


def test_a_terminal_is_busy_while_its_shell_has_a_child():
    activity = load()
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        deadline = 50
        while activity.child_processes(shell.pid) == 0 and deadline:
            subprocess.run(["sleep", "0.1"])
            deadline -= 1
        assert activity.child_processes(shell.pid) == 1
    finally:
        shell.kill()
        shell.wait()
    assert activity.child_processes(shell.pid) == 0
