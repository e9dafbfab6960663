"""The whole deploy.py through pyinfra's API against `@fake` hosts (no real host).

A fresh host must get every step in order; a converged host (facts canned to what a
finished deploy leaves behind) must get nothing but fact commands; a changed setting
must change (and restart) only what depends on it. Secrets never reach a command.
"""

import re
import runpy
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operations import run_ops
from pyinfra.connectors.fake import FakeConnector

from lab.fake_hosts import FRESH, NAME, PASSWORD, FakeDownloads, converged_responses, file_facts, stat
from operations import apache, jupyter, letsencrypt, login_ban, passwords, settings

ROOT = Path(__file__).resolve().parent.parent


def run_deploy(monkeypatch, hosts, password=PASSWORD, failing=(), yes=False):
    """Run deploy.py for ``[(name, data)]`` on @fake hosts; returns {name: (commands, changed ops)}.

    ``yes``: as ``pyinfra -y`` runs it (no change detection while planning)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(FakeConnector, "get_file", FakeDownloads.get_file)
    monkeypatch.setenv(settings.PASSWORD_ENV, password)
    inventory = Inventory(([(name, {"fake_delay": 0, "fake_delay_jitter": 0, **data}) for name, data in hosts], {}))
    state = State(inventory, Config(), check_for_changes=not yes)
    connect_all(state)
    add_deploy(state, lambda: runpy.run_path(str(ROOT / "deploy.py")))
    try:
        run_ops(state)
    except PyinfraError as error:
        # pyinfra ends the run this way when every host has failed.
        assert failing and "No hosts remaining" in str(error)
    results = {}
    for host in inventory:
        changed = [
            next(iter(state.get_op_meta(op_hash).names))
            for op_hash in state.get_op_order()
            if (op_data := state.ops[host].get(op_hash))
            and op_data.operation_meta.is_complete()
            and op_data.operation_meta.did_change()
        ]
        results[host.name] = (host.connector.executed_commands, changed)
    assert sorted(host.name for host in state.failed_hosts) == sorted(failing)
    return results


def test_fresh_host_gets_every_step_in_order(monkeypatch):
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": FRESH})]
    ).values()
    joined = "\n".join(commands)
    steps = [
        "apt-get update",
        "install curl ca-certificates bzip2 openssl apache2 ufw fail2ban python3-systemd nftables",
        f'bash "$d/installer.sh" -b -p {settings.DEFAULTS["conda_prefix"]}',
        "useradd -d /var/lib/jupyter -s /usr/sbin/nologin -r -c 'Jupyter Notebook (jupyter-apache-deploy)' -m jupyter",
        "mv /etc/jupyter/password_hash.pyinfra-tmp /etc/jupyter/password_hash",
        "systemctl daemon-reload",
        "systemctl start jupyter.service",
        "systemctl enable jupyter.service",
        "openssl req -x509",
        "a2enmod -q proxy proxy_http ssl headers rewrite",
        "a2enconf -q zz-jupyter-hardening",
        "a2ensite -q jupyter",
        "a2dissite -q 000-default",
        "apache2ctl configtest && systemctl reload-or-restart apache2",
        "ufw --force enable",
        "fail2ban-client --test",
        "systemctl reload-or-restart fail2ban",
        "systemctl enable fail2ban.service",
    ]
    positions = [joined.find(step) for step in steps]
    assert all(p >= 0 for p in positions), [s for s, p in zip(steps, positions, strict=True) if p < 0]
    assert positions == sorted(positions), "steps ran out of order"
    assert joined.count("apt-get update") == 1
    assert "a2enmod -q proxy_https" not in joined and "proxy_wstunnel" not in joined
    assert PASSWORD not in joined and "$argon2id$" not in joined
    assert len(changed) >= 15


def test_converged_host_runs_only_facts(monkeypatch):
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": converged_responses()})]
    ).values()
    assert changed == []
    change_words = (
        "apt-get install",
        "apt-get update",
        "useradd",
        "installer.sh",
        "systemctl start",
        "systemctl restart",
        "systemctl reload",
        "systemctl daemon-reload",
        "a2en",
        "a2dis",
        "openssl req",
        "ufw allow",
        "ufw --force",
        "mv ",
        "chmod",
        "chown",
        "mkdir",
    )
    assert [c for c in commands if any(w in c for w in change_words)] == []


def test_changed_port_rewrites_config_and_vhost_and_restarts_only_jupyter_and_apache(monkeypatch):
    [(commands, changed)] = run_deploy(
        monkeypatch,
        [("@fake/nb1", {"server_name": NAME, "jupyter_port": 8890, "fake_responses": converged_responses()})],
    ).values()
    assert "Jupyter Notebook service | Jupyter server config" in changed
    assert "Jupyter Notebook service | Restart Jupyter for its new config" in changed
    assert "Apache reverse proxy | Jupyter vhost (:80 redirect, :443 proxy)" in changed
    assert "Apache reverse proxy | Reload Apache (after configtest)" in changed
    assert not [op for op in changed if op.startswith(("Conda", "TLS", "Firewall", "System"))]
    assert not [op for op in changed if "password" in op]
    assert "systemctl restart jupyter.service" in commands


def test_new_password_changes_only_the_hash_and_restarts_jupyter(monkeypatch):
    responses = converged_responses()
    [(commands, changed)] = run_deploy(
        monkeypatch,
        [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})],
        password="a different password",
    ).values()
    assert changed == [
        "Jupyter Notebook service | Jupyter password hash (never shown)",
        "Jupyter Notebook service | Restart Jupyter for its new config",
    ]
    assert not [c for c in commands if "a different password" in c or "$argon2id$" in c]


def test_three_hosts_in_one_run_each_get_their_own_name(monkeypatch):
    hosts = [(f"@fake/nb{i}", {"server_name": f"nb{i}.test", "fake_responses": FRESH}) for i in (1, 2, 3)]
    results = run_deploy(monkeypatch, hosts)
    for i in (1, 2, 3):
        commands = "\n".join(results[f"@fake/nb{i}"][0])
        assert f"subjectAltName=DNS:nb{i}.test" in commands
        assert f"nb{(i % 3) + 1}.test" not in commands


@pytest.mark.parametrize("yes", [False, True], ids=["asking first", "-y"])
def test_config_an_interrupted_run_left_unapplied_is_applied(monkeypatch, yes):
    """Killed after writing files but before reloading/restarting: the next run still does it."""
    responses = converged_responses()
    # Same keys, so they keep their place ahead of the answers that would also match.
    responses[f"-newer {apache.RELOAD_STAMP}"] = f"/etc/apache2/sites-available/{apache.SITE}.conf"
    responses["NeedDaemonReload"] = [jupyter.CONFIG_FILE]
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})], yes=yes
    ).values()
    assert changed == [
        "Jupyter Notebook service | Restart Jupyter for its new config",
        "Apache reverse proxy | Reload Apache (after configtest)",
    ]
    assert "systemctl restart jupyter.service" in commands
    assert any(c.startswith("apache2ctl configtest && systemctl reload-or-restart apache2") for c in commands)


# -- tls_mode letsencrypt -----------------------------------------------------------------

ACME = "https://acme.test/dir"
LE_DATA = {"tls_mode": "letsencrypt", "acme_directory_url": ACME, "letsencrypt_email": "admin@nb.test"}
CERTBOT = "certbot certonly --non-interactive --agree-tos --email admin@nb.test --no-eff-email"


def test_letsencrypt_fresh_host_serves_port_80_before_certbot_then_switches(monkeypatch):
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, **LE_DATA, "fake_responses": FRESH})]
    ).values()
    joined = "\n".join(commands)
    steps = [
        "install curl ca-certificates bzip2 openssl certbot apache2 ufw",
        "openssl req -x509",  # the fallback certificate, so the first vhost passes configtest
        "a2ensite -q jupyter",
        "apache2ctl configtest && systemctl reload-or-restart apache2",
        "ufw --force enable",
        f"{CERTBOT} --server {ACME} --webroot -w {letsencrypt.WEBROOT} -d {NAME} --cert-name {NAME}",
        f"mv -f /etc/apache2/sites-available/{apache.SITE}.conf.pyinfra-new",
        "apache2ctl configtest && systemctl reload-or-restart apache2",
    ]
    position = 0
    for step in steps:
        found = joined.find(step, position)
        assert found >= 0, f"{step!r} missing or out of order"
        position = found + 1
    assert changed[-3:] == [
        "Let's Encrypt certificate | Certificate for the server name from the ACME server (certbot, webroot)",
        "Apache serves the issued certificate | Jupyter vhost on the issued certificate",
        "Apache serves the issued certificate | Reload Apache (after configtest)",
    ]
    assert "certbot.timer" in joined and letsencrypt.DEPLOY_HOOK in joined
    # Apache's version is read once while planning (the vhost for the new certificate needs none).
    assert joined.count("dpkg-query -W -f='${Version}") == 1
    assert "--apache" not in joined and "--installer" not in joined
    # No acme_ca_bundle: nothing is added to the host's trust store.
    assert "update-ca-certificates" not in joined


def test_letsencrypt_failed_issuance_fails_the_host_after_the_site_is_up(monkeypatch):
    responses = {"certbot certonly": {"stdout": [], "stderr": ["Detail: could not resolve"], "success": False}, **FRESH}
    [(commands, changed)] = run_deploy(
        monkeypatch,
        [("@fake/nb1", {"server_name": NAME, **LE_DATA, "fake_responses": responses})],
        failing=["@fake/nb1"],
    ).values()
    assert "Apache reverse proxy | Reload Apache (after configtest)" in changed
    assert "Firewall | Allow SSH, HTTP, HTTPS only" in changed
    assert not [op for op in changed if op.startswith("Apache serves the issued certificate")]


def letsencrypt_converged_responses():
    cert, key = letsencrypt.live_paths(NAME)
    data = {**settings.DEFAULTS, **LE_DATA}
    vhost = apache.vhost(
        NAME, data["jupyter_base_url"], data["jupyter_port"], cert, key, acme_webroot=letsencrypt.WEBROOT
    )
    hook = apache.render("certbot-deploy-hook.sh.j2", reload_stamp=apache.RELOAD_STAMP)
    responses = {
        f"-newer {apache.RELOAD_STAMP}": [],
        # Checked before the generic "openssl x509" answer, which would also match.
        f"{letsencrypt.LIVE}/{NAME}/fullchain.pem": ["valid", f"    DNS:{NAME}"],
        f"{letsencrypt.RENEWAL}/{NAME}.conf": [f"server={ACME}", "authenticator=webroot"],
        **converged_responses(),
        "--property SubState": [
            f"Id={jupyter.UNIT}.service",
            "SubState=running",
            "Id=certbot.timer",
            "SubState=waiting",
            f"Id={login_ban.SERVICE}.service",
            "SubState=running",
        ],
        "--property UnitFileState": [
            f"Id={jupyter.UNIT}.service",
            "UnitFileState=enabled",
            "Id=certbot.timer",
            "UnitFileState=enabled",
            f"Id={login_ban.SERVICE}.service",
            "UnitFileState=enabled",
        ],
        "dpkg -l": [
            f"ii  {p}  1.0-1  amd64  the {p} package"
            for p in ["curl", "ca-certificates", "bzip2", "openssl", "certbot", "apache2", "ufw", *login_ban.PACKAGES]
        ],
        re.compile(rf"test -e {letsencrypt.WEBROOT} \|\|"): stat(letsencrypt.WEBROOT, "root", "root", "drwxr-xr-x"),
        re.compile(r"test -e /etc/letsencrypt/renewal-hooks/deploy \|\|"): stat(
            "/etc/letsencrypt/renewal-hooks/deploy", "root", "root", "drwxr-xr-x"
        ),
    }
    responses.update(
        file_facts(f"/etc/apache2/sites-available/{apache.SITE}.conf", vhost, "root", "root", "-rw-r--r--")
    )
    responses.update(file_facts(letsencrypt.DEPLOY_HOOK, hook, "root", "root", "-rwxr-xr-x"))
    return responses


def test_letsencrypt_converged_host_requests_nothing(monkeypatch):
    [(commands, changed)] = run_deploy(
        monkeypatch,
        [("@fake/nb1", {"server_name": NAME, **LE_DATA, "fake_responses": letsencrypt_converged_responses()})],
    ).values()
    assert changed == []
    assert not [c for c in commands if "certbot certonly" in c or "openssl req" in c or "systemctl reload" in c]


def test_letsencrypt_certificate_from_another_server_is_replaced_and_reloaded(monkeypatch):
    responses = letsencrypt_converged_responses()
    responses[f"{letsencrypt.RENEWAL}/{NAME}.conf"] = [
        "server=https://acme-staging-v02.api.letsencrypt.org/directory",
        "authenticator=webroot",
    ]
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, **LE_DATA, "fake_responses": responses})]
    ).values()
    assert changed == [
        "Let's Encrypt certificate | Certificate for the server name from the ACME server (certbot, webroot)",
        "Apache serves the issued certificate | Reload Apache (after configtest)",
    ]
    assert any("certbot certonly" in c and "--force-renewal" in c for c in commands)


def test_an_existing_account_not_made_by_the_deploy_is_refused_before_any_change(monkeypatch):
    """www-data (which can read the htpasswd) or a person's login must not become the notebook user."""
    responses = {**FRESH, "getent passwd www-data": ["www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin"]}
    with pytest.raises(settings.SettingsError) as error:
        run_deploy(
            monkeypatch, [("@fake/nb1", {"server_name": NAME, "jupyter_user": "www-data", "fake_responses": responses})]
        )
    assert str(error.value).startswith(
        "@fake/nb1: setting jupyter_user = 'www-data' is not allowed: "
        "must be an account this deploy creates; 'www-data' already exists"
    )


