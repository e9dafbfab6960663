"""
scripts/ci-deploy, the one script the GitHub workflow calls, run as CI runs it against the
converged lab hosts: pinned tools installed into a venv, deploy, summary, smoke check;
the drift check (--dry) catches a hand edit and the next deploy repairs it; an unknown SSH
host key stops it before anything is touched. And the smoke command on its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from lab import standin
from smoke.report import COLUMNS
from tests.e2e.scenario import FIGURES, PASSWORD, ROOT, TIMINGS, ci_deploy
from tests.test_smoke_report import parsed

VHOST = "/etc/apache2/sites-available/jupyter.conf"


@pytest.fixture(scope="module")
def ci(deployment, ci_deploy_venv, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ci-deploy")

    def run(*args, inventory=None, password=PASSWORD, timeout=900):
        inventory = str(inventory or deployment.write_inventory())
        return ci_deploy(workdir, ci_deploy_venv, *args, inventory, env={"JUPYTER_PASSWORD": password}, timeout=timeout)

    started = time.monotonic()
    first = run()
    TIMINGS["ci-deploy: pinned install + deploy + smoke, 3 hosts"] = time.monotonic() - started
    return run, first


def rows(summary: str) -> dict[str, str]:
    """The summary's table as {host: cell}, with the cell's escaped pipes unescaped."""
    table = {}
    for line in summary.splitlines():
        if line.startswith("| 169.254."):
            cells = re.split(r"(?<!\\)\|", line)
            table[cells[1].strip()] = cells[2].strip().replace("\\|", "|")
    return table


def test_deploy_on_converged_hosts_changes_nothing_and_smoke_passes(ci, deployment):
    _, (result, summary) = ci
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert rows(summary) == {deployment.address(name): "nothing" for name in deployment.names}
    for name in deployment.names:
        assert f"ok    {deployment.address(name)}  login " in summary
    assert summary.rstrip().endswith("**OK**")
    # The summary went to stdout too (the job log), and pyinfra's own log to stderr.
    assert "Smoke check" in result.stdout and "--> Starting operation" in result.stderr


def test_slices_deployed_side_by_side_report_as_one(ci, deployment, tmp_path):
    """--shards 2: two pyinfra processes, each over its slice of the inventory; one report, and
    one fleet page (--report) of both slices' hosts."""
    run, _ = ci
    started = time.monotonic()
    page = tmp_path / "fleet.html"
    result, summary = run("--shards", "2", "--report", str(page))
    FIGURES["ci-deploy --shards 2, converged hosts"] = f"{time.monotonic() - started:.1f} s"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 slices of the inventory" in summary and summary.rstrip().endswith("**OK**")
    assert rows(summary) == {deployment.address(name): "nothing" for name in deployment.names}
    assert summary.count("ok    169.254.") == len(deployment.names)
    # Each host was deployed by exactly one of the two processes.
    slices = {index: int(count) for index, count in re.findall(r"ci-deploy: slice (\d)/2: (\d+) host", result.stderr)}
    assert set(slices) == {"1", "2"} and sum(slices.values()) == len(deployment.names), slices
    table = parsed(page.read_text())
    seen = {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in table.rows}
    assert set(seen) == {deployment.address(name) for name in deployment.names}, seen
    assert "failed" not in table.row_classes, seen
    for row in seen.values():
        assert row["Check"] == "ok" and row["Answered"].startswith("yes") and row["Kernel"] != "—", row
        assert "jupyter-server " in row["Jupyter server (Python and packages running)"], row


def test_drift_check_passes_on_converged_hosts(ci):
    run, _ = ci
    result, summary = run("--dry")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Drift" not in summary and summary.rstrip().endswith("**OK**")


def test_a_hand_edit_is_reported_as_drift_and_the_next_deploy_repairs_it(ci, deployment):
    run, _ = ci
    nb2 = deployment.address("nb2")
    deployment.ssh("nb2", f"echo '# edited by hand' >> {VHOST}")
    drift, summary = run("--dry")
    assert drift.returncode == 1
    # The edited vhost is newer than Apache's last reload: that reload is owed unconditionally.
    assert (
        rows(summary)[nb2] == "Apache reverse proxy | Jupyter vhost (:80 redirect, :443 proxy), "
        "Apache reverse proxy | Reload Apache (after configtest)"
    )
    assert rows(summary)[deployment.address("nb1")] == "nothing"
    assert "Drift: 1 host(s) differ" in summary and summary.rstrip().endswith("**FAILED**")
    assert "# edited by hand" in deployment.ssh("nb2", f"cat {VHOST}").stdout  # --dry changed nothing

    repaired, summary = run()
    assert repaired.returncode == 0, repaired.stdout[-3000:]
    assert rows(summary)[nb2].startswith("Apache reverse proxy | Jupyter vhost")
    assert "# edited by hand" not in deployment.ssh("nb2", f"cat {VHOST}").stdout
    assert run("--dry")[0].returncode == 0


