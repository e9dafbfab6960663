"""
The researcher's environment on a real host (nb6, deployed in the session's first run with
ENV_DATA): fleet packages, the user's own installs and kernels, limits that keep the box
alive under a runaway cell, idle-kernel culling, idle websockets through the proxy, and a
server that loads nothing the notebook user can write.

Runs after test_deploy.py etc. (same session deployment); tests that restart Jupyter or
redeploy come last in this file.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import websocket

from lab.memory import MemoryCap
from smoke.client import Jupyter, _run_cell, execute_request
from tests.e2e.scenario import ENV_DATA, FIGURES, FLEET_PIP_PACKAGES, MEMORY_CAP_BYTES, PASSWORD, RUNAWAY, TIMINGS

HOST = "nb6"
PACKAGES_OP = "Fleet packages | Install the listed conda and pip packages into the prefix"
USER_SITE = "/var/lib/jupyter/.local/lib/python3.11/site-packages"


def client(deployment, ca_files, timeout=30) -> Jupyter:
    jupyter = Jupyter(f"https://{deployment.address(HOST)}/jupyter/", ca_file=str(ca_files[HOST]), timeout=timeout)
    jupyter.login(PASSWORD)
    return jupyter


def main_pid(deployment) -> str:
    return deployment.ssh(HOST, "systemctl show -p MainPID --value jupyter").stdout.strip()


def kernel_ids(jupyter) -> set[str]:
    return {k["id"] for k in jupyter.api("GET", "kernels").json()}


def stay_idle(ws, seconds: float) -> None:
    """Leave a websocket idle as a browser tab does: send nothing, but answer the server's
    pings (websocket-client answers them only while reading; messages read are dropped)."""
    deadline = time.monotonic() + seconds
    ws.settimeout(1)
    try:
        while time.monotonic() < deadline:
            try:
                ws.recv()
            except websocket.WebSocketTimeoutException:
                pass
            except (websocket.WebSocketConnectionClosedException, OSError):
                return  # closed under us: whoever uses it next sees that
    finally:
        if ws.connected:
            ws.settimeout(30)


class KeptKernel:
    """A kernel with state and an open, idle connection (a notebook tab left open), which
    culling must leave alone, for as long as the ``with`` block runs."""

    def __init__(self, jupyter):
        self.jupyter = jupyter

    def __enter__(self) -> KeptKernel:
        self.kernel = self.jupyter.start_kernel()
        self.ws = self.jupyter.websocket(f"api/kernels/{self.kernel}/channels")
        _run_cell(self.ws, "state = 'kept'", 30)
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._idle, daemon=True)
        self.reader.start()
        return self

    def _idle(self):
        while not self.stop.is_set() and self.ws.connected:
            stay_idle(self.ws, 1)

    def state(self) -> str:
        """The kernel's state now (ends the idle connection)."""
        self.stop.set()
        self.reader.join()
        return _run_cell(self.ws, "print(state)", 30)

    def __exit__(self, *exc):
        self.stop.set()
        self.reader.join()
        self.ws.close()
        self.jupyter.api("DELETE", f"kernels/{self.kernel}")


# -- 1. fleet packages ------------------------------------------------------------------
def test_fleet_packages_and_requirements_are_importable_in_a_new_kernel(deployment, ca_files):
    jupyter = client(deployment, ca_files)
    out = jupyter.execute("import tabulate, toolz; print(tabulate.__version__, toolz.__version__, tabulate.__file__)")
    version_tabulate, version_toolz, path = out.split()
    assert (version_tabulate, version_toolz) == ("0.9.0", "0.12.1")
    assert path.startswith("/opt/anaconda3/lib/"), "installed into the shared prefix, not a user site"


def test_a_converged_host_with_packages_and_limits_changes_nothing(deployment):
    second = deployment.runs["second"]
    assert second.returncode == 0
    assert deployment.address(HOST) not in second.changed()


