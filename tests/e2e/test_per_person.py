"""
Each person their own server (per_person_servers) on a real host: nb8 under JupyterHub behind
Apache, people signing in at the lab's LemonLDAP::NG (lab/idp.py) in headless Chromium.

nb8 is first deployed as a single server (password), while the provider installs, and a
notebook is saved there. Then per_person_servers goes on: alice (let in as a member of the
group timelords, and a hub admin) and carol (let in by her address) each get a server of
their own, under their own account; bob is not let in. Last, per_person_servers goes off
again, and the single server serves its notebook as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from lab import standin
from lab.idp import PEOPLE
from lab.memory import MemoryCap
from operations import people
from operations.hub import layout
from smoke.client import Jupyter, _run_cell, execute_request
from tests.e2e.browser import chromium_signing_in_at
from tests.e2e.scenario import (
    FIGURES,
    MEMORY_CAP_BYTES,
    OIDC_CLIENT_ID,
    OIDC_CLIENT_SECRET,
    PASSWORD,
    ROOT,
    RUNAWAY,
    TIMINGS,
    Deployment,
)

NAME = "nb8"
BASE_PATH = "/jupyter/"
ENV = {"JUPYTER_OIDC_CLIENT_SECRET": OIDC_CLIENT_SECRET}
ALLOWED = ["group:timelords", PEOPLE["carol"].email]
SHARED = "/srv/course"
KEPT = "kept-from-the-single-server.ipynb"
# Short, so the test sees a server culled: the least the setting allows.
CULL_AFTER = 60
HUB_RESTART = "Per-person servers (JupyterHub) | JupyterHub running with its current config"


def account(who: str) -> str:
    return people.unix_name(PEOPLE[who].email)


def hub_name(who: str) -> str:
    return people.hub_name(PEOPLE[who].email)


@pytest.fixture(scope="module")
def hub(lab, standin_installer, oidc_provider, tmp_path_factory):
    """nb8 as a single server (while the provider installs), a notebook saved there; then
    per_person_servers on, and a rerun."""
    path, digest = standin_installer
    workdir = tmp_path_factory.mktemp("hub")
    address = lab.hosts[NAME].ip
    provider = oidc_provider.provider
    per_person = {
        "auth": "oidc",
        "oidc_issuer": provider.issuer,
        "oidc_client_id": OIDC_CLIENT_ID,
        "oidc_allowed": ALLOWED,
        "oidc_ca_bundle": str(provider.ca),
        "per_person_servers": True,
        "hub_admins": [PEOPLE["alice"].email],
        "shared_data_dir": SHARED,
        "cull_idle_servers_after": CULL_AFTER,
        "memory_limit": "1G",
    }
    deployment = Deployment(lab, workdir, lab.url(standin.url_path(path)), digest, names=[NAME])
    single = deployment.runs["single"] = deployment.pyinfra()
    assert single.returncode == 0, single.output[-6000:]
    cert = workdir / "nb8.pem"
    cert.write_text(deployment.ssh(NAME, "cat /etc/ssl/certs/jupyter-apache.crt").stdout)
    deployment.cert = str(cert)
    deployment.base = f"https://{address}{BASE_PATH}"
    client = Jupyter(deployment.base, ca_file=deployment.cert)
    client.login(PASSWORD)
    client.api("PUT", f"contents/{KEPT}", json={"type": "notebook", "content": notebook("print('kept')")})
    oidc_provider.ready().resolve_on(lab.hosts[NAME])
    deployment.data = {NAME: per_person}
    for run in ("first", "second"):
        deployment.runs[run] = deployment.pyinfra(env=ENV)
        TIMINGS[f"per-person servers: {run} run (nb8)"] = deployment.runs[run].seconds
    if deployment.runs["first"].returncode != 0:
        journal = deployment.ssh(NAME, f"journalctl --no-pager -n 80 -u {layout.HUB_UNIT} -u {layout.PROXY_UNIT}")
        pytest.fail(deployment.runs["first"].output[-4000:] + "\n" + journal.stdout[-6000:])
    deployment.provider = provider
    return deployment


def notebook(source: str) -> dict:
    cell = {"cell_type": "code", "source": source, "metadata": {}, "outputs": [], "execution_count": None}
    kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    return {"cells": [cell], "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def browser(hub, tmp_path_factory):
    with chromium_signing_in_at(hub.provider, tmp_path_factory.mktemp("hub-browser-home"), NAME, hub.cert) as chromium:
        yield chromium


def sign_in(browser, hub, who: str, lands: str | None = None):
    """A new browser context signed in at the provider as ``who``: the page where that lands
    (``lands``: a URL pattern to wait for), with ``seconds`` from opening the site to there."""
    person = PEOPLE[who]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(120_000)
    page = context.new_page()
    started = time.monotonic()
    page.goto(hub.base)
    page.wait_for_url(f"{hub.provider.issuer}/**")
    page.fill("input[name=user]", person.login)
    page.fill("input[name=password]", person.password)
    page.click("button[type=submit]")
    try:
        page.wait_for_url(lands or f"{hub.base}**")
        page.wait_for_load_state("load")
    except Exception:
        journal = hub.ssh(
            NAME,
            f"journalctl --no-pager -u {layout.HUB_UNIT} -u 'jupyter-*' | grep -v idle-culler | tail -n 80",
            check=False,
        )
        pytest.fail(f"{who} never reached {lands}: at {page.url}\n{page.content()[:1500]}\n{journal.stdout[-5000:]}")
    page.seconds = time.monotonic() - started
    return page


def server_of(browser, hub, who: str):
    """``who`` signed in, in their own server's JupyterLab: (page, a script's client for their server)."""
    page = sign_in(browser, hub, who, lands=f"{hub.base}user/{hub_name(who)}/lab**")
    base = f"{hub.base}user/{hub_name(who)}/"
    client = Jupyter(base, ca_file=hub.cert, timeout=60)
    for cookie in page.context.cookies(base):
        # The hub's own _xsrf (path /jupyter/hub/) would clash with the server's.
        if cookie["name"] == "_xsrf" and not base.endswith(cookie["path"].rstrip("/") + "/"):
            continue
        client.session.cookies.set(cookie["name"], cookie["value"], domain=cookie["domain"], path=cookie["path"])
    return page, client


def unit_state(hub, who: str) -> str:
    unit = layout.SERVER_UNIT_TEMPLATE.format(USERNAME=hub_name(who))
    return hub.ssh(NAME, f"systemctl is-active {unit}", check=False).stdout.strip()


def round_trips(client, rounds: int = 20) -> str:
    """A cell's round trip (``pass``: request sent to reply and idle) in one kernel: median, slowest."""
    kernel = client.start_kernel()
    ws = client.websocket(f"api/kernels/{kernel}/channels")
    try:
        _run_cell(ws, "pass", 60)
        seconds = []
        for _ in range(rounds):
            started = time.monotonic()
            _run_cell(ws, "pass", 60)
            seconds.append(time.monotonic() - started)
    finally:
        ws.close()
        client.api("DELETE", f"kernels/{kernel}")
    seconds.sort()
    return f"median {seconds[len(seconds) // 2] * 1000:.1f} ms, slowest {seconds[-1] * 1000:.1f} ms ({rounds} cells)"