def test_an_account_an_earlier_version_made_is_still_accepted(monkeypatch):
    """Deployed before the account carried the deploy's comment: home and config group say it is ours."""
    responses = converged_responses()
    responses["getent passwd jupyter"] = [
        "jupyter:x:999:999::/var/lib/jupyter:/usr/sbin/nologin",
        "config-group=jupyter",
    ]
    responses["command -v usermod"] = "/usr/sbin/usermod"
    responses["cat /etc/passwd | cut -d: -f1"] = (
        "jupyter:x:999:999::/var/lib/jupyter:/usr/sbin/nologin|jupyter|jupyter||!"
    )
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})]
    ).values()
    assert changed == ["Jupyter Notebook service | System user jupyter (no login shell)"]
    assert [c for c in commands if c.startswith("usermod")] == [
        "usermod -c 'Jupyter Notebook (jupyter-apache-deploy)' jupyter"
    ]


def test_a_fleet_sharing_a_password_costs_one_argon2_hash_per_run(monkeypatch):
    """The control machine's argon2 work does not grow with the number of hosts."""
    hashes = []
    real = passwords.hash_password

    def counted(*args, **kwargs):
        hashes.append(1)
        return real(*args, **kwargs)

    responses = converged_responses()  # one stored line, as this version leaves a fleet
    for fresh in (True, False):
        passwords.rehash_with.cache_clear()
        passwords.new_line.cache_clear()
        monkeypatch.setattr(passwords, "hash_password", counted)
        hashes.clear()
        hosts = [
            (f"@fake/nb{i}", {"server_name": NAME, "fake_responses": FRESH if fresh else responses})
            for i in range(1, 6)
        ]
        results = run_deploy(monkeypatch, hosts)
        assert len(hashes) == 1, (fresh, len(hashes))
        if not fresh:
            assert all(changed == [] for _, changed in results.values())


# Facts still read while planning, on purpose: an account this deploy did not make, and an
# Apache too old for the vhost, stop the host before anything on it changes.
PLANNING_FACTS = {"AccountOrigin", "ApacheVersion"}


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "converged"])
def test_with_y_nothing_but_the_two_safety_checks_reaches_the_host_while_planning(monkeypatch, fresh):
    import pyinfra.api.host

    read_while_planning = []
    real = pyinfra.api.host.get_fact

    def recording(state, host, cls, *args, **kwargs):
        if not state.is_executing:
            read_while_planning.append(cls.__name__)
        return real(state, host, cls, *args, **kwargs)

    monkeypatch.setattr(pyinfra.api.host, "get_fact", recording)
    responses = FRESH if fresh else converged_responses()
    results = run_deploy(monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})], yes=True)
    assert set(read_while_planning) == PLANNING_FACTS, read_while_planning
    if not fresh:
        assert results["@fake/nb1"][1] == []
