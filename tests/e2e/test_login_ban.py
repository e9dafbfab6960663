"""
Login ban (fail2ban) on deployed hosts, seen from distinct client addresses on the lab
bridge: an attacker, a user, a flooder (network namespaces this module makes), and this
machine itself, which every lab deployment lists in login_ban_ignore.

nb3 (Debian 13, ufw on) and nb6 (Debian 12, firewall off: nftables alone) are deployed
with a short login_ban_seconds and otherwise the defaults: 5 failures in 600 s.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.clients import ClientAddress
from smoke.client import Jupyter
from tests.e2e import login_traffic
from tests.e2e.login_traffic import reachable
from tests.e2e.scenario import BAN_SECONDS, FIGURES, PASSWORD, wait_until

BAN_HOSTS = ["nb3", "nb6"]
MAX_FAILURES = 5
ATTACKER, USER, FLOODER = "169.254.77.101", "169.254.77.102", "169.254.77.103"
# The user's cells and logins run for the whole scenario (ban, restart, unban).
SCENARIO_SECONDS = BAN_SECONDS + 45


def traffic(client: ClientAddress | None, *args: str, timeout: float = 120, nice: bool = False) -> dict:
    return login_traffic.run(client, *args, password=PASSWORD, timeout=timeout, nice=nice)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


@pytest.fixture(scope="module", autouse=True)
def _quiet(quiet):
    """The flood, burst and swarm tests compare the user's latency with a baseline: nothing of
    the background thread's (conftest.py) runs meanwhile."""


@pytest.fixture(scope="module")
def clients():
    with (
        ClientAddress("attacker", ATTACKER) as attacker,
        ClientAddress("user", USER) as user,
        ClientAddress("flood", FLOODER) as flooder,
    ):
        yield {"attacker": attacker, "user": user, "flooder": flooder}