def idle_server_bytes(hub, who: str) -> int:
    """The proportional memory (PSS) of every process of ``who``'s account: their idle server."""
    command = (
        f"for pid in $(pgrep -u {account(who)}); do cat /proc/$pid/smaps_rollup 2>/dev/null; done"
        " | awk '/^Pss:/ {kib += $2} END {print kib}'"
    )
    return int(hub.ssh(NAME, command).stdout.strip()) * 1024


def test_switching_on_keeps_the_single_servers_notebooks_and_a_rerun_changes_nothing(hub):
    first = hub.runs["first"].output
    assert "its notebooks stay in /srv/jupyter" in first, first[-3000:]
    assert hub.ssh(NAME, f"test -s /srv/jupyter/{KEPT}", check=False).returncode == 0
    assert hub.ssh(NAME, "systemctl is-active jupyter.service", check=False).stdout.strip() == "inactive"
    assert hub.runs["second"].returncode == 0, hub.runs["second"].output[-3000:]
    assert hub.runs["second"].changed().get(hub.address(NAME), []) == []


def test_two_people_each_run_their_own_server_as_their_own_account(browser, hub):
    alice_page, alice = server_of(browser, hub, "alice")
    FIGURES["per-person: sign-in to a running server, first time (site -> provider -> lab)"] = (
        f"{alice_page.seconds:.2f} s"
    )
    carol_page, carol = server_of(browser, hub, "carol")
    processes = hub.ssh(NAME, "ps -eo user:32,args | grep [j]upyterhub-singleuser").stdout
    assert {line.split()[0] for line in processes.splitlines()} == {account("alice"), account("carol")}, processes
    # carol's server as it is once started, before any kernel: what each idle person costs.
    idle = idle_server_bytes(hub, "carol")
    FIGURES["per-person: memory of an idle person's server (PSS)"] = (
        f"{idle / 2**20:.0f} MiB: {2**31 // idle} idle people in 2 GiB"
    )
    assert alice.execute("import getpass; print(getpass.getuser())").strip() == account("alice")
    assert carol.execute("import getpass; print(getpass.getuser())").strip() == account("carol")
    # Each server in the people's slice, which has a cap of its own (people_memory_limit).
    for who in ("alice", "carol"):
        unit = layout.SERVER_UNIT_TEMPLATE.format(USERNAME=hub_name(who))
        assert hub.ssh(NAME, f"systemctl show -P Slice {unit}").stdout.strip() == layout.SLICE
        assert hub.ssh(NAME, f"systemctl show -P MemoryMax {unit}").stdout.strip() == str(2**30)
    cap = hub.ssh(NAME, f"systemctl show -P MemoryMax {layout.SLICE}").stdout.strip()
    assert cap.isdigit() and int(cap) < int(hub.ssh(NAME, "free -b | awk 'NR == 2 {print $2}'").stdout), cap
    # Homes 0700, their own.
    for who in ("alice", "carol"):
        mode = hub.ssh(NAME, f"stat -c '%a %U' /home/{account(who)}").stdout.split()
        assert mode == ["700", account(who)]
    # A cell of carol's cannot see alice's home, the hub's state or its secrets, nor write there.
    probe = f"""
import os
seen = []
for path in ("/home/{account("alice")}", "{layout.STATE_DIR}/jupyterhub.sqlite", "{layout.PROXY_ENV}",
             "{layout.CLIENT_SECRET}"):
    try:
        open(path).read() if not os.path.isdir(path) else os.listdir(path)
        seen.append("READ " + path)
    except OSError as error:
        seen.append(type(error).__name__)
try:
    open("/home/{account("alice")}/planted.txt", "w").write("x")
    seen.append("WROTE")
except OSError as error:
    seen.append(type(error).__name__)
print(" ".join(seen))
"""
    answer = carol.execute(probe)
    assert "READ" not in answer and "WROTE" not in answer, answer
    assert hub.ssh(NAME, f"test -e /home/{account('alice')}/planted.txt", check=False).returncode != 0
    # The shared data: both read it through their link; alice (a hub admin) writes it, carol cannot.
    assert "written by alice" not in carol.execute(f"import os; print(os.listdir('{layout.SHARED_LINK}'))")
    alice.execute(f"open('{layout.SHARED_LINK}/notes.txt', 'w').write('written by alice')")
    assert carol.execute(f"print(open('{layout.SHARED_LINK}/notes.txt').read())").strip() == "written by alice"
    refused = carol.execute(
        f"""
try:
    open('{layout.SHARED_LINK}/carol.txt', 'w').write('x')
    print('WROTE')
except OSError as error:
    print(type(error).__name__)
"""
    )
    assert refused.strip() in ("PermissionError", "OSError"), refused
    FIGURES["per-person: a kernel round trip through Apache, the proxy and alice's server"] = round_trips(alice)
    for page in (alice_page, carol_page):
        page.context.close()