# -- 3a. limits on the unit, OOM scores --------------------------------------------------
def test_unit_carries_the_limits_and_jupyter_is_the_oom_killers_first_choice(deployment, ca_files):
    shown = dict(
        line.split("=", 1)
        for line in deployment.ssh(
            HOST,
            (
                "systemctl show jupyter -p MemoryMax -p MemoryHigh -p MemorySwapMax -p CPUQuotaPerSecUSec -p TasksMax "
                "-p OOMScoreAdjust"
            ),
        ).stdout.split()
    )
    assert shown["MemoryMax"] == str(700 * 2**20)
    assert shown["MemoryHigh"] == str(700 * 2**20 * 9 // 10)
    assert shown["MemorySwapMax"] == "0"
    assert shown["CPUQuotaPerSecUSec"] == "1.500000s"
    assert shown["TasksMax"] == "2048"
    assert shown["OOMScoreAdjust"] == "800"
    jupyter = client(deployment, ca_files)
    kernel = jupyter.start_kernel()
    try:
        assert jupyter.execute_in(kernel, "print(open('/proc/self/oom_score_adj').read().strip())") == "800\n"
        scores = deployment.ssh(
            HOST,
            (
                "for u in jupyter apache2 ssh; do p=$(systemctl show -p MainPID --value $u); "
                "echo $u $(cat /proc/$p/oom_score_adj); done; "
                "for p in $(pgrep -x apache2); do echo apache2-child $(cat /proc/$p/oom_score_adj); done"
            ),
        ).stdout
    finally:
        jupyter.api("DELETE", f"kernels/{kernel}")
    lines = [line.split() for line in scores.splitlines()]
    by_unit = {unit: int(score) for unit, score in lines}
    assert by_unit["jupyter"] == 800
    # sshd lowers its own score to -1000 on a real host (OpenSSH's Linux OOM adjustment);
    # a lab host lacks CAP_SYS_RESOURCE, so there it stays at 0, still far below Jupyter's.
    assert by_unit["ssh"] <= 0, scores
    assert all(int(score) <= 0 for unit, score in lines if unit.startswith("apache2")), scores
    FIGURES["nb6 oom_score_adj jupyter/kernel/apache2/sshd"] = f"800/800/{by_unit['apache2']}/{by_unit['ssh']}"


# -- 2. the user's own installs and kernels ---------------------------------------------
@pytest.fixture(scope="module")
def user_installs(deployment, ca_files):
    """As a user would, from notebooks: %pip install, own venv + kernel, %conda install."""
    jupyter = client(deployment, ca_files, timeout=300)
    kernel = jupyter.start_kernel()
    try:
        started = time.monotonic()
        pip = jupyter.execute_in(kernel, "%pip install humanize==4.9.0")
        TIMINGS["nb6: %pip install humanize (user site)"] = time.monotonic() - started
        conda = jupyter.execute_in(kernel, "%conda install -y numpy")
        started = time.monotonic()
        venv = jupyter.execute_in(
            kernel,
            "\n".join(
                [
                    "import os, subprocess",
                    "env = os.path.expanduser('~/envs/x')",
                    "subprocess.run(['python', '-m', 'venv', env], check=True)",
                    "subprocess.run([env + '/bin/pip', 'install', '--quiet', 'ipykernel'], check=True)",
                    "subprocess.run([env + '/bin/python', '-m', 'ipykernel', 'install', '--user', '--name', 'x',"
                    " '--display-name', 'My env x'], check=True)",
                    "subprocess.run([env + '/bin/pip', 'install', '--quiet', 'tomli-w==1.0.0'], check=True)",
                ]
            ),
        )
        TIMINGS["nb6: own venv + ipykernel + kernel spec"] = time.monotonic() - started
    finally:
        jupyter.api("DELETE", f"kernels/{kernel}")
    return {"pip": pip, "conda": conda, "venv": venv}


def test_pip_install_from_a_notebook_lands_in_the_users_home(deployment, user_installs):
    assert "Defaulting to user installation because normal site-packages is not writeable" in user_installs["pip"]
    assert "Successfully installed humanize-4.9.0" in user_installs["pip"]
    assert deployment.ssh(HOST, f"stat -c %U {USER_SITE}/humanize/__init__.py").stdout.strip() == "jupyter"


def test_conda_install_into_the_shared_prefix_points_to_the_setting(user_installs):
    assert "managed by the deploy" in user_installs["conda"]
    assert "conda_packages" in user_installs["conda"]


def test_own_kernel_is_listed_and_runs_a_cell_through_apache(deployment, ca_files, user_installs):
    jupyter = client(deployment, ca_files)
    specs = jupyter.api("GET", "kernelspecs").json()["kernelspecs"]
    assert specs["x"]["spec"]["display_name"] == "My env x"
    assert "python3" in specs
    kernel = jupyter.api("POST", "kernels", json={"name": "x"}).json()["id"]
    try:
        out = jupyter.execute_in(kernel, "import sys, tomli_w; print(sys.prefix)")
    finally:
        jupyter.api("DELETE", f"kernels/{kernel}")
    assert out == "/var/lib/jupyter/envs/x\n"


def test_terminal_has_the_users_data_dir_and_the_distributions_python(deployment, ca_files):
    jupyter = client(deployment, ca_files)
    seen = jupyter.terminal_echo('echo "D=[$JUPYTER_DATA_DIR]" "P=$(command -v python | tr a-z A-Z)"', "P=/")
    assert "D=[]" in seen and "P=/OPT/ANACONDA3/BIN/PYTHON" in seen


def test_user_installs_survive_a_restart_and_a_redeploy(deployment, ca_files, user_installs):
    deployment.ssh(HOST, "systemctl restart jupyter")
    run = deployment.pyinfra()
    assert run.returncode == 0, run.output[-3000:]
    assert deployment.address(HOST) not in run.changed()
    jupyter = client(deployment, ca_files)
    out = jupyter.execute("import humanize; print(humanize.__version__, humanize.__file__)")
    assert out.split() == ["4.9.0", f"{USER_SITE}/humanize/__init__.py"]
    assert "x" in jupyter.api("GET", "kernelspecs").json()["kernelspecs"]


# -- 4 + 5. slow waits, run side by side -------------------------------------------------
BUSY_SECONDS = 40
IDLE_SECONDS = 20


@pytest.fixture(scope="module")
def slow_waits(deployment, ca_files):
    """Culling (timeout 20 s) and idle websockets (proxy timeout 6 s), in parallel threads."""
    results: dict = {}
    jupyter = client(deployment, ca_files, timeout=60)

    def culling():
        idle = jupyter.start_kernel()
        busy = jupyter.start_kernel()
        connected = jupyter.start_kernel()
        ws = jupyter.websocket(f"api/kernels/{connected}/channels")
        _run_cell(ws, "x = 42", 30)
        busy_ws = jupyter.websocket(f"api/kernels/{busy}/channels")
        _, message = execute_request(
            f"import time; time.sleep({BUSY_SECONDS}); open('/srv/jupyter/busy-done', 'w').write('done')"
        )
        busy_ws.send(message)
        time.sleep(1)
        busy_ws.close()  # the tab is closed while the cell runs
        started = time.monotonic()
        gone_after = None
        while time.monotonic() - started < BUSY_SECONDS - 5:
            if idle not in kernel_ids(jupyter) and gone_after is None:
                gone_after = time.monotonic() - started
            stay_idle(ws, 1)
        results["idle_gone_after"] = gone_after
        results["busy_alive_while_running"] = busy in kernel_ids(jupyter)
        results["connected_alive"] = connected in kernel_ids(jupyter)
        try:
            results["connected_state"] = _run_cell(ws, "print(x)", 30)
        except Exception as error:  # the test reports what broke
            results["connected_state"] = repr(error)
        ws.close()
        time.sleep(8)
        results["busy_finished"] = deployment.ssh(HOST, "cat /srv/jupyter/busy-done", check=False).stdout
        for kernel in (busy, connected):
            try:
                jupyter.api("DELETE", f"kernels/{kernel}")
            except requests.HTTPError:
                pass

    def idle_websockets():
        kernel = jupyter.start_kernel()
        kernel_ws = jupyter.websocket(f"api/kernels/{kernel}/channels")
        _run_cell(kernel_ws, "y = 7", 30)
        terminal = jupyter.api("POST", "terminals").json()["name"]
        terminal_ws = jupyter.websocket(f"terminals/websocket/{terminal}")
        idle_threads = [threading.Thread(target=stay_idle, args=(w, IDLE_SECONDS)) for w in (kernel_ws, terminal_ws)]
        for thread in idle_threads:
            thread.start()
        for thread in idle_threads:
            thread.join()
        results["idle_seconds"] = IDLE_SECONDS
        try:
            results["kernel_after_idle"] = _run_cell(kernel_ws, "print(y * 6)", 30)
        except Exception as error:  # the test reports what broke
            results["kernel_after_idle"] = repr(error)
        try:
            terminal_ws.send(json.dumps(["stdin", "echo $((6 * 7))-idle-ok\r"]))
            seen, deadline = "", time.monotonic() + 15
            while "42-idle-ok" not in seen and time.monotonic() < deadline:
                message = json.loads(terminal_ws.recv())
                if message[0] == "stdout":
                    seen += message[1]
            results["terminal_after_idle"] = seen
        except Exception as error:
            results["terminal_after_idle"] = repr(error)
        for ws in (kernel_ws, terminal_ws):
            ws.close()
        jupyter.api("DELETE", f"kernels/{kernel}")
        jupyter.api("DELETE", f"terminals/{terminal}")

    def guarded(scenario):
        def run():
            try:
                scenario()
            except Exception as error:  # the tests below say which result is missing
                results.setdefault("errors", []).append(f"{scenario.__name__}: {error!r}")

        return run

    threads = [threading.Thread(target=guarded(target), daemon=True) for target in (culling, idle_websockets)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    TIMINGS["nb6: culling + idle websockets (parallel)"] = time.monotonic() - started
    gone = results.get("idle_gone_after")
    FIGURES["nb6: idle kernel culled after (timeout 20 s)"] = "never" if gone is None else f"{gone:.1f} s"
    return results


def test_idle_kernel_without_a_connection_is_culled_soon_after_the_timeout(slow_waits):
    timeout = ENV_DATA["cull_idle_kernels_after"]
    assert slow_waits.get("idle_gone_after") is not None, f"the idle kernel was never culled {slow_waits.get('errors')}"
    assert timeout - 2 <= slow_waits["idle_gone_after"] <= timeout + 10


def test_busy_kernel_with_its_tab_closed_survives_and_finishes(slow_waits):
    assert slow_waits.get("busy_alive_while_running"), slow_waits.get("errors")
    assert slow_waits.get("busy_finished") == "done", slow_waits.get("errors")


def test_idle_kernel_with_an_open_connection_keeps_its_state(slow_waits):
    assert slow_waits.get("connected_alive"), slow_waits.get("errors")
    assert slow_waits.get("connected_state") == "42\n", slow_waits.get("errors")


def test_idle_kernel_and_terminal_websockets_outlast_the_proxy_timeout(slow_waits):
    assert slow_waits.get("idle_seconds", 0) >= 3 * ENV_DATA["apache_proxy_timeout"], slow_waits.get("errors")
    assert slow_waits.get("kernel_after_idle") == "42\n", slow_waits.get("errors")
    assert "42-idle-ok" in slow_waits.get("terminal_after_idle", ""), slow_waits.get("errors")


# -- 3b. a runaway cell under a real memory cap ------------------------------------------
CAP_BYTES = MEMORY_CAP_BYTES


class Watch(threading.Thread):
    """Calls ``probe`` every ``interval`` s until stopped; counts successes and failures."""

    def __init__(self, probe, interval):
        super().__init__(daemon=True)
        self.probe, self.interval = probe, interval
        self.done = threading.Event()
        self.ok, self.failures = 0, []

    def run(self):
        while not self.done.is_set():
            try:
                self.probe()
                self.ok += 1
            except Exception as error:
                self.failures.append(repr(error))
            time.sleep(self.interval)


def test_runaway_cell_kills_only_its_kernel_and_the_host_keeps_answering(deployment, ca_files, lab):
    jupyter = client(deployment, ca_files, timeout=60)
    server_pid = main_pid(deployment)
    kernel = jupyter.start_kernel()
    ws = jupyter.websocket(f"api/kernels/{kernel}/channels")
    _run_cell(ws, "import os; print(os.getpid())", 30)
    login_url = f"https://{deployment.address(HOST)}/jupyter/login"

    def apache_and_jupyter():
        response = requests.get(login_url, verify=str(ca_files[HOST]), timeout=5)
        assert response.status_code == 200

    def sshd():
        deployment.ssh(HOST, "true", timeout=10)

    with MemoryCap(lab.hosts[HOST], CAP_BYTES) as cap:
        # Never allocate past a cap that is not in force: check it holds the kernel first.
        [kernel_pid] = cap.find(f"kernel-{kernel}.json")
        assert cap.limit == CAP_BYTES and cap.holds(kernel_pid), "the memory cap is not in place: not allocating"
        watches = [Watch(apache_and_jupyter, 0.2), Watch(sshd, 1.0)]
        for watch in watches:
            watch.start()
        _, message = execute_request(RUNAWAY)
        ws.send(message)
        states, deadline = [], time.monotonic() + 90
        while time.monotonic() < deadline and not {"restarting", "dead"} & set(states):
            reply = json.loads(ws.recv())
            if reply["msg_type"] == "status":
                states.append(reply["content"]["execution_state"])
        time.sleep(3)
        for watch in watches:
            watch.done.set()
            watch.join()
        peak, kills = cap.peak_bytes, cap.oom_kills
        kernel_gone = not cap.find(f"kernel-{kernel}.json") or kernel_pid not in cap.find(f"kernel-{kernel}.json")
    ws.close()
    web, ssh = watches
    FIGURES["nb6 runaway: peak vs cap"] = f"{peak / 2**20:.0f} MiB of {CAP_BYTES / 2**20:.0f} MiB, {kills} OOM kill(s)"
    FIGURES["nb6 runaway: Apache/Jupyter polls"] = f"{web.ok} ok, {len(web.failures)} failed"
    FIGURES["nb6 runaway: ssh polls"] = f"{ssh.ok} ok, {len(ssh.failures)} failed"
    assert "restarting" in states or "dead" in states, f"the client never saw the kernel die: {states}"
    assert kills >= 1 and kernel_gone
    assert peak <= CAP_BYTES
    assert web.failures == [] and web.ok > 0
    assert ssh.failures == [] and ssh.ok > 0
    assert main_pid(deployment) == server_pid, "the server itself was killed"
    assert jupyter.execute("print(6*7)") == "42\n"


# -- 1 (continued). changing the fleet's list -------------------------------------------
ADDED = "cowsay==6.1"
MISSING = "jupyter-deploy-no-such-package==1.0"


@pytest.fixture(scope="module")
def package_changes(deployment, ca_files):
    """Add one spec (dry run, then real, then again), remove it, then list one that does not exist."""
    jupyter = client(deployment, ca_files)
    server_pid = main_pid(deployment)
    added = {HOST: {"pip_packages": FLEET_PIP_PACKAGES + [ADDED]}}
    with KeptKernel(jupyter) as kept:
        runs = {
            "dry": deployment.pyinfra("--dry", overrides=added, yes=False),
            "add": deployment.pyinfra("-vv", overrides=added),
            "again": deployment.pyinfra(overrides=added),
            "remove": deployment.pyinfra(),
            "after-remove": deployment.pyinfra(),
            "missing": deployment.pyinfra(overrides={HOST: {"pip_packages": FLEET_PIP_PACKAGES + [MISSING]}}),
            "retry": deployment.pyinfra(),
        }
        record = deployment.ssh(HOST, "cat /opt/anaconda3/.jupyter-deploy-packages.json").stdout
        state = kept.state()
    TIMINGS["nb6: add one pip package (4 hosts in the run)"] = runs["add"].seconds
    return {
        "runs": runs,
        "server_pid_before": server_pid,
        "server_pid_after": main_pid(deployment),
        "kernel_state": state,
        "record": record,
    }


def test_dry_run_predicts_exactly_the_install(deployment, package_changes):
    dry = package_changes["runs"]["dry"]
    assert dry.returncode == 0, dry.output[-3000:]
    # Certain changes: only the install (a restart or reload is listed only as conditional,
    # after a change that is not there, as for every host).
    assert dry.predicted() == {deployment.address(HOST): [PACKAGES_OP]}


def test_added_spec_installs_only_it_restarts_nothing_and_converges(deployment, package_changes):
    runs = package_changes["runs"]
    assert runs["add"].returncode == 0, runs["add"].output[-3000:]
    assert runs["add"].changed() == {deployment.address(HOST): [PACKAGES_OP]}
    pip_lines = [line for line in runs["add"].output.splitlines() if "pip install" in line]
    assert pip_lines and all(ADDED in line and "tabulate" not in line for line in pip_lines), pip_lines
    assert runs["again"].changed() == {}
    assert package_changes["server_pid_before"] == package_changes["server_pid_after"]
    assert package_changes["kernel_state"] == "kept\n"


def test_removed_spec_is_reported_as_left_installed(deployment, package_changes):
    runs = package_changes["runs"]
    assert runs["remove"].returncode == 0
    assert f"left installed in /opt/anaconda3: {ADDED}" in runs["remove"].output
    assert runs["after-remove"].changed() == {}
    assert "left installed" not in runs["after-remove"].output
    deployment.ssh(HOST, "/opt/anaconda3/bin/python -c 'import cowsay'")


def test_spec_that_does_not_exist_fails_the_host_with_pips_reason_and_keeps_it_working(deployment, package_changes):
    missing = package_changes["runs"]["missing"]
    assert missing.returncode != 0
    assert f"No matching distribution found for {MISSING}" in missing.output
    assert MISSING not in package_changes["record"], "a failed install must not be recorded as installed"
    # The server kept running through it (same process, same kernel state), other hosts were fine.
    assert package_changes["server_pid_before"] == package_changes["server_pid_after"]
    assert package_changes["kernel_state"] == "kept\n"
    retry = package_changes["runs"]["retry"]
    assert retry.returncode == 0 and retry.changed() == {}


# -- 3b. the notebook UI shows the memory budget ----------------------------------------
def displayed_memory_limit(jupyter) -> int:
    """The limit jupyter-resource-usage's display shows (its API, polled by the UI)."""
    return jupyter.api("GET", "metrics/v1").json()["limits"]["memory"]["rss"]


def test_the_notebook_ui_shows_memory_use_against_memory_max(deployment, ca_files):
    jupyter = client(deployment, ca_files)
    memory_max = int(deployment.ssh(HOST, "systemctl show -p MemoryMax --value jupyter").stdout)
    assert memory_max == 700 * 2**20
    metrics = jupyter.api("GET", "metrics/v1").json()
    assert metrics["limits"]["memory"]["rss"] == memory_max
    assert 0 < metrics["rss"] < memory_max
    FIGURES["nb6 resource display: rss / limit"] = f"{metrics['rss'] / 2**20:.0f} / {memory_max / 2**20:.0f} MiB"


# -- 3 (continued). a changed limit applies without a restart ---------------------------
def test_changed_memory_limit_applies_to_the_running_server(deployment, ca_files):
    jupyter = client(deployment, ca_files)
    before = main_pid(deployment)
    try:
        with KeptKernel(jupyter) as kept:
            run = deployment.pyinfra(overrides={HOST: {"memory_limit": "800M"}})
            assert run.returncode == 0, run.output[-3000:]
            assert sorted(run.changed()[deployment.address(HOST)]) == sorted(
                [
                    f"Jupyter Notebook service | {op}"
                    for op in (
                        "Memory, CPU and task limits (systemd drop-in)",
                        "Jupyter running with its current config and packages",
                        "Apply the new limits to the running server",
                        "Memory limit the notebook UI shows (the unit's MemoryMax)",
                    )
                ]
            )
            shown = deployment.ssh(HOST, "systemctl show -p MemoryMax --value jupyter").stdout.strip()
            assert shown == str(800 * 2**20)
            # The notebook UI's display follows, without a restart.
            assert displayed_memory_limit(jupyter) == 800 * 2**20
            assert main_pid(deployment) == before
            assert kept.state() == "kept\n"
    finally:
        restored = deployment.pyinfra()
        assert restored.returncode == 0
    assert deployment.ssh(HOST, "systemctl show -p MemoryMax --value jupyter").stdout.strip() == str(700 * 2**20)
    assert deployment.pyinfra().changed() == {}


# -- 7. the server loads nothing the notebook user can write -----------------------------
PLANT = r"""
import os, site
home = os.path.expanduser("~")
config = ("open('/var/lib/jupyter/planted-config-ran', 'w').write('x')\n"
          "c.ServerApp.identity_provider_class = 'jupyter_server.auth.identity.IdentityProvider'\n"
          "c.IdentityProvider.token = ''\n")
for directory in (home + "/.local/etc/jupyter", home + "/.jupyter"):
    os.makedirs(directory, exist_ok=True)
    open(directory + "/jupyter_server_config.py", "w").write(config)
user_site = site.getusersitepackages()
os.makedirs(user_site, exist_ok=True)
open(user_site + "/zz-planted.pth", "w").write(
    "import sys; open('/var/lib/jupyter/planted-pth-ran', 'a').write(' '.join(sys.orig_argv) + chr(10))\n")
print(site.ENABLE_USER_SITE, user_site)
"""
CLEAN = (
    "rm -f /var/lib/jupyter/.local/etc/jupyter/jupyter_server_config.py "
    "/var/lib/jupyter/.jupyter/jupyter_server_config.py "
    f"{USER_SITE}/zz-planted.pth /var/lib/jupyter/planted-config-ran /var/lib/jupyter/planted-pth-ran"
)


def test_code_planted_from_a_notebook_does_not_run_in_the_server(deployment, ca_files):
    jupyter = client(deployment, ca_files)
    try:
        assert jupyter.execute(PLANT) == f"True {USER_SITE}\n"
        deployment.ssh(HOST, "systemctl restart jupyter")
        anonymous = Jupyter(f"https://{deployment.address(HOST)}/jupyter/", ca_file=str(ca_files[HOST]))
        assert anonymous.get("api/contents").status_code == 403, "the planted config switched the password off"
        assert 'type="password"' in anonymous.get("login").text
        # Kernels still get the user site (the plant is live there), the server did not.
        fresh = client(deployment, ca_files)
        fresh.execute("print(1)")
        ran = deployment.ssh(
            HOST,
            "cat /var/lib/jupyter/planted-pth-ran 2>/dev/null; "
            "ls /var/lib/jupyter/planted-config-ran 2>/dev/null; true",
        ).stdout
        assert "ipykernel_launcher" in ran, "positive control: the .pth should run in kernels"
        assert not [line for line in ran.splitlines() if "-m notebook" in line or "jupyter-notebook" in line], ran
        assert "planted-config-ran" not in ran
    finally:
        deployment.ssh(HOST, CLEAN)
        deployment.ssh(HOST, "systemctl restart jupyter")
