"""
uninstall.py on a real host (nb2): the deploy goes, the notebooks stay; a second uninstall
changes nothing; deploying again serves the same notebook. Last in the session's order
(it replaces nb2's self-signed certificate: ca_files is refreshed for anything after it).
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from smoke.client import Jupyter
from tests.e2e.scenario import FIGURES, PASSWORD, TIMINGS

NAME = "nb2"
NOTEBOOK = "kept across uninstall.ipynb"
NOTEBOOK_JSON = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
# What the deploy leaves that uninstall must remove (paths), beside services and rules.
DEPLOY_PATHS = [
    "/etc/systemd/system/jupyter.service",
    "/etc/jupyter",
    "/usr/local/lib/jupyter-deploy",
    "/etc/apache2/sites-available/jupyter.conf",
    "/etc/apache2/sites-enabled/jupyter.conf",
    "/etc/apache2/conf-available/zz-jupyter-hardening.conf",
    "/etc/ssl/certs/jupyter-apache.crt",
    "/etc/ssl/private/jupyter-apache.key",
    "/etc/fail2ban/jail.d/jupyter-apache-deploy.local",
    "/etc/fail2ban/filter.d/jupyter-login.conf",
    "/var/lib/jupyter-apache-deploy/apache-reloaded",
    "/var/lib/jupyter-apache-deploy/default-site-disabled",
]
RECORD = "/var/lib/jupyter-apache-deploy/created"


def jupyter_client(deployment, ca_files) -> Jupyter:
    jupyter = Jupyter(f"https://{deployment.address(NAME)}/jupyter/", ca_file=str(ca_files[NAME]))
    jupyter.login(PASSWORD)
    return jupyter


@pytest.fixture(scope="module")
def uninstalled(deployment, ca_files):
    one = deployment.only(NAME)
    jupyter_client(deployment, ca_files).api(
        "PUT", "contents/" + quote(NOTEBOOK), json={"type": "notebook", "format": "json", "content": NOTEBOOK_JSON}
    )
    notebook_hash = deployment.ssh(NAME, f"sha256sum '/srv/jupyter/{NOTEBOOK}'").stdout.split()[0]
    first = one.pyinfra("-vvv", script="uninstall.py")
    state = {
        "first": first,
        "processes": deployment.ssh(NAME, "pgrep -u jupyter -c || true").stdout.strip(),
        "listening": deployment.ssh(NAME, "ss -Hltn").stdout,
        "configtest": deployment.ssh(NAME, "apache2ctl configtest", check=False),
        "http": deployment.ssh(NAME, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/ || true").stdout,
        "page": deployment.ssh(NAME, "curl -s http://127.0.0.1/ || true").stdout,
        "modules": deployment.ssh(NAME, "ls /etc/apache2/mods-enabled").stdout.split(),
        "left": deployment.ssh(NAME, " ".join(["ls -d", *DEPLOY_PATHS, "2>/dev/null; true"])).stdout.split(),
        "ufw": deployment.ssh(NAME, "ufw show added").stdout,
        "notebook": deployment.ssh(NAME, f"sha256sum '/srv/jupyter/{NOTEBOOK}'", check=False).stdout.split()[:1],
        "record": deployment.ssh(NAME, f"ls -A /var/lib/jupyter-apache-deploy; cat {RECORD}", check=False).stdout,
        "notebook_hash": notebook_hash,
    }
    state["second"] = one.pyinfra(script="uninstall.py")
    state["redeploy"] = one.pyinfra()
    # A new self-signed certificate: tests after this one trust it.
    ca_files[NAME].write_text(deployment.ssh(NAME, "cat /etc/ssl/certs/jupyter-apache.crt").stdout)
    state["converged"] = one.pyinfra()
    return state


def test_uninstall_removes_the_service_the_site_and_the_rules(uninstalled):
    first = uninstalled["first"]
    assert first.returncode == 0, first.output[-3000:]
    TIMINGS["uninstall.py, one host"] = first.seconds
    assert uninstalled["processes"] == "0"
    assert ":8888 " not in uninstalled["listening"]
    assert uninstalled["left"] == [], uninstalled["left"]
    assert uninstalled["configtest"].returncode == 0, uninstalled["configtest"].stderr
    # Apache's default site is back (the deploy had disabled it), and only what it needs.
    assert uninstalled["http"] == "200" and "Apache2 Debian Default Page" in uninstalled["page"]
    assert not {"proxy.load", "proxy_http.load", "rewrite.load", "headers.load", "ssl.load"} & set(
        uninstalled["modules"]
    )
    assert "allow 80/tcp" not in uninstalled["ufw"] and "allow 443/tcp" not in uninstalled["ufw"]
    assert "ufw allow 22/tcp" in uninstalled["ufw"]
    printed = re.findall(r"(?:removed|re-enabled|kept): [^\n]*", first.output)
    assert "re-enabled: Apache's default site (the deploy had disabled it)" in printed, first.output[-3000:]
    FIGURES["uninstall: what it printed"] = "; ".join(printed)[:2000]


def test_uninstall_keeps_the_notebooks_and_a_second_one_changes_nothing(uninstalled):
    assert uninstalled["notebook"] == [uninstalled["notebook_hash"]]
    # What the deploy knows it created stays recorded: a later purge may delete it.
    assert uninstalled["record"] == "created\nnotebook_dir /srv/jupyter\n"
    second = uninstalled["second"]
    assert second.returncode == 0 and second.totals["success"] == 0, second.changed()


def test_deploying_again_serves_the_same_notebook(uninstalled, deployment, ca_files):
    redeploy = uninstalled["redeploy"]
    assert redeploy.returncode == 0, redeploy.output[-3000:]
    assert uninstalled["converged"].totals["success"] == 0, uninstalled["converged"].changed()
    listed = {item["name"] for item in jupyter_client(deployment, ca_files).api("GET", "contents").json()["content"]}
    assert NOTEBOOK in listed
    assert json.loads(deployment.ssh(NAME, f"cat '/srv/jupyter/{NOTEBOOK}'").stdout)["nbformat"] == 4
    deployment.ssh(NAME, f"rm -f '/srv/jupyter/{NOTEBOOK}'")


ADMIN_SITE = """<VirtualHost *:80>
    ServerName other.example
    RewriteEngine On
    RewriteRule ^/old$ /new [R=301,L]
