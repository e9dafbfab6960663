"""
The repository's inventory.py: static hosts, JUPYTER_HOSTS, or running Linodes by tag
(through the official SDK, against a local double of the Linode API v4).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.linode_api import LinodeApi, instance

ROOT = Path(__file__).resolve().parent.parent


def load(env):
    code = "import runpy; print(runpy.run_path('inventory.py')['notebooks'])"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def pyinfra_inventory(env, *args):
    """`pyinfra inventory.py debug-inventory`: what pyinfra itself makes of the file (no connection)."""
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "inventory.py", "debug-inventory", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hosts_from_the_environment_join_the_group():
    result = load({"JUPYTER_HOSTS": "nb1.example.org, 203.0.113.7,"})
    assert result.returncode == 0
    assert result.stdout.strip() == "['nb1.example.org', '203.0.113.7']"
    assert "inventory: 0 hosts from the static list in inventory.py, 2 from JUPYTER_HOSTS" in result.stderr


def test_no_hosts_at_all_is_an_error_that_says_what_to_do():
    result = load({})
    assert result.returncode != 0
    assert (
        "inventory: no hosts" in result.stderr and "JUPYTER_HOSTS" in result.stderr and "LINODE_TOKEN" in result.stderr
    )
    assert "Traceback" not in result.stderr


# Seven Linodes: four are running with the tag and a public IPv4 somewhere in their list.
LINODES = [
    instance(1, "nb-1", ipv4=("203.0.113.11", "192.168.130.5")),
    instance(2, "nb2.example.org", tags=("jupyter", "prod"), ipv4=("192.168.140.2", "198.51.100.12")),
    instance(3, "web-1", tags=("web",), ipv4=("203.0.113.13",)),
    instance(4, "nb-3", status="offline", ipv4=("203.0.113.14",)),
    instance(5, "nb-4", ipv4=("192.168.150.1",)),
    instance(6, "nb-5", ipv4=("203.0.113.16",)),
    instance(7, "lab_box", tags=("jupyter", "lab"), ipv4=("203.0.113.17",)),
]
EXPECTED = [
    ("lab_box", {"ssh_hostname": "203.0.113.17", "server_name": "203.0.113.17", "linode_id": 7}),
    ("nb-1", {"ssh_hostname": "203.0.113.11", "server_name": "203.0.113.11", "linode_id": 1}),
    ("nb-5", {"ssh_hostname": "203.0.113.16", "server_name": "203.0.113.16", "linode_id": 6}),
    # A label that is a DNS name is the server name (for its certificate and Host check).
    ("nb2.example.org", {"ssh_hostname": "198.51.100.12", "server_name": "nb2.example.org", "linode_id": 2}),
]


@pytest.mark.parametrize("honour_filter", [True, False], ids=["api-filters", "client-filters"])
def test_running_linodes_with_the_tag_across_pages(honour_filter):
    with LinodeApi(LINODES, honour_filter=honour_filter) as api:
        result = load({"LINODE_TOKEN": "good-token", "LINODE_API_URL": api.url, "JUPYTER_HOSTS": "ignored.example.org"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(EXPECTED)
    assert (
        "inventory: 4 running Linodes tagged 'jupyter' from the Linode API; "
        "left out: nb-3 (offline), nb-4 (no public IPv4)"
    ) in result.stderr
    pages = [int(r["query"].get("page", ["1"])[0]) for r in api.requests]
    expected_pages = 3 if honour_filter else 4
    assert pages == list(range(1, expected_pages + 1))
    assert all(
        r["auth"] == "Bearer good-token" and json.loads(r["filter"]) == {"tags": "jupyter"} for r in api.requests
    )


def test_another_tag_from_the_environment():
    with LinodeApi(LINODES) as api:
        result = load({"LINODE_TOKEN": "good-token", "LINODE_API_URL": api.url, "LINODE_TAG": "lab"})
    assert result.returncode == 0, result.stderr
    assert eval(result.stdout)[0][0] == "lab_box" and len(eval(result.stdout)) == 1


def test_label_works_with_limit_in_pyinfra():
    """pyinfra's own --limit code (the CLI's, which matches host names) picks a Linode by label."""
    code = (
        "from pyinfra.api import State; from pyinfra.context import ctx_state\n"
        "from pyinfra_cli.inventory import make_inventory; from pyinfra_cli.cli import _apply_inventory_limit\n"
        "with ctx_state.use(State()):\n"
        "    inventory = make_inventory('inventory.py', cwd='.', group_data_directories=['group_data'])\n"
        "for host in _apply_inventory_limit(inventory, ['nb-5', 'nb2.*']):\n"
        "    print(host.name, host.data.ssh_hostname, host.data.server_name)\n"
    )
    with LinodeApi(LINODES) as api:
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": os.environ["PATH"], "LINODE_TOKEN": "good-token", "LINODE_API_URL": api.url},
        )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [
        "nb-5 203.0.113.16 203.0.113.16",
        "nb2.example.org 198.51.100.12 nb2.example.org",
    ]


@pytest.mark.parametrize(
    "case,expected",
    [
        ("bad-token", "answered 401: Invalid Token (check LINODE_TOKEN: it needs the Linodes read scope)"),
        ("unreachable", "cannot reach the Linode API at http://127.0.0.1:9/v4: ConnectionError"),
        ("no-tagged", "no running Linode is tagged 'nothing-has-this'"),
    ],
)
def test_api_problems_end_with_one_clear_line_not_a_traceback(case, expected):
    with LinodeApi(LINODES) as api:
        env = {"LINODE_TOKEN": "good-token", "LINODE_API_URL": api.url}
        if case == "bad-token":
            env["LINODE_TOKEN"] = "revoked-token"
        elif case == "unreachable":
            env["LINODE_API_URL"] = "http://127.0.0.1:9/v4"
        else:
            env["LINODE_TAG"] = "nothing-has-this"
        for result in (load(env), pyinfra_inventory(env)):
            assert result.returncode != 0
            assert expected in result.stderr
            assert "Traceback" not in result.stderr + result.stdout
            assert "revoked-token" not in result.stderr + result.stdout


def test_the_slices_of_a_fleet_hold_each_host_once_and_keep_it_when_the_fleet_changes():
    hosts = [f"nb{i}.example.org" for i in range(40)]
    slices = []
    for index in (1, 2, 3):
        result = load({"JUPYTER_HOSTS": ",".join(hosts), "JUPYTER_SHARD": f"{index}/3"})
        assert result.returncode == 0, result.stderr
        slices.append(eval(result.stdout))  # the list inventory.py printed
        assert f"inventory: shard {index}/3: {len(slices[-1])} of the 40 hosts" in result.stderr
    assert sorted(sum(slices, [])) == sorted(hosts) and all(slices)
    # The same host stays in its slice whatever else the fleet holds.
    fewer = load({"JUPYTER_HOSTS": ",".join(reversed(hosts[::2])), "JUPYTER_SHARD": "2/3"})
    assert sorted(eval(fewer.stdout)) == sorted(h for h in slices[1] if h in hosts[::2])


@pytest.mark.parametrize("spec", ["0/2", "3/2", "2", "1/0", "a/b", "1/2\n"])
def test_a_slice_that_does_not_exist_is_refused_in_one_line(spec):
    result = load({"JUPYTER_HOSTS": "nb1.example.org", "JUPYTER_SHARD": spec})
    assert result.returncode != 0 and "JUPYTER_SHARD" in result.stderr and "1 <= I <= K" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_slice_is_nothing_to_do_not_a_failure():
    result = pyinfra_inventory({"JUPYTER_HOSTS": "nb1.example.org", "JUPYTER_SHARD": "2/9"})
    assert result.returncode == 0 and "shard 2/9: 0 of the 1 hosts" in result.stderr