def test_a_person_not_allowed_gets_403_and_no_account(browser, hub):
    page = sign_in(browser, hub, "bob", lands=f"{hub.base}hub/**")
    assert "403" in page.content() or "Forbidden" in page.content(), page.content()[:2000]
    assert hub.ssh(NAME, f"getent passwd {account('bob')}", check=False).returncode != 0
    page.context.close()


def test_hub_admins_see_everyone_and_others_cannot_reach_the_admin_page(browser, hub):
    alice_page, _ = server_of(browser, hub, "alice")
    FIGURES["per-person: sign-in to a running server, later (site -> provider -> lab)"] = f"{alice_page.seconds:.2f} s"
    alice_page.goto(f"{hub.base}hub/admin")
    alice_page.get_by_text(hub_name("carol")).first.wait_for()
    alice_page.get_by_text(hub_name("alice")).first.wait_for()
    carol_page, _ = server_of(browser, hub, "carol")
    response = carol_page.goto(f"{hub.base}hub/admin")
    assert response.status == 403, response.status
    for page in (alice_page, carol_page):
        page.context.close()


CAP_BYTES = MEMORY_CAP_BYTES
STEADY = "import time\nfor i in range(30):\n    time.sleep(1)\nprint('carol done')"


def test_a_runaway_cell_of_one_person_kills_only_their_kernel(browser, hub, lab):
    """Under a real memory cap around nb8 (the cap a lab host's own MemoryMax cannot give):
    alice's cell allocates past it; the kernel killed is hers, carol's cell runs on, and Apache
    and the hub keep answering."""
    alice_page, alice = server_of(browser, hub, "alice")
    carol_page, carol = server_of(browser, hub, "carol")
    alice_kernel, carol_kernel = alice.start_kernel(), carol.start_kernel()
    alice_ws = alice.websocket(f"api/kernels/{alice_kernel}/channels")
    carol_ws = carol.websocket(f"api/kernels/{carol_kernel}/channels")
    _run_cell(alice_ws, "pass", 30)
    _run_cell(carol_ws, "pass", 30)
    hub_api = f"{hub.base}hub/api/"
    answered, failures = [0], []

    def poll_hub():
        while not done.is_set():
            try:
                requests.get(hub_api, verify=hub.cert, timeout=5).raise_for_status()
                answered[0] += 1
            except Exception as error:
                failures.append(repr(error))
            time.sleep(0.3)

    done = threading.Event()
    outcome = {}

    def carol_cell():
        try:
            outcome["carol"] = _run_cell(carol_ws, STEADY, 120)
        except Exception as error:
            outcome["carol"] = repr(error)

    with MemoryCap(lab.hosts[NAME], CAP_BYTES) as cap:
        [kernel_pid] = cap.find(f"kernel-{alice_kernel}.json")
        assert cap.limit == CAP_BYTES and cap.holds(kernel_pid), "the memory cap is not in place: not allocating"
        polling, steady = threading.Thread(target=poll_hub), threading.Thread(target=carol_cell)
        polling.start()
        steady.start()
        _, message = execute_request(RUNAWAY)
        alice_ws.send(message)
        states, deadline = [], time.monotonic() + 90
        while time.monotonic() < deadline and not {"restarting", "dead"} & set(states):
            reply = json.loads(alice_ws.recv())
            if reply["msg_type"] == "status":
                states.append(reply["content"]["execution_state"])
        steady.join(timeout=150)
        done.set()
        polling.join()
        peak, kills = cap.peak_bytes, cap.oom_kills
    FIGURES["per-person runaway: peak vs cap"] = (
        f"{peak / 2**20:.0f} MiB of {CAP_BYTES / 2**20:.0f} MiB, {kills} kill(s)"
    )
    assert "restarting" in states or "dead" in states, states
    assert outcome.get("carol", "").strip() == "carol done", outcome
    assert kills >= 1 and failures == [] and answered[0] > 0, (kills, failures[:3])
    for ws in (alice_ws, carol_ws):
        ws.close()
    for page in (alice_page, carol_page):
        page.context.close()


