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
import subprocess
import threading
import time
from urllib.parse import urlencode

import pytest
import requests

from lab import standin
from lab.clients import ClientAddress
from lab.config import BRIDGE_IP
from lab.idp import PEOPLE
from lab.memory import MemoryCap
from lab.network import wait_for_port
from operations import people, settings
from operations.hub import layout
from operations.jupyter import layout as server_layout
from operations.passwords import hash_password
from smoke.client import Jupyter, _run_cell, execute_request
from tests.e2e import login_traffic
from tests.e2e.browser import chromium_signing_in_at
from tests.e2e.scenario import (
    FIGURES,
    MEMORY_CAP_BYTES,
    OIDC_CLIENT_ID,
    OIDC_CLIENT_SECRET,
    PASSWORD,
    RUNAWAY,
    TIMINGS,
    Deployment,
    StatusPoller,
    audited,
    ci_deploy,
    run_smoke,
    wait_until,
)

NAME = "nb8"
BASE_PATH = "/jupyter/"
ENV = {"JUPYTER_OIDC_CLIENT_SECRET": OIDC_CLIENT_SECRET, "JUPYTER_BACKUP_PASSWORD": "lab backup password 7734"}
ALLOWED = ["group:timelords", PEOPLE["carol"].email]
SHARED = "/srv/course"
KEPT = "kept-from-the-single-server.ipynb"
# Short, so the test sees a server culled: the least the setting allows.
CULL_AFTER = 60
HUB_RESTART = "Per-person servers (JupyterHub) | JupyterHub running with its current config"
PEOPLE_RESTARTED = "Per-person servers (JupyterHub) | People's servers restarted"
# An older release of the server than the stand-in's (as test_restarts.py pins for the single server).
OTHER_SERVER = "2.14.1"
CELL_SECONDS = 45


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


def hub_journal(hub) -> str:
    """The hub's and people's servers' last lines (for a failure's message)."""
    journal = hub.ssh(
        NAME,
        f"journalctl --no-pager -u {layout.HUB_UNIT} -u 'jupyter-*' | grep -v idle-culler | tail -n 60",
        check=False,
    )
    return "\n" + journal.stdout[-6000:]


def unit_of(who: str) -> str:
    return layout.server_unit(hub_name(who))


def unit_state(hub, who: str) -> str:
    return hub.ssh(NAME, f"systemctl is-active {unit_of(who)}", check=False).stdout.strip()


def main_pid(hub, who: str) -> str:
    return hub.ssh(NAME, f"systemctl show -P MainPID {unit_of(who)}").stdout.strip()


def running_versions(hub, who: str) -> dict[str, str]:
    """What ``who``'s server says it runs, asked as the deploy's restarts ask it: by root, on
    loopback, at the port its main process holds."""
    answer = hub.ssh(
        NAME,
        f"{server_layout.RESTART_SCRIPT} --unit {unit_of(who)} --activity-path {server_layout.ACTIVITY_PATH} answer",
    ).stdout
    return {words[1]: words[2] for words in map(str.split, answer.splitlines()) if words[:1] == ["running"]}


