"""
Failures in the middle of a deploy never leave a host worse than before: bad input stops
the run before anything changes, a config Apache rejects never goes live (the site keeps
answering throughout), one failing host does not stop the others, an installer killed
half-way is repaired, and the proxied server holds up under concurrent kernels.
"""

import hashlib
import statistics
import threading
import time

import pytest
import requests

from smoke.client import Jupyter, _run_cell
from tests.e2e.scenario import FIGURES, PASSWORD

WATCHED = "/etc/jupyter/jupyter_server_config.py /etc/jupyter/password_hash /etc/apache2/sites-available/jupyter.conf"


def fingerprint(deployment, name):
    return deployment.ssh(name, f"sha256sum {WATCHED}").stdout


BAD_INPUT = [
    ({"jupyter_port": 70000}, "setting jupyter_port = 70000 is not allowed: must be an integer from 1 to 65535"),
    ({"jupyter_port": "http"}, "setting jupyter_port = 'http' is not allowed"),
    ({"jupyter_base_url": "jupyter"}, "setting jupyter_base_url = 'jupyter' is not allowed"),
    ({"jupyter_base_url": "/my notebooks/"}, "setting jupyter_base_url = '/my notebooks/' is not allowed"),
    ({"server_name": "not a host!"}, "setting server_name = 'not a host!' is not allowed"),
    ({"jupyter_password_hash": "hunter2"}, "setting jupyter_password_hash = (value hidden) is not allowed"),
    ({"conda_installer_sha256": "abc"}, "setting conda_installer_sha256 = 'abc' is not allowed"),
    ({"conda_prefix": "opt/anaconda3"}, "setting conda_prefix = 'opt/anaconda3' is not allowed"),
    ({"tls_mode": "letsencrypt-please"}, "setting tls_mode = 'letsencrypt-please' is not allowed"),
    ({"jupyter_prot": 8888}, "unknown setting 'jupyter_prot': did you mean 'jupyter_port'?"),
    ({"pip_packages": ["numpy; rm -rf /"]}, "setting pip_packages = ['numpy; rm -rf /'] is not allowed"),
    (
        {"conda_packages": ["https://example.org/evil.tar.bz2"]},
        "setting conda_packages = ['https://example.org/evil.tar.bz2'] is not allowed",
    ),
    # Security review: a system directory to chown, an address that would add lines to the vhost.
    ({"notebook_dir": "/etc"}, "setting notebook_dir = '/etc' is not allowed"),
    ({"server_name": 'fe80::1%"\nCustomLog'}, "setting server_name = 'fe80::1%\"\\nCustomLog' is not allowed"),
]


@pytest.mark.parametrize(
    "data,message", BAD_INPUT, ids=[next(iter(d)) + "=" + repr(next(iter(d.values()))) for d, _ in BAD_INPUT]
)
def test_bad_input_is_refused_before_any_host_changes(deployment, data, message):
    before = {name: fingerprint(deployment, name) for name in ("nb1", "nb2")}
    run = deployment.pyinfra(overrides={"nb2": data})
    assert run.returncode != 0
    assert message in run.output
    assert "hunter2" not in run.output
    assert "Beginning operation run" not in run.output
    assert {name: fingerprint(deployment, name) for name in ("nb1", "nb2")} == before


def test_an_existing_account_stops_its_host_at_the_first_operation(deployment):
    """Host state, not input: read by the run's first operation (host_checks), before any change."""
    before = {name: fingerprint(deployment, name) for name in ("nb1", "nb2")}
    run = deployment.pyinfra(overrides={"nb2": {"jupyter_user": "www-data"}})
    assert run.returncode != 0
    assert (
        "setting jupyter_user = 'www-data' is not allowed: must be an account this deploy creates; "
        "'www-data' already exists" in run.output
    )
    assert "hunter2" not in run.output
    # The other host's run went on (and had nothing to change); neither host changed.
    assert {name: fingerprint(deployment, name) for name in ("nb1", "nb2")} == before


def test_no_password_at_all_is_refused(deployment):
    run = deployment.pyinfra(password="")
    assert run.returncode != 0
    assert "jupyter_password_hash is not set and JUPYTER_PASSWORD is empty" in run.output


class Poller(threading.Thread):
    """Fetches a page every 50 ms until stopped; counts answers that are not 200."""

    def __init__(self, url, ca_file):
        super().__init__(daemon=True)
        self.url, self.ca_file = url, ca_file
        self.done = threading.Event()
        self.ok = 0
        self.failures = []

    def run(self):
        while not self.done.is_set():
            try:
                status = requests.get(self.url, verify=self.ca_file, timeout=5).status_code
            except requests.RequestException as error:
                status = repr(error)
            if status == 200:
                self.ok += 1
            else:
                self.failures.append(status)
            time.sleep(0.05)


