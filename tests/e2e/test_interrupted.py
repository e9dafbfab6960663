"""
Runs killed half-way converge: a run interrupted after it wrote Jupyter's config but
before the restart, or after it wrote the vhost but before Apache's reload, leaves that
config unapplied; the next run must still apply it, and the one after changes nothing.
"""

import requests

from smoke.client import Jupyter
from tests.e2e.scenario import PASSWORD

CONFIG_WRITTEN = "Starting operation: Jupyter Notebook service | Jupyter password hash"
VHOST_WRITTEN = "Starting operation: Apache reverse proxy | Disable Apache's default site"


def terminals_status(deployment, ca_files, base="/jupyter/"):
    jupyter = Jupyter(f"https://{deployment.address('nb3')}{base}", ca_file=str(ca_files["nb3"]))
    jupyter.login(PASSWORD)
    return jupyter.session.post(
        jupyter.base + "api/terminals", headers={"X-XSRFToken": jupyter.xsrf()}, verify=jupyter.verify, timeout=20
    ).status_code


def test_killed_before_the_jupyter_restart_converges(deployment, ca_files):
    overrides = {"nb3": {"jupyter_terminals": False}}
    try:
        deployment.pyinfra_killed_at(CONFIG_WRITTEN, overrides=overrides)
        config = deployment.ssh("nb3", "cat /etc/jupyter/jupyter_server_config.py").stdout
        assert "c.ServerApp.terminals_enabled = False" in config
        assert terminals_status(deployment, ca_files) == 200, "the killed run should not have restarted Jupyter"

        resumed = deployment.pyinfra(overrides=overrides)
        assert resumed.returncode == 0, resumed.output[-3000:]
        changed = resumed.changed()[deployment.address("nb3")]
        assert "Jupyter Notebook service | Jupyter running with its current config and packages" in changed
        # A Jupyter-only change leaves Apache alone.
        assert not [op for op in changed if op.startswith("Apache reverse proxy")], changed
        assert terminals_status(deployment, ca_files) == 404, "terminals are still on: the new config is not live"

        third = deployment.pyinfra(overrides=overrides)
        assert third.changed() == {}
    finally:
        restored = deployment.pyinfra()
        assert restored.returncode == 0, restored.output[-3000:]


def test_killed_before_the_apache_reload_converges(deployment, ca_files):
    overrides = {"nb3": {"jupyter_base_url": "/after-kill/"}}
    address = deployment.address("nb3")
    try:
        deployment.pyinfra_killed_at(VHOST_WRITTEN, overrides=overrides)
        vhost = deployment.ssh("nb3", "cat /etc/apache2/sites-available/jupyter.conf").stdout
        assert "ProxyPass /after-kill/" in vhost
        not_live = requests.get(f"https://{address}/after-kill/login", verify=str(ca_files["nb3"]), timeout=10)
        assert not_live.status_code == 404, "the killed run should not have reloaded Apache"

        resumed = deployment.pyinfra(overrides=overrides)
        assert resumed.returncode == 0, resumed.output[-3000:]
        assert resumed.changed()[address] == ["Apache reverse proxy | Reload Apache (after configtest)"]
        jupyter = Jupyter(f"https://{address}/after-kill/", ca_file=str(ca_files["nb3"]))
        jupyter.login(PASSWORD)
        assert jupyter.execute("print(6*7)") == "42\n"

        third = deployment.pyinfra(overrides=overrides)
        assert third.changed() == {}
    finally:
        restored = deployment.pyinfra()
        assert restored.returncode == 0, restored.output[-3000:]