def audited_server(audit: str, who: str) -> list[str]:
    """The lines the audit shows under ``who``'s server (its packages and their advisories)."""
    lines = audit.splitlines()
    start = lines.index(f"      {hub_name(who)}'s server:") + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith(" " * 8)), len(lines))
    return [line.strip() and line[6:] for line in lines[start:end]]


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
for path in ("/home/{account("alice")}", "{layout.DATABASE}", "{layout.PROXY_ENV}",
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


COURSE = "course-101"
GIT_PORT = 9418
COURSE_NOTEBOOK = "week1.ipynb"


@pytest.fixture(scope="module")
def course_repository(tmp_path_factory):
    """The lab's own git server: a bare repository with one notebook, served by git's daemon on
    the lab's bridge (git's own protocol: nbgitpuller clones shallow, which git's plain HTTP
    cannot serve), never the internet."""
    served = tmp_path_factory.mktemp("git")
    work = served / "work"
    (work / COURSE_NOTEBOOK).parent.mkdir(parents=True)
    (work / COURSE_NOTEBOOK).write_text(json.dumps(notebook("print('week 1')")))
    git = ["git", "-c", "user.name=Lecturer", "-c", "user.email=lecturer@example.org"]
    for command in (
        [*git, "init", "-q", "-b", "main", str(work)],
        [*git, "-C", str(work), "add", "."],
        [*git, "-C", str(work), "commit", "-q", "-m", "week 1"],
        [*git, "clone", "-q", "--bare", str(work), str(served / f"{COURSE}.git")],
    ):
        subprocess.run(command, check=True, capture_output=True)
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={served}", f"--listen={BRIDGE_IP}"]
        + [f"--port={GIT_PORT}", str(served)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(BRIDGE_IP, GIT_PORT, 15)
        yield f"git://{BRIDGE_IP}:{GIT_PORT}/{COURSE}.git"
    finally:
        daemon.terminate()
        daemon.wait(timeout=15)


def test_a_course_link_pulls_the_repository_into_a_persons_home(browser, hub, course_repository):
    """nbgitpuller: an instructor's link (through the hub, to whoever follows it) clones the
    course into the person's own home, as them, and opens its notebook."""
    page, _ = server_of(browser, hub, "carol")
    link = {
        "repo": course_repository,
        "branch": "main",
        "targetpath": COURSE,
        "urlpath": f"lab/tree/{COURSE}/{COURSE_NOTEBOOK}",
    }
    query = urlencode(link)
    started = time.monotonic()
    page.goto(f"{hub.base}hub/user-redirect/git-pull?{query}")
    try:
        page.wait_for_url(f"{hub.base}user/{hub_name('carol')}/lab/tree/{COURSE}/{COURSE_NOTEBOOK}**")
    except Exception:
        pytest.fail(f"the course link never opened the notebook: at {page.url}\n{page.content()[:2000]}")
    FIGURES["per-person: a course link (nbgitpuller) pulled and opened"] = f"{time.monotonic() - started:.2f} s"
    pulled = f"/home/{account('carol')}/{COURSE}/{COURSE_NOTEBOOK}"
    owner = hub.ssh(NAME, f"stat -c %U {pulled}", check=False)
    assert owner.stdout.strip() == account("carol"), owner.stdout + owner.stderr
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
    # Their kernels end with the test (alice's, restarted after the kill, is otherwise left).
    alice.api("DELETE", f"kernels/{alice_kernel}")
    carol.api("DELETE", f"kernels/{carol_kernel}")
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
    server_pid = main_pid(hub, "alice")
    # A deploy that changes the hub's config alone (who may sign in) restarts the hub, and no
    # person's server.
    changed = hub.pyinfra(overrides={NAME: {"oidc_allowed": [*ALLOWED, "dave@example.org"]}}, env=ENV)
    assert changed.returncode == 0, changed.output[-3000:]
    ops = changed.changed()[hub.address(NAME)]
    assert any(op.startswith(HUB_RESTART) for op in ops), ops
    assert not any(op.startswith(PEOPLE_RESTARTED) for op in ops), ops
    running.join(timeout=200)
    assert outcome.get("output", "").strip() == "survived", outcome
    assert main_pid(hub, "alice") == server_pid
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


def test_what_peoples_servers_run_reaches_each_of_them_when_nothing_of_theirs_is_busy(browser, hub, lab):
    """A change to people's servers' settings, then to their packages (pip_packages pins
    jupyter_server to another release) while alice's cell runs: an idle server restarts in
    the run; alice's waits, her cell finishes, and her server restarts once idle, with the
    release; each says it runs it. A rerun owes nothing. The memory display shows each
    person's own limit."""
    # 1. The idle time (the servers' activity interval comes from it; long, so that no server
    #    is culled from here on): alice's idle server restarts in the run.
    page, _ = server_of(browser, hub, "alice")
    page.context.close()
    settings = hub.data[NAME]
    settings["cull_idle_servers_after"] = 3600
    before = main_pid(hub, "alice")
    first = hub.pyinfra(env=ENV)
    assert first.returncode == 0, first.output[-4000:] + hub_journal(hub)
    said = "People's servers restarted (nothing busy)"
    [restarted_line] = [line for line in first.output.splitlines() if said in line]
    assert hub_name("alice") in restarted_line, first.output[-3000:]
    assert main_pid(hub, "alice") != before
    # 2. Both signed in; alice's cell runs while the distribution's server package changes.
    alice_page, alice = server_of(browser, hub, "alice")
    carol_page, carol = server_of(browser, hub, "carol")
    for client in (alice, carol):
        assert client.api("GET", "metrics/v1").json()["limits"]["memory"]["rss"] == 2**30
    # Another person cannot ask alice's server what is busy (root alone may).
    port = hub.ssh(NAME, f"{server_layout.RESTART_SCRIPT} --unit {unit_of('alice')} port").stdout.strip()
    asked = carol.execute(
        "import urllib.request\ntry:\n"
        f"    print(urllib.request.urlopen('http://127.0.0.1:{port}{server_layout.ACTIVITY_PATH}').status)\n"
        "except Exception as error:\n    print(type(error).__name__, getattr(error, 'code', ''))"
    )
    assert asked.split() == ["HTTPError", "404"], asked
    running_before = running_versions(hub, "alice")["jupyter-server"]
    assert running_before != OTHER_SERVER
    kernel = alice.start_kernel()
    ws = alice.websocket(f"api/kernels/{kernel}/channels")
    outcome = {}

    def run_cell():
        try:
            outcome["output"] = _run_cell(ws, f"import time\ntime.sleep({CELL_SECONDS})\nprint('finished')", 200)
            outcome["ended"] = time.monotonic()
        except Exception as error:
            outcome["error"] = error

    running = threading.Thread(target=run_cell)
    running.start()
    time.sleep(2)
    alice_pid, carol_pid = main_pid(hub, "alice"), main_pid(hub, "carol")
    settings["pip_packages"] = [f"jupyter_server=={OTHER_SERVER}"]
    started = time.monotonic()
    update = hub.pyinfra(env=ENV)
    deployed = time.monotonic()
    assert update.returncode == 0, update.output[-4000:] + hub_journal(hub)
    assert f"{hub_name('carol')}'s server owes a restart: " in update.output, update.output[-3000:]
    assert f"jupyter-server {running_before} -> {OTHER_SERVER}" in update.output, update.output[-3000:]
    assert f"People's servers restarted (nothing busy): 1: {hub_name('carol')}" in update.output
    assert f"{hub_name('alice')}: 1 kernel busy; it happens when they are idle" in update.output
    assert main_pid(hub, "carol") != carol_pid and main_pid(hub, "alice") == alice_pid
    assert running_versions(hub, "carol")["jupyter-server"] == OTHER_SERVER
    # A rerun while alice's restart waits owes nothing more.
    again = hub.pyinfra(env=ENV)
    assert again.returncode == 0 and again.changed().get(hub.address(NAME), []) == [], again.output[-3000:]
    # The audit meanwhile: the distribution (the check account's fresh server runs what is
    # installed) and each person's server, with what is installed instead while it waits.
    began = time.monotonic()
    code, audit = audited(hub.base, hub.cert, lab=lab)
    FIGURES["per-person: smoke --audit while alice's restart waits"] = f"{time.monotonic() - began:.1f} s"
    assert code == 1 and audit.startswith("FAIL  "), audit
    alice_runs = f"jupyter-server {running_before} running ({OTHER_SERVER} installed: the owed restart applies it)"
    alice_audit, carol_audit = audited_server(audit, "alice"), audited_server(audit, "carol")
    assert f"  {alice_runs}" in alice_audit and f"  jupyter-server {OTHER_SERVER} running" in carol_audit, audit
    assert [line.split()[1] for line in carol_audit if "ADVISORY" in line] == ["PYSEC-STANDIN-0001"], audit
    assert not [line for line in alice_audit if "ADVISORY" in line], audit
    # The stand-in advisory for the older release fails the host, for the distribution and carol.
    assert f"{hub_name('carol')}'s server: PYSEC-STANDIN-0001" in audit, audit
    assert f"{hub_name('alice')}'s server: PYSEC" not in audit
    assert outcome.get("output") is None, "alice's cell ended before the audit: nothing was waiting"
    running.join(timeout=200)
    assert outcome.get("output", "").strip() == "finished", outcome
    # Her server restarts once nothing has been busy for a minute (its timer looks every 15 s),
    # and answers again (while the hub stops and starts it, it has no main process, then a new one).
    runs = {}
    while time.monotonic() - outcome["ended"] < 150:
        if main_pid(hub, "alice") not in (alice_pid, "0") and (runs := running_versions(hub, "alice")):
            break
        time.sleep(2)
    restarted = time.monotonic()
    assert runs, "alice's server was never restarted once idle"
    assert runs["jupyter-server"] == OTHER_SERVER
    FIGURES["per-person: a deploy to the last person's server restarted (alice's 45 s cell, then idle 60 s)"] = (
        f"{restarted - started:.0f} s (deploy {deployed - started:.0f} s, cell ended to restart "
        f"{restarted - outcome['ended']:.0f} s)"
    )
    ws.close()
    # Each signs in again and lands in their restarted server.
    for page in (alice_page, carol_page):
        page.context.close()
    for who in ("alice", "carol"):
        page, client = server_of(browser, hub, who)
        assert client.execute("import jupyter_server; print(jupyter_server.__version__)").strip() == OTHER_SERVER
        page.context.close()
    last = hub.pyinfra(env=ENV)
    assert last.returncode == 0 and last.changed().get(hub.address(NAME), []) == [], last.output[-3000:]
    # How long a person's server is away while the hub restarts it (stopped, started, ready).
    began = time.monotonic()
    said = hub.ssh(NAME, f"{layout.RESTART_SERVER_SCRIPT} {unit_of('carol')}").stdout.strip()
    FIGURES["per-person: a person's server restarted through the hub (away for)"] = f"{time.monotonic() - began:.1f} s"
    assert said == f"restarted {hub_name('carol')}'s server"


BACKUPS = "/srv/backups/people"
# Written as each person (runuser): a notebook, a name a shell gets wrong, a directory alice
# later turns into a link to /etc (the trap: a restore as root would write through it).
RESTORE_FOLDER = "restore-test"
ALICE_FILES = {
    "analysis.ipynb": json.dumps(notebook("print(1)")),
    "data dir/odd 'name' $HOME [1] é.txt": "odd\n",
    "acc-trap/hostname": "alice's own hostname\n",
}


def as_person(hub, who: str, script: str) -> str:
    """``script`` (Python) run on the host as ``who``'s account, in their home."""
    return hub.ssh(
        NAME,
        f"cd /home/{account(who)} && runuser -u {account(who)} -- python3 -I - <<'EOF'\n{script}\nEOF\n",
    ).stdout


def write_as(hub, who: str, files: dict[str, str]) -> None:
    as_person(
        hub,
        who,
        "import json, os\n"
        f"for path, text in json.loads({json.dumps(json.dumps(files))}).items():\n"
        f"    path = os.path.join({RESTORE_FOLDER!r}, path)\n"
        "    os.makedirs(os.path.dirname(path), exist_ok=True)\n"
        "    open(path, 'w').write(text)\n",
    )


def folder_hashes(hub, who: str) -> dict[str, str]:
    out = hub.ssh(
        NAME,
        f"cd /home/{account(who)}/{RESTORE_FOLDER} && find . -type f -print0 | sort -z | xargs -0 -r sha256sum",
    ).stdout
    return {line[66:].removeprefix("./"): line[:64] for line in out.splitlines()}


def etc_digest(hub) -> str:
    """Every entry of /etc (type, owner, mode, size, time, link) and every file's sha256."""
    return hub.ssh(
        NAME,
        "{ find /etc -xdev -printf '%p %y %u:%g %m %s %T@ %l\\n'; "
        "find /etc -xdev -type f -print0 | xargs -0 sha256sum; } | sort | sha256sum",
    ).stdout


def test_one_persons_home_is_restored_as_that_person_and_nobody_elses_is_touched(hub):
    """Backups on a per-person host hold every home, the hub's database and the shared data;
    restore.py with restore_person brings back alice's deleted notebook as alice (her server
    stopped by the hub meanwhile, started again after), never through the link she planted,
    and carol's files and server stay as they are."""
    hub.data[NAME]["backup_repository"] = BACKUPS
    deployed = hub.pyinfra(env=ENV)
    assert deployed.returncode == 0, deployed.output[-4000:]
    again = hub.pyinfra(env=ENV)
    assert again.returncode == 0 and again.changed().get(hub.address(NAME), []) == [], again.output[-3000:]
    write_as(hub, "alice", ALICE_FILES)
    write_as(hub, "carol", {"notes.md": "carol's first notes\n"})
    hub.ssh(NAME, f"echo 'course data' > {SHARED}/syllabus.md")
    alice_before = folder_hashes(hub, "alice")
    assert sorted(alice_before) == sorted(ALICE_FILES)
    started = time.monotonic()
    backed_up = hub.ssh(NAME, "systemctl start jupyter-backup.service", check=False)
    FIGURES["per-person: a backup of every home, the hub's state and the shared data"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    assert backed_up.returncode == 0, hub.ssh(NAME, "journalctl -u jupyter-backup -n 30 --no-pager").stdout

    # Everything beside: both homes, the shared data and a database copy that opens.
    beside = hub.pyinfra(script="restore.py", overrides={NAME: {"restore_to": "/srv/restored-all"}}, env=ENV)
    assert beside.returncode == 0, beside.output[-3000:]
    listed = hub.ssh(
        NAME,
        f"cd /srv/restored-all && cat home/{account('carol')}/{RESTORE_FOLDER}/notes.md .{SHARED}/syllabus.md; "
        f"test -e .{layout.DATABASE} && echo live-database; "
        f"python3 -I -c 'import sqlite3, sys; print(sorted(r[0] for r in sqlite3.connect(sys.argv[1])"
        f'.execute("select name from users")))\' .{layout.DATABASE_COPY}',
    ).stdout.splitlines()
    assert listed[:2] == ["carol's first notes", "course data"], listed
    assert "live-database" not in listed and hub_name("alice") in listed[-1] and hub_name("carol") in listed[-1]

    # Alice loses her notebook, changes a file, and plants a link to /etc where a directory was;
    # carol writes on.
    as_person(
        hub,
        "alice",
        f"import os, shutil\nos.chdir({RESTORE_FOLDER!r})\nos.remove('analysis.ipynb')\n"
        "open('data dir/' + os.listdir('data dir')[0], 'w').write('changed\\n')\n"
        "shutil.rmtree('acc-trap')\nos.symlink('/etc', 'acc-trap')\n",
    )
    write_as(hub, "carol", {"notes.md": "carol's later notes\n", "new.md": "written after the backup\n"})
    carol_after = folder_hashes(hub, "carol")
    for who in ("alice", "carol"):
        assert unit_state(hub, who) == "active", f"{who}'s server is not running before the restore"
    alice_pid, carol_pid = main_pid(hub, "alice"), main_pid(hub, "carol")
    etc_before = etc_digest(hub)

    started = time.monotonic()
    restore = hub.pyinfra(script="restore.py", overrides={NAME: {"restore_person": PEOPLE["alice"].email}}, env=ENV)
    FIGURES["per-person: restore of one person's home in place (pyinfra restore.py, server stopped and started)"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    assert restore.returncode == 0, restore.output[-3000:] + hub_journal(hub)
    assert f"of /home/{account('alice')} in place as {account('alice')}" in restore.output, restore.output[-3000:]
    assert folder_hashes(hub, "alice") == alice_before
    owners = hub.ssh(
        NAME, f"cd /home/{account('alice')}/{RESTORE_FOLDER} && stat -c '%U %F' acc-trap acc-trap/hostname"
    ).stdout.splitlines()
    assert owners == [f"{account('alice')} directory", f"{account('alice')} regular file"], owners
    # The link went aside, and nothing in /etc was written through it.
    aside = hub.ssh(NAME, "find /var/lib/jupyter-backup/moved-aside -name acc-trap -printf '%y %l\\n'").stdout.split()
    assert aside == ["l", "/etc"], aside
    assert etc_digest(hub) == etc_before
    # Her server was stopped and started again by the hub; carol's was never touched.
    assert unit_state(hub, "alice") == "active" and main_pid(hub, "alice") != alice_pid
    assert main_pid(hub, "carol") == carol_pid
    assert folder_hashes(hub, "carol") == carol_after

    # Her home alone, beside.
    side = hub.pyinfra(
        script="restore.py",
        overrides={NAME: {"restore_person": PEOPLE["alice"].email, "restore_to": "/srv/restored-alice"}},
        env=ENV,
    )
    assert side.returncode == 0, side.output[-3000:]
    assert hub.ssh(NAME, "ls /srv/restored-alice/home").stdout.split() == [account("alice")]
    hub.ssh(NAME, f"rm -rf /srv/restored-all /srv/restored-alice {SHARED}/syllabus.md")


PREFIX = settings.DEFAULTS["conda_prefix"]

# Where the rollout would go after the canary: nothing answers there (the lab has no such host).
NEVER_DEPLOYED = "169.254.77.250"


def test_a_per_person_host_is_a_canary_like_any_other(hub, lab, standin_releases, ci_deploy_venv, tmp_path):
    """scripts/ci-deploy --canary 1 with nb8 first: a release whose servers cannot start fails
    the hub's spawn of the check account from it before any switch (nobody's server touched),
    and the rollout stops before the next host; the current release passes, its smoke check
    starting the check account's server through the hub with the token read over SSH."""
    path, digest = standin_releases["cannot-start"]
    release = {"conda_installer_url": lab.url(standin.url_path(path)), "conda_installer_sha256": digest}
    written: dict = {}
    exec(hub.write_inventory({NAME: release}).read_text(), written)
    [(address, data)] = written["notebooks"]
    two = tmp_path / "two-hosts.py"
    two.write_text(f"notebooks = {[(address, data), (NEVER_DEPLOYED, {**data, 'server_name': NEVER_DEPLOYED})]!r}\n")
    pids = {who: main_pid(hub, who) for who in ("alice", "carol")}
    started = time.monotonic()
    stopped, summary = ci_deploy(tmp_path, ci_deploy_venv, "--canary", "1", str(two), env=ENV)
    FIGURES["per-person: ci-deploy --canary 1, a release whose servers cannot start: stopped after"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    assert stopped.returncode == 1, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    assert f"Canary: {address}, deployed and smoke-checked before the others." in summary, summary
    assert "**Canary failed: the other 1 host(s) were not deployed.**" in summary, summary
    current = hub.ssh(NAME, f"readlink -f {PREFIX}").stdout.strip().rsplit("/", 1)[-1]
    said = f"the new distribution {digest[:16]} failed its check, people's servers stay on {current}: the hub could not"
    assert said in stopped.stderr and "its last words: " in stopped.stderr, stopped.stderr[-3000:]
    # The server's own reason is in its journal. (The run quotes its last lines as journald has
    # them when the check fails; on a loaded host journald may not have read the very last ones
    # yet: seen in a clean-clone CI run, so the test does not ask the run's quote for them.)
    journal = hub.ssh(NAME, f"journalctl -u {layout.server_unit(layout.CHECK_NAME)} -n 50 --no-pager -o cat").stdout
    assert "this release's server cannot start" in journal, journal[-2000:]
    assert f"[{NEVER_DEPLOYED}]" not in stopped.stderr
    assert {who: main_pid(hub, who) for who in pids} == pids
    assert hub.ssh(NAME, f"test -e {layout.CHECK_DISTRIBUTION}", check=False).returncode == 1
    check_unit = layout.server_unit(layout.CHECK_NAME)
    assert hub.ssh(NAME, f"systemctl is-active {check_unit}", check=False).stdout.strip() != "active"

    passed, summary = ci_deploy(tmp_path, ci_deploy_venv, "--canary", "1", str(hub.write_inventory()), env=ENV)
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    assert f"| {address} | nothing |" in summary and summary.rstrip().endswith("**OK**"), summary
    # ci-deploy names each host by its server_name (here its address), as for the single server.
    assert f"ok    {address}  server start " in summary, summary


# Asked in the signed-in page, as the hub's own pages ask its API (their XSRF token).
NEW_TOKEN = """async (url) => {
    const cookie = document.cookie.split("; ").find((c) => c.startsWith("_xsrf="));
    const xsrf = (window.jhdata && window.jhdata.xsrf_token) || (cookie ? cookie.slice(6) : "");
    const answer = await fetch(url, {
        method: "POST",
        headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"},
        body: JSON.stringify({note: "e2e: the upgrade test's client", expires_in: 3600}),
    });
    return answer.ok ? (await answer.json()).token : `HTTP ${answer.status}`;
}"""


def token_client(page, hub, who: str) -> Jupyter:
    """A script's client of ``who``'s server with an API token the hub issued to them (asked
    from their signed-in page): unlike their server's cookie, which each start of the server
    replaces (JupyterHub's choice), it outlives a restart of their server."""
    page.goto(f"{hub.base}hub/home")
    token = page.evaluate(NEW_TOKEN, f"{hub.base}hub/api/users/{hub_name(who)}/tokens")
    assert token and not token.startswith("HTTP "), token
    client = Jupyter(f"{hub.base}user/{hub_name(who)}/", ca_file=hub.cert, timeout=60)
    client.session.headers["Authorization"] = f"token {token}"
    client.ws_headers.append(f"Authorization: token {token}")
    return client


def distribution_of(hub, who: str) -> str:
    """The distribution (its directory's name) ``who``'s server runs from: its main process's
    interpreter, a copy inside each distribution."""
    exe = hub.ssh(NAME, f"readlink -f /proc/$(systemctl show -P MainPID {unit_of(who)})/exe").stdout.strip()
    return exe.split("/")[-3] if exe.startswith(f"{PREFIX}.dists/") else exe


def test_an_upgrade_is_checked_with_a_persons_server_switched_back_by_itself_and_rolled_back(
    browser, hub, lab, standin_releases
):
    """Upgrades of the distribution people's servers run from (both servers running; a
    release that fails the check before the switch: the canary test above): one that passes
    the check and fails as people's servers is switched back by itself, both servers running
    again from the current one; a good one (``next``) restarts both from it, and lists what a
    person built on the previous one; rollback.py switches back. A client of alice's server
    through Apache measures how long she sees it away each time."""

    def release(variant: str) -> dict:
        path, digest = standin_releases[variant]
        return {"conda_installer_url": lab.url(standin.url_path(path)), "conda_installer_sha256": digest}

    def upgraded(overrides: dict, script: str = "deploy.py"):
        """A run while alice's client asks her server api/status: (run, longest time away)."""
        poller = StatusPoller(alice)
        poller.start()
        try:
            run = hub.pyinfra(script=script, overrides={NAME: overrides}, env=ENV)
            time.sleep(3)  # answers after the run, so a server that stays away shows
        finally:
            poller.done.set()
            poller.join()
        answered = poller.answers and poller.answers[-1][1]
        assert answered, f"alice's server does not answer after the run{hub_journal(hub)}"
        return run, poller.downtime()

    def link() -> str:
        return hub.ssh(NAME, f"readlink -f {PREFIX}").stdout.strip().rsplit("/", 1)[-1]

    def name(variant: str) -> str:
        return standin_releases[variant][1][:16]

    current = link()
    alice_page, _ = server_of(browser, hub, "alice")
    carol_page, _ = server_of(browser, hub, "carol")
    alice, carol = token_client(alice_page, hub, "alice"), token_client(carol_page, hub, "carol")
    pids = {who: main_pid(hub, who) for who in ("alice", "carol")}
    assert {distribution_of(hub, who) for who in pids} == {current}
    server_version = running_versions(hub, "alice")["jupyter-server"]
    # carol has a user site for another Python: the new distribution's Python does not read it.
    as_person(hub, "carol", "import os\nos.makedirs('.local/lib/python3.9/site-packages/old', exist_ok=True)")

    # 1. A release that passes the check and fails as people's servers: switched, both servers
    #    fail to start from it, switched back by itself, both run again from the current one.
    failed, away = upgraded(release("fails-as-service"))
    FIGURES["per-person: alice's server away during an upgrade switched back by itself"] = f"{away:.1f} s"
    assert failed.returncode != 0, failed.output[-3000:]
    assert f"Checked the new distribution {name('fails-as-service')}: the hub started" in failed.output
    said = f"switched back to {current}, from which every person's server that was running runs again"
    assert said in failed.output, failed.output[-3000:] + hub_journal(hub)
    assert link() == current
    for who in pids:
        assert unit_state(hub, who) == "active" and distribution_of(hub, who) == current
    assert running_versions(hub, "alice")["jupyter-server"] == server_version

    # 2. A good release: checked, switched, both servers restarted from it (nothing of theirs
    #    is busy), with the fleet's packages; carol's old user site listed as hers.
    pids = {who: main_pid(hub, who) for who in pids}
    good, away = upgraded(release("next"))
    FIGURES["per-person: alice's server away during an upgrade's switch"] = f"{away:.1f} s"
    assert good.returncode == 0, good.output[-4000:] + hub_journal(hub)
    assert link() == name("next")
    for who, client in (("alice", alice), ("carol", carol)):
        assert main_pid(hub, who) != pids[who] and distribution_of(hub, who) == name("next")
        assert client.execute("import standin_release; print(standin_release.RELEASE)").strip() == "next"
    assert running_versions(hub, "carol")["jupyter-server"] == server_version
    stranded = [line for line in good.output.splitlines() if "~/.local/lib/python3.9" in line]
    assert stranded and all(f"{account('carol')}:   ~/.local/lib/python3.9" in line for line in stranded), good.output[
        -3000:
    ]
    again = hub.pyinfra(overrides={NAME: release("next")}, env=ENV)
    assert again.returncode == 0 and again.changed().get(hub.address(NAME), []) == [], again.output[-3000:]

    # 3. rollback.py: both servers restart from the distribution before.
    pids = {who: main_pid(hub, who) for who in pids}
    back, away = upgraded({}, script="rollback.py")
    FIGURES["per-person: alice's server away during rollback.py"] = f"{away:.1f} s"
    assert back.returncode == 0, back.output[-4000:] + hub_journal(hub)
    assert link() == current
    for who in pids:
        assert main_pid(hub, who) != pids[who] and distribution_of(hub, who) == current
    assert "no marker" in alice.execute("try:\n    import standin_release\nexcept ImportError:\n    print('no marker')")
    for page in (alice_page, carol_page):
        page.context.close()
    # The configured release is the current one again: a deploy changes nothing.
    rest = hub.pyinfra(env=ENV)
    assert rest.returncode == 0 and rest.changed().get(hub.address(NAME), []) == [], rest.output[-3000:]


def test_the_smoke_check_starts_its_accounts_server_through_apache_runs_a_cell_and_stops_it(hub, lab):
    result = run_smoke(lab, hub.base, hub.cert)
    assert result.returncode == 0, result.stdout + result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"ok    {hub.base}") and "server start" in line and "cell" in line, line
    FIGURES["per-person: smoke check (check account's server started, a cell, stopped)"] = line
    # Its server is stopped again; the token never reached the output.
    check_unit = layout.SERVER_UNIT_TEMPLATE.format(USERNAME=layout.CHECK_NAME)
    assert hub.ssh(NAME, f"systemctl is-active {check_unit}", check=False).stdout.strip() != "active"
    token = hub.ssh(NAME, f"cat {layout.SMOKE_TOKEN}").stdout.strip()
    assert token and token not in result.stdout + result.stderr


# Per-person passwords: the same hub switched from the provider to its own sign-up and sign-in.
ADMIN_PASSWORD = "alice's first hub password 11"
DORA = "dora@lab.example"  # nobody the provider knows: she signs up at the hub
DORA_PASSWORDS = ("dora's own password 12", "dora's next password 13")
PASSWORDS = {"auth": "password", "hub_admin_password_hashes": {PEOPLE["alice"].email: hash_password(ADMIN_PASSWORD)}}
GUESSER = "169.254.77.190"
HUB_PAGE = "/jupyter/hub/"


class HubVisitor:
    """One browser's worth of the hub, as requests: its cookies, and its forms posted with _xsrf."""

    def __init__(self, hub):
        self.base = hub.base
        self.session = requests.Session()
        self.ca = hub.cert

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        # verify on each request: a Session's loses to REQUESTS_CA_BUNDLE.
        return self.session.request(method, self.base + path, verify=self.ca, timeout=60, **kwargs)

    def xsrf(self) -> str:
        return self.session.cookies.get("_xsrf", path=HUB_PAGE) or ""

    def form(self, path: str, fields: dict) -> requests.Response:
        self.request("GET", path)
        return self.request("POST", path, data={**fields, "_xsrf": self.xsrf()}, allow_redirects=False)

    def sign_up(self, address: str, password: str) -> str:
        fields = {"username": address, "signup_password": password, "signup_password_confirmation": password}
        return self.form("hub/signup", fields).text

    def sign_in(self, address: str, password: str) -> requests.Response:
        return self.form(layout.LOGIN_PATH, {"username": address, "password": password})

    def api(self, method: str, path: str) -> requests.Response:
        return self.request(method, "hub/api/" + path, headers={"X-XSRFToken": self.xsrf()})

    def open_server(self, name: str) -> bool:
        """The person's JupyterLab opened, as a browser does (the hub's sign-in for it followed)."""
        answer = self.request("GET", f"user/{name}/lab")
        return answer.status_code == 200 and answer.url.startswith(f"{self.base}user/{name}/lab")

    def server_status(self, name: str) -> int:
        """The status the person's server's API answers with what this browser holds."""
        return self.request("GET", f"user/{name}/api/status", allow_redirects=False).status_code


def test_with_passwords_people_sign_up_an_admin_approves_and_sessions_end_with_a_password(hub, lab):
    """per_person_servers with auth 'password': the admin's name is theirs from the deploy (a
    sign-up under it is refused, its password is the deploy's); dora signs up, waits, is
    approved and signs in, and gets her own account and server; her password change ends her
    other session, at the hub and at her server; removed, she cannot sign in; wrong passwords
    at the hub's form get an address banned; a rerun changes nothing."""
    on = hub.pyinfra(overrides={NAME: PASSWORDS}, env=ENV)
    assert on.returncode == 0, on.output[-6000:] + hub_journal(hub)
    TIMINGS["per-person servers: switched to their own passwords (nb8)"] = on.seconds
    first_hash = PASSWORDS["hub_admin_password_hashes"][PEOPLE["alice"].email]
    assert first_hash.split("$")[-1] not in on.output
    alice, dora = hub_name("alice"), people.hub_name(DORA)

    # Nobody signs up under the admin's address; the deploy's password is hers.
    claimant = HubVisitor(hub)
    page = claimant.request("GET", layout.LOGIN_PATH)
    assert page.status_code == 200 and 'href="/jupyter/hub/signup"' in page.text, page.text[-2000:] + hub_journal(hub)
    assert "already in use" in claimant.sign_up(PEOPLE["alice"].email, "a claimant's password 14")
    refused = claimant.sign_in(PEOPLE["alice"].email, "a claimant's password 14")
    assert refused.status_code == 401, refused.text[-1000:] + hub_journal(hub)
    admin = HubVisitor(hub)
    signed_in = admin.sign_in(PEOPLE["alice"].email, ADMIN_PASSWORD)
    assert signed_in.status_code == 302, signed_in.text[-2000:] + hub_journal(hub)
    assert admin.api("GET", "user").json()["name"] == alice

    # dora signs up and waits for an admin.
    visitor = HubVisitor(hub)
    assert "sent to the admin" in visitor.sign_up(DORA, DORA_PASSWORDS[0])
    waiting = visitor.sign_in(DORA, DORA_PASSWORDS[0])
    assert waiting.status_code == 403 and "not approved this account yet" in waiting.text
    assert admin.request("GET", f"hub/authorize/{dora}").status_code == 200
    assert visitor.sign_in(DORA, DORA_PASSWORDS[0]).status_code == 302
    owner = hub.ssh(NAME, f"getent passwd {people.unix_name(DORA)}").stdout
    assert people.comment(DORA) in owner, owner

    # Her own server, from two browsers.
    elsewhere = HubVisitor(hub)
    assert elsewhere.sign_in(DORA, DORA_PASSWORDS[0]).status_code == 302
    assert visitor.api("POST", f"users/{dora}/server").status_code in (201, 202)
    assert wait_until(lambda: visitor.api("GET", "user").json()["servers"].get("", {}).get("ready"), 120)
    assert visitor.open_server(dora) and elsewhere.open_server(dora), hub_journal(hub)
    assert visitor.server_status(dora) == 200 and elsewhere.server_status(dora) == 200
    runs_as = hub.ssh(NAME, f"systemctl show -P User {layout.server_unit(dora)}").stdout.strip()
    assert runs_as == hub.ssh(NAME, f"id -u {people.unix_name(DORA)}").stdout.strip()

    # A new password ends the other browser's session: at the hub at once, at her server
    # within the minute its sign-in cache lasts.
    changed = visitor.form(
        "hub/change-password",
        {
            "old_password": DORA_PASSWORDS[0],
            "new_password": DORA_PASSWORDS[1],
            "new_password_confirmation": DORA_PASSWORDS[1],
        },
    )
    assert "changed successfully" in changed.text, changed.text[-2000:]
    assert elsewhere.api("GET", "user").status_code == 403
    ended = wait_until(lambda: elsewhere.server_status(dora) != 200, 90, step=2)
    assert ended is not None, "her other browser still reaches her server 90 s after her password changed"
    FIGURES["per-person passwords: a password change ends another browser's session at the server after"] = (
        f"{ended:.0f} s"
    )
    assert visitor.sign_in(DORA, DORA_PASSWORDS[0]).status_code == 401
    assert visitor.sign_in(DORA, DORA_PASSWORDS[1]).status_code == 302

    # Removed by the admin: her server stops, she cannot sign in; her home stays.
    assert admin.api("DELETE", f"users/{dora}").status_code == 204
    assert visitor.sign_in(DORA, DORA_PASSWORDS[1]).status_code == 401
    assert hub.ssh(NAME, f"systemctl is-active {layout.server_unit(dora)}", check=False).stdout.strip() != "active"
    assert hub.ssh(NAME, f"test -d {people.home(DORA)}", check=False).returncode == 0

    # Wrong passwords at the hub's form: the address is banned, as at the single server's.
    url = hub.base
    with ClientAddress("hub-guesser", GUESSER) as guesser:
        try:
            guesses = login_traffic.run(
                guesser,
                "guess",
                url,
                hub.cert,
                "--form",
                layout.LOGIN_PATH,
                "--username",
                PEOPLE["alice"].email,
                "--count",
                str(settings.DEFAULTS["login_ban_max_failures"]),
                "--interval",
                "0.2",
            )
            assert [a["status"] for a in guesses["attempts"]] == [401] * settings.DEFAULTS["login_ban_max_failures"]
            assert wait_until(lambda: not login_traffic.reachable(guesser, url, hub.cert), 20, step=0.5) is not None
        finally:
            hub.ssh(NAME, f"fail2ban-client set jupyter-login unbanip {GUESSER} >/dev/null 2>&1 || true")
    # This machine (login_ban_ignore) still signs in.
    assert HubVisitor(hub).sign_in(PEOPLE["alice"].email, ADMIN_PASSWORD).status_code == 302

    rerun = hub.pyinfra(overrides={NAME: PASSWORDS}, env=ENV)
    assert rerun.returncode == 0 and rerun.changed().get(hub.address(NAME), []) == [], rerun.output[-3000:]


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