</VirtualHost>
"""


@pytest.fixture(scope="module")
def purged(uninstalled, deployment):
    """nb2 made an admin's host first (a user alice, a ufw rule for 443, a second site using
    rewrite), then deployed; then purged with jupyter_user = 'alice' by mistake, then purged
    as deployed."""
    one = deployment.only(NAME)
    cleared = one.pyinfra(script="uninstall.py")
    assert cleared.returncode == 0, cleared.output[-3000:]
    deployment.ssh(
        NAME,
        "useradd -m -s /bin/bash alice && echo 'alice was here' > /home/alice/notes.txt && "
        "ufw allow 443/tcp && a2enmod -q rewrite && "
        f"cat > /etc/apache2/sites-available/other.conf <<'EOF'\n{ADMIN_SITE}EOF\n"
        "a2ensite -q other && systemctl reload apache2",
    )
    redeploy = one.pyinfra()
    assert redeploy.returncode == 0, redeploy.output[-3000:]
    state = {"record": deployment.ssh(NAME, f"cat {RECORD}").stdout.splitlines()}
    state["wrong_user"] = one.pyinfra(
        "-v", script="uninstall.py", overrides={NAME: {"jupyter_user": "alice", "uninstall_purge": True}}
    )
    state["after_wrong_user"] = {
        "alice": deployment.ssh(NAME, "getent passwd alice && cat /home/alice/notes.txt", check=False).stdout,
        "ufw": deployment.ssh(NAME, "ufw show added").stdout,
        "modules": deployment.ssh(NAME, "ls /etc/apache2/mods-enabled").stdout.split(),
        "site": deployment.ssh(
            NAME, "curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: other.example' http://127.0.0.1/old"
        ).stdout,
        "configtest": deployment.ssh(NAME, "apache2ctl configtest", check=False).returncode,
        "left": deployment.ssh(
            NAME, "ls -d /srv/jupyter /opt/anaconda3 /opt/anaconda3.dists /var/lib/jupyter 2>/dev/null; true"
        ).stdout.split(),
    }
    state["purge"] = one.pyinfra("-v", script="uninstall.py", overrides={NAME: {"uninstall_purge": True}})
    state["jupyter_account"] = deployment.ssh(NAME, "getent passwd jupyter", check=False).returncode
    state["again"] = one.pyinfra(script="uninstall.py", overrides={NAME: {"uninstall_purge": True}})
    return state


def test_the_deploy_records_only_what_it_added(purged):
    record = purged["record"]
    assert "ufw allow 80/tcp" in record and "ufw allow 443/tcp" not in record, record
    assert "module proxy" in record and "module rewrite" not in record, record


def test_purge_leaves_what_the_deploy_did_not_make_and_says_why(purged):
    wrong = purged["wrong_user"]
    assert wrong.returncode == 0, wrong.output[-3000:]
    after = purged["after_wrong_user"]
    assert after["alice"].startswith("alice:") and after["alice"].endswith("alice was here\n"), after["alice"]
    assert "kept: user alice (not created by this deploy" in wrong.output
    assert "ufw allow 443/tcp" in after["ufw"] and "ufw allow 80/tcp" not in after["ufw"], after["ufw"]
    assert "kept: firewall rule allow 443/tcp" in wrong.output
    assert "rewrite.load" in after["modules"] and "proxy.load" not in after["modules"], after["modules"]
    assert "kept: module rewrite" in wrong.output
    assert after["configtest"] == 0 and after["site"] == "301 http://other.example/new", after["site"]
    # What the deploy made is gone: the notebooks it created, the distribution it installed.
    assert after["left"] == ["/var/lib/jupyter"], after["left"]
    FIGURES["uninstall purge, wrong user: what it kept"] = "; ".join(re.findall(r"kept: [^\n]*", wrong.output))


def test_purge_with_the_deploys_own_user_removes_it_and_then_changes_nothing(purged):
    assert purged["purge"].returncode == 0, purged["purge"].output[-3000:]
    assert "removed: user jupyter and its home" in purged["purge"].output
    assert purged["jupyter_account"] != 0
    again = purged["again"]
    assert again.returncode == 0 and again.totals["success"] == 0, again.changed()