def test_a_hub_restart_by_a_deploy_leaves_a_running_cell_and_its_websocket_alone(browser, hub):
    page, client = server_of(browser, hub, "alice")
    kernel = client.start_kernel()
    ws = client.websocket(f"api/kernels/{kernel}/channels")
    outcome = {}

    def run_cell():
        try:
            outcome["output"] = _run_cell(ws, "import time\ntime.sleep(40)\nprint('survived')", 200)
        except Exception as error:  # reported on the test's thread
            outcome["error"] = error

    running = threading.Thread(target=run_cell)
    running.start()
    time.sleep(3)
    # A deploy that changes the hub's config (the idle time) restarts the hub.
    changed = hub.pyinfra(overrides={NAME: {"cull_idle_servers_after": CULL_AFTER + 30}}, env=ENV)
    assert changed.returncode == 0, changed.output[-3000:]
    assert any(op.startswith(HUB_RESTART) for op in changed.changed()[hub.address(NAME)]), changed.changed()
    running.join(timeout=200)
    assert outcome.get("output", "").strip() == "survived", outcome
    ws.close()
    client.api("DELETE", f"kernels/{kernel}")
    back = hub.pyinfra(env=ENV)
    assert back.returncode == 0, back.output[-3000:]
    page.context.close()


def test_an_idle_server_is_culled_and_a_busy_one_is_not(browser, hub):
    busy_page, busy = server_of(browser, hub, "alice")
    idle_page, idle = server_of(browser, hub, "carol")
    kernel = busy.start_kernel()
    ws = busy.websocket(f"api/kernels/{kernel}/channels")
    outcome = {}
    # Silent for longer than the idle time: only the busy kernel says the server is in use.
    seconds = CULL_AFTER * 3

    def run_cell():
        try:
            outcome["output"] = _run_cell(ws, f"import time\ntime.sleep({seconds})\nprint('not culled')", seconds + 60)
        except Exception as error:
            outcome["error"] = error

    running = threading.Thread(target=run_cell)
    running.start()
    idle_page.context.close()
    started = time.monotonic()
    while unit_state(hub, "carol") == "active" and time.monotonic() - started < CULL_AFTER * 3:
        time.sleep(5)
    culled_after = time.monotonic() - started
    assert unit_state(hub, "carol") != "active", "carol's idle server was never culled"
    FIGURES["per-person: an idle server culled after (cull_idle_servers_after 60 s)"] = f"{culled_after:.0f} s"
    assert hub.ssh(NAME, f"test -d /home/{account('carol')}", check=False).returncode == 0
    running.join(timeout=seconds + 90)
    assert outcome.get("output", "").strip() == "not culled", outcome
    assert unit_state(hub, "alice") == "active"
    ws.close()
    busy.api("DELETE", f"kernels/{kernel}")
    busy_page.context.close()


