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


def test_under_the_hub_only_roots_connections_are_answered(tmp_path):
    """A person's server shares loopback with every other person's: who connected is the owner
    of the peer's socket, as /proc/net/tcp lists it."""
    activity = load()
    table = tmp_path / "tcp"
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    row = "   {n}: {local} {remote} 01 00000000:00000000 00:00000000 00000000  {uid}        0 {inode} 1\n"
    server, root_peer, person_peer = ("127.0.0.1", 40111), ("127.0.0.1", 51000), ("127.0.0.1", 51001)
    table.write_text(
        header
        + row.format(n=0, local="0100007F:9CAF", remote="00000000:0000", uid=1001, inode=1)
        + row.format(n=1, local="0100007F:C738", remote="0100007F:9CAF", uid=0, inode=2)
        + row.format(n=2, local="0100007F:C739", remote="0100007F:9CAF", uid=1002, inode=3)
    )
    assert activity._tcp_address(*server) == "0100007F:9CAF"
    assert activity.peer_uid(server, root_peer, str(table)) == 0
    assert activity.peer_uid(server, person_peer, str(table)) == 1002
    assert activity.peer_uid(server, ("127.0.0.1", 1), str(table)) is None
    assert activity.peer_uid(server, root_peer, str(tmp_path / "missing")) is None