def test_a_config_apache_rejects_never_goes_live(deployment, ca_files):
    vhost = "/etc/apache2/sites-available/jupyter.conf"
    before = deployment.ssh("nb2", f"sha256sum {vhost}").stdout
    poller = Poller(f"https://{deployment.address('nb2')}/jupyter/login", str(ca_files["nb2"]))
    poller.start()
    try:
        run = deployment.pyinfra(overrides={"nb2": {"apache_extra_directives": ["NotADirective on"]}})
    finally:
        poller.done.set()
        poller.join()
    FIGURES["site answers during the rejected-config run"] = f"{poller.ok} OK, {len(poller.failures)} failed"
    assert run.returncode != 0
    assert "Invalid command 'NotADirective'" in run.output  # Apache's own error text
    assert f"Apache rejected {vhost}" in run.output
    assert deployment.address("nb2") in run.output
    journal = deployment.ssh("nb2", "journalctl -u jupyter -u apache2 --since -3min --no-pager | tail -40").stdout
    assert poller.failures == [] and poller.ok > 10, f"{run.changed()}\n{journal}"
    assert deployment.ssh("nb2", f"sha256sum {vhost}").stdout == before
    assert deployment.ssh("nb2", "ls /etc/apache2/sites-enabled/").stdout.split() == ["jupyter.conf"]
    assert deployment.ssh("nb2", "apache2ctl configtest", check=False).returncode == 0
    # The other hosts were not held back by nb2's failure.
    assert set(run.changed()) <= {deployment.address("nb2")}
    again = deployment.pyinfra()
    assert again.returncode == 0 and again.changed() == {}


def test_one_failing_host_does_not_sink_the_fleet(deployment, ca_files):
    """nb3 gets an installer whose sha256 does not match: it fails, nb1 and nb2 converge."""
    wrong = hashlib.sha256(b"not the installer").hexdigest()
    before = fingerprint(deployment, "nb3")
    run = deployment.pyinfra(overrides={"nb1": {"jupyter_terminals": False}, "nb3": {"conda_installer_sha256": wrong}})
    try:
        assert run.returncode != 0
        assert "sha256 mismatch" in run.output
        failed = [op["name"] for op in run.report["results"]["operations"] if deployment.address("nb3") in op["error"]]
        # The first failure is the verification; pyinfra counts the operations it then skipped as errors too.
        assert failed[0] == "Conda distribution | Install the conda distribution (sha256-verified, batch mode)"
        assert not [op for op in failed if op.startswith("System packages")]
        assert deployment.address("nb1") in run.changed()  # the healthy host converged in the same run
        # The failed host kept its working installation: the unverified installer never ran.
        assert fingerprint(deployment, "nb3") == before
        assert (
            deployment.ssh("nb3", "cat /opt/anaconda3/.jupyter-deploy-installer").stdout.strip()
            == deployment.installer_sha256
        )
        jupyter = Jupyter(f"https://{deployment.address('nb3')}/jupyter/", ca_file=str(ca_files["nb3"]))
        jupyter.login(PASSWORD)
        assert jupyter.execute("print(6*7)") == "42\n"
    finally:
        restored = deployment.pyinfra()
        assert restored.returncode == 0, restored.output[-3000:]


def test_installer_killed_half_way_is_repaired(deployment, ca_files):
    """A prefix without the completion marker is updated in place (-u) by the next run."""
    deployment.ssh("nb3", "systemctl stop jupyter && rm -rf /opt/anaconda3 /opt/anaconda3.dists")
    deployment.pyinfra_killed_at("Starting operation: Conda distribution | Install the conda", delay=4)
    state = deployment.ssh(
        "nb3",
        "ls /opt/anaconda3 >/dev/null 2>&1 && echo prefix; "
        "test -e /opt/anaconda3/.jupyter-deploy-installer && echo marker; true",
    ).stdout.split()
    assert "marker" not in state
    resumed = deployment.pyinfra()
    assert resumed.returncode == 0, resumed.output[-3000:]
    third = deployment.pyinfra()
    assert third.changed() == {}
    jupyter = Jupyter(f"https://{deployment.address('nb3')}/jupyter/", ca_file=str(ca_files["nb3"]))
    jupyter.login(PASSWORD)
    assert jupyter.execute("print(6*7)") == "42\n"


def test_ten_concurrent_kernels_for_a_minute(deployment, ca_files, quiet):
    """10 clients, each with its own kernel, run cells through Apache for 60 s: no failures."""
    latencies, failures = [], []
    lock = threading.Lock()
    stop_at = time.monotonic() + 60

    def worker(index):
        name = ("nb1", "nb2")[index % 2]
        try:
            jupyter = Jupyter(f"https://{deployment.address(name)}/jupyter/", ca_file=str(ca_files[name]))
            jupyter.login(PASSWORD)
            kernel = jupyter.start_kernel()
            ws = jupyter.websocket(f"api/kernels/{kernel}/channels")
        except Exception as error:  # noqa: BLE001 - every failure is counted
            with lock:
                failures.append(repr(error))
            return
        count = 0
        try:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                try:
                    output = _run_cell(ws, f"print({index} * {count})", 20)
                    ok = output == f"{index * count}\n"
                except Exception as error:  # noqa: BLE001
                    ok, output = False, repr(error)
                with lock:
                    if ok:
                        latencies.append(time.monotonic() - started)
                    else:
                        failures.append(output)
                count += 1
        finally:
            ws.close()
            jupyter.api("DELETE", f"kernels/{kernel}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    FIGURES["load: 10 kernels through Apache, 60 s"] = (
        f"{len(latencies)} cells, {len(failures)} failed, p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    assert failures == []
    assert len(latencies) > 100