def test_an_unknown_ssh_host_key_stops_the_job_before_any_change(ci, deployment, tmp_path):
    run, _ = ci
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inventory = deployment.write_inventory(
        {
            name: {"ssh_known_hosts_file": str(empty), "ssh_strict_host_key_checking": "accept-new"}
            for name in deployment.names
        }
    )
    result, summary = run(inventory=inventory)
    assert result.returncode != 0
    assert empty.read_text() == ""  # nothing was accepted
    assert "Smoke check" not in summary


def test_a_failed_canary_stops_the_rollout_and_the_others_are_not_touched(ci, deployment, lab, standin_releases):
    """--canary 1 with a broken release everywhere (its server cannot start): the first host
    installs it beside its distribution, the check fails, nothing is switched; the others are
    never connected to. On converged hosts the canary passes and the others follow."""
    run, _ = ci
    first, *others = deployment.names
    path, digest = standin_releases["cannot-start"]
    release = {"conda_installer_url": lab.url(standin.url_path(path)), "conda_installer_sha256": digest}
    broken = deployment.write_inventory({name: release for name in deployment.names})
    started = time.monotonic()
    stopped, summary = run("--canary", "1", inventory=broken)
    FIGURES["ci-deploy --canary 1, a release that cannot start: stopped after"] = f"{time.monotonic() - started:.1f} s"
    assert stopped.returncode == 1, stopped.stdout[-3000:]
    assert f"Canary: {deployment.address(first)}, deployed and smoke-checked before the others." in summary
    # pyinfra gives no report when every host of its run failed: the log says why.
    assert rows(summary) == {deployment.address(first): "**failed: no report from pyinfra, see the log above**"}, (
        summary
    )
    assert f"the new distribution {digest[:16]} failed its check" in stopped.stderr, stopped.stderr[-3000:]
    assert f"**Canary failed: the other {len(others)} host(s) were not deployed.**" in summary
    assert summary.rstrip().endswith("**FAILED**")
    for name in others:
        assert f"[{deployment.address(name)}]" not in stopped.stderr, f"{name} was deployed"
    # Every host still runs its distribution: the canary's was never switched, the others' never touched.
    for name in deployment.names:
        marker = deployment.ssh(name, "cat /opt/anaconda3/.jupyter-deploy-installer").stdout.strip()
        assert marker == deployment.installer_sha256, name
    for name in others:
        assert deployment.ssh(name, f"ls /opt/anaconda3.dists/{digest[:16]}", check=False).returncode != 0, name

    passed, summary = run("--canary", "1")
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    assert rows(summary) == {deployment.address(name): "nothing" for name in deployment.names}
    assert summary.count("ok    169.254.") == len(deployment.names) and summary.rstrip().endswith("**OK**")


def smoke(*args, password=PASSWORD):
    return subprocess.run(
        [sys.executable, "-m", "smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "JUPYTER_PASSWORD": password},
        timeout=120,
    )


def test_smoke_command_one_line_per_host(deployment, ca_files, tmp_path):
    bundle = tmp_path / "trust.pem"
    bundle.write_text("".join(ca_files[name].read_text() for name in deployment.names))
    addresses = [deployment.address(name) for name in deployment.names]
    result = smoke("--ca-file", str(bundle), *addresses)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", address] for address in addresses]
    assert all("login" in line and "kernel" in line and "cell" in line for line in lines)
    FIGURES["smoke check, 3 hosts"] = lines[0]


def test_smoke_command_fails_on_a_wrong_password_and_an_untrusted_certificate(deployment, ca_files):
    nb1 = deployment.address("nb1")
    wrong = smoke("--ca-file", str(ca_files["nb1"]), nb1, password="not the password")
    assert wrong.returncode == 1
    assert wrong.stdout.startswith(
        f"FAIL  {nb1}  login answered 401: is JUPYTER_PASSWORD this host's notebook password?"
    )
    untrusted = smoke(nb1)  # the system CAs do not know the self-signed certificate
    assert untrusted.returncode == 1
    assert "its certificate is not trusted (a self-signed host is checked with --ca-file FILE" in untrusted.stdout
    assert "not the password" not in wrong.stdout + wrong.stderr