def ban_scenario(deployment, ca: str, name: str, attacker: ClientAddress, user: ClientAddress) -> dict:
    url = f"https://{deployment.address(name)}/jupyter/"
    seen: dict = {"name": name}
    user_run = user.popen(
        login_traffic.command(
            "user", url, ca, "--seconds", str(SCENARIO_SECONDS), "--interval", "0.3", "--relogin-every", "4"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=login_traffic.environment(PASSWORD),
    )
    try:
        time.sleep(2)
        # This machine is in login_ban_ignore: twice the limit and it still gets in.
        ignored = traffic(None, "guess", url, ca, "--count", str(2 * MAX_FAILURES), "--interval", "0.1")
        seen["ignored_statuses"] = [a["status"] for a in ignored["attempts"]]
        # One failure short of the limit: not banned.
        first = traffic(attacker, "guess", url, ca, "--count", str(MAX_FAILURES - 1), "--interval", "0.1")
        time.sleep(3)
        seen["reachable_below_limit"] = reachable(attacker, url, ca)
        last = traffic(attacker, "guess", url, ca, "--count", "1")
        seen["attacker_statuses"] = [a["status"] for a in first["attempts"] + last["attempts"]]
        last_failure = last["attempts"][-1]["t"]
        banned_after = wait_until(lambda: not reachable(attacker, url, ca), 20)
        seen["ban_seconds_after_last_failure"] = None if banned_after is None else time.time() - last_failure
        seen["ignored_still_reachable"] = reachable(None, url, ca)
        # fail2ban's database brings the ban back after a restart.
        deployment.ssh(
            name,
            "systemctl restart fail2ban && for i in $(seq 50); do "
            "fail2ban-client status jupyter-login >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1",
        )
        # fail2ban lifts its bans when it stops and puts the ones still due back when its
        # jail starts again, with their original end.
        seen["banned_after_restart"] = wait_until(lambda: not reachable(attacker, url, ca), 10) is not None
        lifted = wait_until(lambda: reachable(attacker, url, ca), BAN_SECONDS + 30, step=0.5)
        seen["unban_seconds"] = None if lifted is None else time.time() - last_failure
    finally:
        out, err = user_run.communicate(timeout=SCENARIO_SECONDS + 60)
    assert user_run.returncode == 0, err[-2000:]
    seen["user"] = json.loads(out)
    return seen


@pytest.fixture(scope="module")
def scenarios(deployment, ca_files, clients):
    """The scenario on both hosts at once (its waits are the ban's own)."""
    with ThreadPoolExecutor(len(BAN_HOSTS)) as pool:
        futures = {
            name: pool.submit(ban_scenario, deployment, str(ca_files[name]), name, clients["attacker"], clients["user"])
            for name in BAN_HOSTS
        }
        results = {name: future.result() for name, future in futures.items()}
    for name, seen in results.items():
        ban = seen["ban_seconds_after_last_failure"]
        FIGURES[f"login ban {name}: ban after the 5th failure"] = "never" if ban is None else f"{ban:.1f} s"
        unban = seen["unban_seconds"]
        FIGURES[f"login ban {name}: lifted after"] = (
            "never" if unban is None else f"{unban:.1f} s (setting {BAN_SECONDS} s)"
        )
    return results


@pytest.mark.parametrize("name", BAN_HOSTS)
def test_wrong_passwords_up_to_the_limit_are_answered_and_the_next_connection_is_refused(scenarios, name):
    seen = scenarios[name]
    assert seen["attacker_statuses"] == [401] * MAX_FAILURES
    assert seen["reachable_below_limit"], f"banned after {MAX_FAILURES - 1} failures"
    assert seen["ban_seconds_after_last_failure"] is not None, "the attacker was never banned"
    assert seen["ban_seconds_after_last_failure"] < 10


@pytest.mark.parametrize("name", BAN_HOSTS)
def test_a_ban_survives_a_restart_of_fail2ban_and_lifts_after_login_ban_seconds(scenarios, name):
    seen = scenarios[name]
    assert seen["banned_after_restart"], "restarting fail2ban lifted the ban early"
    assert seen["unban_seconds"] is not None, "the ban never lifted"
    assert BAN_SECONDS - 2 <= seen["unban_seconds"] <= BAN_SECONDS + 20


@pytest.mark.parametrize("name", BAN_HOSTS)
def test_an_ignored_address_is_never_banned(scenarios, name):
    seen = scenarios[name]
    assert seen["ignored_statuses"] == [401] * (2 * MAX_FAILURES)
    assert seen["ignored_still_reachable"]


@pytest.mark.parametrize("name", BAN_HOSTS)
def test_the_user_logs_in_again_and_again_and_runs_cells_throughout(scenarios, name):
    user = scenarios[name]["user"]
    assert user["errors"] == []
    assert [login["status"] for login in user["logins"]] == [302] * len(user["logins"])
    assert len(user["logins"]) > MAX_FAILURES, "too few correct logins to show they never count"
    assert len(user["cells"]) >= 40 and all(cell["ok"] for cell in user["cells"])


def test_the_ban_is_on_the_web_ports_only(scenarios, deployment):
    """The nftables rule fail2ban made names 80 and 443 and nothing else (SSH stays open)."""
    rules = deployment.ssh("nb6", "nft list chain inet f2b-table f2b-chain").stdout
    assert "tcp dport { 80, 443 }" in rules or "tcp dport { http, https }" in rules, rules
    assert "22" not in rules and "ssh" not in rules


def test_switching_login_ban_off_removes_the_jails_and_their_bans_and_prints_no_address(
    deployment, ca_files, clients, scenarios
):
    name, attacker = "nb6", clients["attacker"]
    address, ca = deployment.address(name), str(ca_files[name])
    url = f"https://{address}/jupyter/"
    traffic(attacker, "guess", url, ca, "--count", str(MAX_FAILURES), "--interval", "0.1")
    assert wait_until(lambda: not reachable(attacker, url, ca), 20) is not None, "the attacker was not banned"
    try:
        off = deployment.pyinfra(overrides={name: {"login_ban": False}})
        assert off.returncode == 0, off.output[-3000:]
        assert sorted(off.changed()[address]) == [
            "Login ban | No login-ban action",
            "Login ban | No login-ban filter",
            "Login ban | No login-ban jails",
            "Login ban | Stop the login-ban jails and lift their bans",
        ]
        assert reachable(attacker, url, ca), "the ban outlived its jail"
        assert "f2b-table" not in deployment.ssh(name, "nft list tables").stdout
        # No jail: failures count for nothing.
        traffic(attacker, "guess", url, ca, "--count", str(2 * MAX_FAILURES), "--interval", "0.1")
        time.sleep(3)
        assert reachable(attacker, url, ca)
        again = deployment.pyinfra(overrides={name: {"login_ban": False}})
        assert again.returncode == 0 and again.totals["success"] == 0, again.changed()
    finally:
        on = deployment.pyinfra()
    assert on.returncode == 0, on.output[-3000:]
    for run in (off, again, on):
        assert ATTACKER not in run.output and "not the password" not in run.output
    # Switched on again, the jail reads back login_ban_window of Jupyter's log: the failures
    # made while it was off count, and ban the attacker again.
    assert wait_until(lambda: not reachable(attacker, url, ca), 20) is not None
    assert deployment.pyinfra().totals["success"] == 0


def cpu_seconds(deployment, name: str) -> float:
    """CPU time the Jupyter server process has used (where every password check runs)."""
    ticks = deployment.ssh(
        name,
        "pid=$(systemctl show -p MainPID --value jupyter); awk '{print $14 + $15}' /proc/$pid/stat; getconf CLK_TCK",
    ).stdout.split()
    return int(ticks[0]) / int(ticks[1])


def test_a_login_flood_is_banned_before_it_hurts_the_user(deployment, ca_files, clients, scenarios):
    """200 wrong passwords in 10 s from one address while the user runs cells."""
    name = "nb3"
    url, ca = f"https://{deployment.address(name)}/jupyter/", str(ca_files[name])
    user_run = clients["user"].popen(
        login_traffic.command("user", url, ca, "--seconds", "35", "--interval", "0.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=login_traffic.environment(PASSWORD),
    )
    try:
        time.sleep(10)
        cpu_before = cpu_seconds(deployment, name)
        flood = traffic(clients["flooder"], "flood", url, ca, "--count", "200", "--seconds", "10", "--workers", "4")
        cpu_after = cpu_seconds(deployment, name)
    finally:
        out, err = user_run.communicate(timeout=120)
    assert user_run.returncode == 0, err[-2000:]
    user = json.loads(out)
    posts = flood["posts"]
    started, ended = posts[0]["t"], posts[-1]["t"] + 1
    answered = [p for p in posts if isinstance(p["status"], int)]

    def latencies(cells):
        return [c["seconds"] * 1000 for c in cells]

    # The first cells of a fresh kernel are slow whatever else happens: left out.
    before = latencies([c for c in user["cells"][5:] if c["t"] < started])
    during = latencies([c for c in user["cells"] if started <= c["t"] <= ended])
    after = latencies([c for c in user["cells"] if c["t"] > ended])
    assert user["errors"] == [] and all(c["ok"] for c in user["cells"]), user["errors"]
    assert before and during and after, (len(user["cells"]), started, ended, user["cells"][:1], user["cells"][-1:])
    figures = {
        k: (statistics.median(v), percentile(v, 99), len(v))
        for k, v in (("before", before), ("during", during), ("after", after))
    }
    cpu = f"{cpu_after - cpu_before:.2f} s"
    FIGURES["login flood: posts answered before the ban"] = (
        f"{len(answered)} of {len(posts)} (statuses {sorted({p['status'] for p in answered})})"
    )
    FIGURES["login flood: Jupyter server CPU during the flood"] = cpu
    for key, (p50, p99, count) in figures.items():
        FIGURES[f"login flood: user cell {key}"] = f"p50 {p50:.0f} ms, p99 {p99:.0f} ms ({count} cells)"
    assert user["errors"] == [] and all(c["ok"] for c in user["cells"])
    assert len(answered) < 60, "the flood was not cut off by the ban"
    assert figures["during"][1] <= 3 * figures["before"][1], figures


BYSTANDER = "169.254.77.104"
# Four addresses that send a burst of wrong passwords at the same moment.
BURSTERS = [f"169.254.77.{n}" for n in range(111, 115)]
# A notebook cell writing lines shaped like Jupyter's warning for a wrong password, naming
# another address, into the unit's journal: to the kernel's own stderr (the server's) and
# through logger, as a notebook or a terminal can.
FORGE = """
import datetime, os, subprocess
for _ in range(8):
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    line = f"[W {stamp} ServerApp] 401 POST /jupyter/login (@{address}) 50.00ms referer=None"
    os.write(2, (line + "\\n").encode())
    subprocess.run(["logger", "-t", "python", f"--id={os.getpid()}", line], check=True)
print("forged")
"""


@pytest.mark.parametrize("name", BAN_HOSTS)
def test_lines_a_notebook_forges_get_nobody_banned(deployment, ca_files, scenarios, name):
    """The jail reads Apache's log of the login form, not the journal the notebook user writes to."""
    url, ca = f"https://{deployment.address(name)}/jupyter/", str(ca_files[name])
    with ClientAddress("bystander", BYSTANDER) as bystander:
        assert reachable(bystander, url, ca)
        jupyter = Jupyter(url, ca_file=ca)
        jupyter.login(PASSWORD)
        assert "forged\n" in jupyter.execute(FORGE.replace("{address}", BYSTANDER))
        forged = deployment.ssh(name, f"journalctl -u jupyter --since '-5 min' --no-pager | grep -cF '(@{BYSTANDER})'")
        assert int(forged.stdout) >= 8, "the forged lines are not in the unit's journal"
        # Real failures ban within about a second (see above): ten seconds and still reachable.
        assert wait_until(lambda: not reachable(bystander, url, ca), 10) is None, f"{BYSTANDER} was banned"


def test_a_burst_from_many_addresses_leaves_the_user_and_the_server_answering(deployment, ca_files, scenarios):
    """200 wrong passwords at once from four addresses: beyond a few waiting checks Jupyter
    answers 503 at once, so Apache's workers stay free (api/status within 1 s throughout)
    and the user's cells go on."""
    name = "nb3"
    url, ca = f"https://{deployment.address(name)}/jupyter/", str(ca_files[name])
    with contextlib.ExitStack() as stack:
        bursters = [stack.enter_context(ClientAddress(f"burst{i}", ip)) for i, ip in enumerate(BURSTERS)]
        user_address = stack.enter_context(ClientAddress("burst-user", "169.254.77.115"))
        user_run = user_address.popen(
            login_traffic.command("user", url, ca, "--seconds", "40", "--interval", "0.1", "--status-every", "0.25"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=login_traffic.environment(PASSWORD),
        )
        time.sleep(12)
        with ThreadPoolExecutor(len(bursters)) as pool:
            bursts = list(pool.map(lambda c: traffic(c, "burst", url, ca, "--count", "50", nice=True), bursters))
        out, err = user_run.communicate(timeout=120)
    assert user_run.returncode == 0, err[-2000:]
    user = json.loads(out)
    posts = sorted((p for b in bursts for p in b["posts"]), key=lambda p: p["t"])
    # As the flood test (issue 15): the ten seconds from the burst on.
    started = posts[0]["t"]
    ended = started + 10
    statuses = Counter(p["status"] for p in posts)
    refused = [p for p in posts if p["status"] == 503]
    FIGURES["login burst (4 x 50 at once): answers"] = ", ".join(
        f"{status}: {count}" for status, count in sorted(statuses.items(), key=str)
    )
    FIGURES["login burst: slowest refusal (503)"] = (
        f"{max(p['seconds'] for p in refused) * 1000:.0f} ms" if refused else "none refused"
    )
    FIGURES["login burst: slowest answer"] = f"{max(p['seconds'] for p in posts):.1f} s"
    slowest = max(s["seconds"] for s in user["statuses"])
    FIGURES["login burst: slowest api/status of the user's run"] = f"{slowest * 1000:.0f} ms"
    retried = sum(1 for s in user["statuses"] if s.get("retried"))
    FIGURES["login burst: api/status sent again (kept-alive connection closed by Apache)"] = (
        f"{retried} of {len(user['statuses'])}"
    )
    before = [c["seconds"] * 1000 for c in user["cells"][5:] if c["t"] < started]
    during = [c["seconds"] * 1000 for c in user["cells"] if started <= c["t"] <= ended]
    FIGURES["login burst: user cells before / in the 10 s from it"] = (
        f"p50 {statistics.median(before):.0f} / {statistics.median(during):.0f} ms, "
        f"p99 {percentile(before, 99):.0f} / {percentile(during, 99):.0f} ms, "
        f"slowest {max(during):.0f} ms ({len(during)} cells)"
    )
    assert user["errors"] == [] and all(c["ok"] for c in user["cells"]), user["errors"]
    assert all(s["status"] == 200 for s in user["statuses"]), Counter(str(s["status"]) for s in user["statuses"])
    assert slowest < 1.0, f"api/status took {slowest:.1f} s during the burst"
    # The cap answered most guesses at once: 503 with Retry-After, no password checked.
    assert len(refused) > 100 and all(p["retry_after"] == "5" for p in refused), statuses
    assert before and during and statistics.median(during) <= 1.5 * statistics.median(before)


# A swarm of 16 clients: twelve IPv4 addresses and four of one IPv6 /64 (which the login
# queue and the ban treat as one client), and an address of that /64 that never posts.
SWARM_IPV4 = [f"169.254.77.{n}" for n in range(120, 132)]
SWARM_IPV6 = [f"fd77:77:0:64::{n}" for n in range(1, 5)]
SWARM_IPV6_QUIET = "fd77:77:0:64::99"
SWARM_USER = "169.254.77.133"
SWARM_LOGINS = 20
# A class: 30 people logging in at once, each from an address of their own.
CLASS = [f"169.254.77.{n}" for n in range(150, 180)]


def host_ipv6(deployment, name: str) -> str:
    return deployment.ssh(
        name, "ip -6 -o addr show dev eth0 scope global | awk '{print $4}' | cut -d/ -f1"
    ).stdout.strip()


def test_a_swarm_from_16_addresses_leaves_every_login_of_a_user_within_two_seconds(deployment, ca_files, scenarios):
    """Wrong passwords without pause from 16 addresses (4 of them in one IPv6 /64) while a user
    logs in 20 times: each client waits its turn for a password check, so the user's login
    waits one check per flooding client at most, never a whole queue of them, and is never
    refused; the /64 is counted and banned as one client."""
    name = "nb3"
    url, ca = f"https://{deployment.address(name)}/jupyter/", str(ca_files[name])
    ipv6 = host_ipv6(deployment, name)
    with (
        ClientAddress("swarm", SWARM_IPV4[0], more=SWARM_IPV4[1:] + SWARM_IPV6 + [SWARM_IPV6_QUIET]) as swarm,
        ClientAddress("swarm-user", SWARM_USER) as user,
    ):
        flood = swarm.popen(
            login_traffic.command("swarm", url, ca, "--sources", ",".join(SWARM_IPV4 + SWARM_IPV6))
            + ["--seconds", "20", "--workers", "2", "--connect-to6", ipv6],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=login_traffic.environment(PASSWORD),
        )
        try:
            time.sleep(1)
            seen = traffic(user, "logins", url, ca, "--count", str(SWARM_LOGINS), "--interval", "0.2")
        finally:
            out, err = flood.communicate(timeout=120)
        assert flood.returncode == 0, err[-2000:]
        posts = json.loads(out)["posts"]
        # The /64 as one client: an address of it that never posted is refused too.
        quiet = login_traffic.run(
            swarm, "probe", url, ca, "--timeout", "2", "--sources", SWARM_IPV6_QUIET, "--connect-to6", ipv6
        )
    logins = seen["logins"]
    statuses = Counter(str(p["status"]) for p in posts)
    slowest = max(login["seconds"] for login in logins)
    FIGURES["login swarm (16 addresses, 20 s): the user's slowest login"] = f"{slowest:.2f} s of {len(logins)}"
    FIGURES["login swarm: answers to the swarm"] = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
    assert [login["status"] for login in logins] == [302] * SWARM_LOGINS, logins
    assert slowest <= 2.0, [round(login["seconds"], 2) for login in logins]
    # The swarm did reach the checks (its wrong passwords were answered 401) until banned.
    assert statuses["401"] >= MAX_FAILURES, statuses
    ipv6_failures = sum(1 for p in posts if ":" in p["source"] and p["status"] == 401)
    assert ipv6_failures >= MAX_FAILURES, posts
    assert not quiet["reached"], "an address of the banned /64 still reached the site"


def test_a_class_logging_in_at_once_is_never_turned_away(deployment, ca_files, scenarios):
    """30 people with the right password from 30 addresses in the same second: every one is
    signed in within 5 s, none answered 503."""
    name = "nb6"
    url, ca = f"https://{deployment.address(name)}/jupyter/", str(ca_files[name])
    with ClientAddress("class", CLASS[0], more=CLASS[1:]) as room:
        seen = traffic(room, "class", url, ca, "--sources", ",".join(CLASS))
    logins = seen["logins"]
    slowest = max(login["seconds"] for login in logins)
    FIGURES["a class of 30 logging in at once: slowest"] = f"{slowest:.2f} s"
    assert len(logins) == len(CLASS) and {login["source"] for login in logins} == set(CLASS)
    assert [login["status"] for login in logins] == [302] * len(CLASS), Counter(str(x["status"]) for x in logins)
    assert slowest <= 5.0, sorted(round(login["seconds"], 2) for login in logins)