def test_the_smoke_check_starts_its_accounts_server_through_apache_runs_a_cell_and_stops_it(hub, lab):
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_PASSWORD"}
    result = subprocess.run(
        [sys.executable, "-m", "smoke", "--ca-file", hub.cert, "--ssh-key", str(lab.key)]
        + ["--ssh-known-hosts", str(lab.known_hosts), hub.base],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"ok    {hub.base}") and "server start" in line and "cell" in line, line
    FIGURES["per-person: smoke check (check account's server started, a cell, stopped)"] = line
    # Its server is stopped again; the token never reached the output.
    check_unit = layout.SERVER_UNIT_TEMPLATE.format(USERNAME=layout.CHECK_NAME)
    assert hub.ssh(NAME, f"systemctl is-active {check_unit}", check=False).stdout.strip() != "active"
    token = hub.ssh(NAME, f"cat {layout.SMOKE_TOKEN}").stdout.strip()
    assert token and token not in result.stdout + result.stderr


# Back to how nb8 started: the single server, signed into with the password.
BACK_TO_SINGLE = {"per_person_servers": False, "auth": "password"}


def test_switching_off_serves_the_single_server_again_and_keeps_every_home(hub):
    off = hub.pyinfra(overrides={NAME: BACK_TO_SINGLE}, env=ENV)
    assert off.returncode == 0, off.output[-6000:]
    assert f"/home/{account('alice')}" in off.output and f"/home/{account('carol')}" in off.output
    for who in ("alice", "carol"):
        assert hub.ssh(NAME, f"test -d /home/{account(who)}", check=False).returncode == 0
        assert unit_state(hub, who) != "active"
    for unit in (layout.HUB_UNIT, layout.PROXY_UNIT):
        state = hub.ssh(NAME, f"systemctl is-active {unit}", check=False).stdout.strip()
        assert state == "inactive", f"{unit} is {state} after it was stopped"
    client = Jupyter(hub.base, ca_file=hub.cert)
    client.login(PASSWORD)
    assert client.api("GET", f"contents/{KEPT}").json()["name"] == KEPT
    FIGURES["single server on nb8: a kernel round trip through Apache"] = round_trips(client)
    again = hub.pyinfra(overrides={NAME: BACK_TO_SINGLE}, env=ENV)
    assert again.returncode == 0 and again.changed().get(hub.address(NAME), []) == [], again.output[-3000:]


def test_uninstall_removes_the_hub_and_keeps_every_persons_home(hub):
    """Last: uninstall.py (without uninstall_purge) on the host that ran the hub."""
    gone = hub.pyinfra(script="uninstall.py", overrides={NAME: BACK_TO_SINGLE}, env=ENV)
    assert gone.returncode == 0, gone.output[-4000:]
    for who in ("alice", "carol"):
        home = f"/home/{account(who)}"
        assert f"{home} (the home of {account(who)}" in gone.output, gone.output[-4000:]
        assert hub.ssh(NAME, f"test -d {home} && getent passwd {account(who)}", check=False).returncode == 0
    for path in (layout.CONFIG_DIR, layout.PREFIX, layout.HUB_UNIT_FILE, layout.PROXY_UNIT_FILE, layout.SLICE_FILE):
        assert hub.ssh(NAME, f"test -e {path}", check=False).returncode != 0, f"{path} is still there"
    assert hub.ssh(NAME, f"getent passwd {layout.CHECK_ACCOUNT}", check=False).returncode != 0
    # The hub's database (who signed in) is kept with the homes.
    assert hub.ssh(NAME, f"test -d {layout.STATE_DIR}", check=False).returncode == 0
