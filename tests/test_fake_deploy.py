"""The whole deploy.py through pyinfra's API against `@fake` hosts (no real host).

A fresh host must get every step in order; a converged host (facts canned to what a
finished deploy leaves behind) must get nothing but fact commands; a changed setting
must change (and restart) only what depends on it. Secrets never reach a command.
"""

import runpy
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operations import run_ops
from pyinfra.connectors.fake import FakeConnector

from operations import conda, hub, jupyter, letsencrypt, passwords, settings, snapshot, system, tls
from operations.jupyter import restarts
from tests.fake_hosts import (
    FRESH,
    NAME,
    PASSWORD,
    SERVER_PACKAGES,
    FakeDownloads,
    FakeHost,
    checked,
    converged_host,
    converged_responses,
    fresh_host,
)

ROOT = Path(__file__).resolve().parent.parent
# restart_policy 'when-idle' (the default): the run asks the host's script, which restarts
# at once only when nothing is busy.
RESTART_SCRIPT = restarts.script_command()
RESTART_WHEN_IDLE = f"{RESTART_SCRIPT} restart when-idle 24 {jupyter.layout.REPORT}"


def assert_in_order(joined: str, steps: list[str]) -> None:
    """Each of ``steps`` is in the run's commands (``joined``), in this order."""
    positions = [joined.find(step) for step in steps]
    assert all(p >= 0 for p in positions), [s for s, p in zip(steps, positions, strict=True) if p < 0]
    assert positions == sorted(positions), ("steps ran out of order", list(zip(steps, positions, strict=True)))


def run_deploy(monkeypatch, hosts, password=PASSWORD, failing=(), yes=False, script="deploy.py"):
    """Run deploy.py for ``[(name, data)]`` on @fake hosts; returns {name: (commands, changed ops)}.

    ``yes``: as ``pyinfra -y`` runs it (no change detection while planning); ``script``:
    restore.py or uninstall.py instead."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(FakeConnector, "get_file", FakeDownloads.get_file)
    monkeypatch.setenv(settings.PASSWORD_ENV, password)
    inventory = Inventory(([(name, {"fake_delay": 0, "fake_delay_jitter": 0, **data}) for name, data in hosts], {}))
    state = State(inventory, Config(), check_for_changes=not yes)
    connect_all(state)
    add_deploy(state, lambda: runpy.run_path(str(ROOT / script)))
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
        f"apt-get {system.APT_OPTIONS} update",
        "-o Dpkg::Options::=--force-confold install ",
        # The restart machinery before the distribution's switch, which restarts through it.
        "mv -f /etc/systemd/system/jupyter-restart-when-idle.timer.pyinfra-new",
        "systemctl daemon-reload",
        f"conda-install --lock {conda.LOCK} --marker {conda.MARKER} {settings.DEFAULTS['conda_installer_url']} "
        f"{settings.DEFAULTS['conda_installer_sha256']} "
        f"{settings.DEFAULTS['conda_prefix']}.dists/{settings.DEFAULTS['conda_installer_sha256'][:16]} install",
        f"-- link {settings.DEFAULTS['conda_prefix']} {settings.DEFAULTS['conda_prefix']}.dists/",
        "useradd --system --comment 'Jupyter Notebook (jupyter-apache-deploy)' --home-dir /var/lib/jupyter "
        "--create-home --shell /usr/sbin/nologin jupyter",
        "mv /etc/jupyter/password_hash.pyinfra-tmp /etc/jupyter/password_hash",
        "systemctl daemon-reload\nsystemctl start jupyter.service",
        "systemctl enable jupyter.service",
        "openssl req -x509",
        "apache-config-swap mods /var/lib/jupyter-apache-deploy/created proxy proxy_http ssl headers rewrite",
        "apache-config-swap conf zz-jupyter-hardening",
        "apache-config-swap sites jupyter",
        "a2dissite -q 000-default",
        "apache2ctl configtest\nsystemctl reload-or-restart apache2.service",
        "ufw --force enable",
        "fail2ban-client --test",
        "systemctl start fail2ban.service",
        "systemctl enable fail2ban.service",
        # Security updates daily, reboots that wait (operations/os_updates.py).
        "mv -f /etc/apt/apt.conf.d/52jupyter-apache-deploy-upgrades.pyinfra-new",
        "systemctl start jupyter-reboot-when-idle.timer",
        "systemctl enable jupyter-reboot-when-idle.timer",
    ]
    assert_in_order(joined, steps)
    assert joined.count(" update -q") == 1
    # unattended-upgrades installed by the deploy does not switch on Debian's own daily run.
    assert "unattended-upgrades unattended-upgrades/enable_auto_updates boolean false' | debconf-set-selections" in (
        joined
    )
    # Debian 12's apt waits forever for a delayed retry (operations/system.py): none is delayed.
    apt_commands = [c for c in commands if "apt-get " in c]
    assert len(apt_commands) == 2 and all("apt-get -o Acquire::Retries::Delay=false " in c for c in apt_commands)
    [install] = [c for c in commands if " install " in c and "apt-get" in c]
    assert set(install.split(" install ", 1)[1].split()) == set(
        "curl ca-certificates bzip2 openssl iproute2 apache2 ufw fail2ban nftables unattended-upgrades "
        "needrestart".split()
    )
    assert "a2enmod -q proxy_https" not in joined and "proxy_wstunnel" not in joined
    assert PASSWORD not in joined and "$argon2id$" not in joined
    assert len(changed) >= 15


def fresh_oidc_deploy(monkeypatch, secret: str, **data):
    """A fresh @fake host deployed with auth 'oidc' (client secret ``secret``) and ``data``:
    its commands and changed operations."""
    monkeypatch.setenv(settings.OIDC_CLIENT_SECRET_ENV, secret)
    data = {
        "server_name": NAME,
        "fake_responses": FRESH,
        "auth": "oidc",
        "oidc_issuer": "https://login.example.org",
        "oidc_client_id": "jupyter",
        "oidc_allowed": ["ada@example.org"],
        **data,
    }
    [(commands, changed)] = run_deploy(monkeypatch, [("@fake/nb1", data)], password="").values()
    return commands, changed


def test_fresh_host_with_single_sign_on_gets_its_secrets_before_jupyter_and_no_password(monkeypatch, tmp_path):
    ca = tmp_path / "provider-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    secret = "s3cr3t-FROM-the-provider-91"
    commands, changed = fresh_oidc_deploy(monkeypatch, secret, oidc_ca_bundle=str(ca), collaboration=True)
    joined = "\n".join(commands)
    steps = [
        "sign-in-secrets /etc/apache2/jupyter-sign-in/host-secrets.conf /etc/apache2/jupyter-sign-in/proxy-secret",
        "/etc/apache2/jupyter-sign-in/client-secret.conf.pyinfra-tmp /etc/apache2/jupyter-sign-in/client-secret.conf",
        "'jupyter-collaboration>=4,<6'",
        "systemctl start jupyter.service",
        "apache-config-swap mods /var/lib/jupyter-apache-deploy/created proxy proxy_http ssl headers rewrite "
        "authn_core auth_openidc",
        "apache-config-swap sites jupyter",
    ]
    assert_in_order(joined, steps)
    [install] = [c for c in commands if " install " in c and "apt-get" in c]
    assert "libapache2-mod-auth-openidc" in install and "fail2ban" not in install
    assert secret not in joined and "password_hash.pyinfra-tmp" not in joined


def test_fresh_host_with_per_person_servers_gets_the_hub_and_no_single_server(monkeypatch):
    secret = "s3cr3t-FROM-the-provider-92"
    commands, changed = fresh_oidc_deploy(monkeypatch, secret, per_person_servers=True, shared_data_dir="/srv/course")
    joined = "\n".join(commands)
    steps = [
        "python3 -m venv --clear /opt/jupyterhub",
        "/opt/jupyterhub/bin/python -m pip install",
        "'jupyterhub>=6,<7'",
        "groupadd --system jupyter-hub-admins",
        "chown root:jupyter-hub-admins /srv/course && chmod 2775 /srv/course",
        "jupyterhub-secrets /etc/jupyterhub/secrets/proxy.env",
        "/etc/jupyterhub/secrets/oidc-client-secret.pyinfra-tmp /etc/jupyterhub/secrets/oidc-client-secret",
        "systemctl start jupyterhub-proxy.service",
        "systemctl start jupyterhub.service",
        "apache-config-swap mods /var/lib/jupyter-apache-deploy/created proxy proxy_http ssl headers rewrite\n",
        "apache-config-swap sites jupyter",
    ]
    assert_in_order(joined, steps)
    # What people's servers need, in the conda prefix, and their restarts' scripts and units.
    assert " nbgitpuller==1.3.0" in joined and " jupyter-resource-usage==1.3.0" in joined
    for path in (
        hub.layout.SPAWN_FILE,
        hub.layout.RESTART_PEOPLE_SCRIPT,
        hub.layout.RESTART_SERVER_SCRIPT,
        hub.layout.RESTART_SERVICE_FILE,
        hub.layout.RESTART_TIMER_FILE,
    ):
        assert f"{path}.pyinfra-new" in joined, path
    [install] = [c for c in commands if " install " in c and "apt-get" in c]
    assert "node-configurable-http-proxy" in install and "python3-venv" in install and " git" in install
    # The hub signs people in: no sign-in at Apache, no login ban, no single server.
    assert "libapache2-mod-auth-openidc" not in install and "fail2ban" not in install
    ran = "\n".join(c for c in commands if snapshot.READ_MARKER not in c)
    assert "start jupyter.service" not in ran and "enable jupyter.service" not in ran and "jupyter-sign-in" not in ran
    assert secret not in joined and "password_hash.pyinfra-tmp" not in joined


def test_converged_host_runs_only_facts(monkeypatch):
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": converged_responses()})], yes=True
    ).values()
    assert changed == []
    change_words = (
        "apt-get",
        "useradd",
        "conda-install --lock",
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
    # A no-op run with -y (how users and CI run) reads the host once: every concern's snapshot
    # in one command, plus the password check's download (a file transfer, which the fake
    # connector does not list). Without -y each concern is read while it is planned.
    assert len(commands) == 1 and snapshot.READ_MARKER in commands[0], [c[:80] for c in commands]


def test_changed_port_rewrites_config_and_vhost_and_restarts_only_jupyter_and_apache(monkeypatch):
    [(commands, changed)] = run_deploy(
        monkeypatch,
        [("@fake/nb1", {"server_name": NAME, "jupyter_port": 8890, "fake_responses": converged_responses()})],
    ).values()
    assert "Jupyter Notebook service | Jupyter server config" in changed
    assert "Jupyter Notebook service | Jupyter running with its current config and packages" in changed
    assert "Apache reverse proxy | Jupyter vhost (:80 redirect, :443 proxy)" in changed
    assert "Apache reverse proxy | Reload Apache (after configtest)" in changed
    assert not [op for op in changed if op.startswith(("Conda", "TLS", "Firewall", "System"))]
    assert not [op for op in changed if "password" in op]
    assert RESTART_WHEN_IDLE in commands
    assert "systemctl restart jupyter.service" not in commands
    # The unit changed, its limits did not: the limit the notebook UI shows stays as it is.
    assert "Jupyter Notebook service | Memory limit the notebook UI shows (the unit's MemoryMax)" not in changed


def test_new_password_changes_only_the_hash_and_restarts_jupyter(monkeypatch):
    responses = converged_responses()
    [(commands, changed)] = run_deploy(
        monkeypatch,
        [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})],
        password="a different password",
    ).values()
    assert changed == [
        "Jupyter Notebook service | Jupyter password hash (never shown)",
        "Jupyter Notebook service | Jupyter running with its current config and packages",
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
    responses = converged_responses(interrupted=True)
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})], yes=yes
    ).values()
    assert changed == [
        "Jupyter Notebook service | Jupyter running with its current config and packages",
        "Apache reverse proxy | Reload Apache (after configtest)",
    ]
    assert RESTART_WHEN_IDLE in commands
    reload = commands.index("systemctl reload-or-restart apache2.service")
    assert commands[reload - 1] == "apache2ctl configtest"


def test_a_deferred_restart_is_not_owed_again_and_now_restarts_in_the_run(monkeypatch):
    """The config changed after Jupyter started, but a restart is already deferred (owed since
    after the start, its timer waiting): nothing to do. With restart_policy 'now': the restart."""
    responses = converged_responses(interrupted=True, deferred=True)
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})]
    ).values()
    assert [op for op in changed if op.startswith("Jupyter")] == []
    assert not [c for c in commands if c.startswith((RESTART_SCRIPT, "systemctl restart"))]
    [(commands, changed)] = run_deploy(
        monkeypatch,
        [("@fake/nb1", {"server_name": NAME, "restart_policy": "now", "fake_responses": responses})],
    ).values()
    assert "Jupyter Notebook service | Jupyter running with its current config and packages" in changed
    assert f"{RESTART_SCRIPT} restart now 24 {jupyter.layout.REPORT}" in commands


UPDATES_OP = "Jupyter Notebook service | Jupyter running with its current config and packages"


def test_a_changed_server_package_owes_a_restart_and_the_run_says_which(monkeypatch, caplog):
    """The running server loaded jupyter-server 2.14.0; 2.21.1 is installed now (a pip_packages
    entry, a distribution update: whatever installed it)."""
    older = {**SERVER_PACKAGES, "jupyter-server": "2.14.0"}
    responses = converged_responses(running=older)
    with caplog.at_level("INFO"):
        [(commands, changed)] = run_deploy(
            monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})]
        ).values()
    assert changed == [UPDATES_OP]
    assert RESTART_WHEN_IDLE in commands
    assert "Jupyter server update: jupyter-server 2.14.0 -> 2.21.1" in caplog.text
    # The running server's answer is the notebook user's to shape: what is not a name and a
    # version never reaches the run's output (no terminal escapes), nor owes a restart.
    caplog.clear()
    forged = {**SERVER_PACKAGES, "\x1b]0;pwned\x07x": "1", "tornado": "6.5.2\x1b[2J"}
    with caplog.at_level("INFO"):
        [(commands, changed)] = run_deploy(
            monkeypatch,
            [("@fake/nb1", {"server_name": NAME, "fake_responses": converged_responses(running=forged)})],
        ).values()
    assert changed == [UPDATES_OP] and "\x1b" not in caplog.text
    assert "Jupyter server update: tornado (none) -> 6.5.2" in caplog.text
    # A restart already owed (its timer waits) is not owed again.
    responses = converged_responses(running=older, deferred=True)
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})]
    ).values()
    assert changed == []
    assert not [c for c in commands if c.startswith(RESTART_SCRIPT)]


def test_an_overrides_json_the_deploy_did_not_write_is_left_alone_with_a_warning(monkeypatch, caplog):
    responses = converged_responses(overrides='{"@jupyterlab/apputils-extension:themes": {"theme": "Dark"}}')
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})]
    ).values()
    assert changed == []
    assert "overrides.json is not the deploy's: the memory display stays off" in caplog.text
    # On a host without one, the deploy writes its own.
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": FRESH})]
    ).values()
    display_on = "The memory display on by default (the prefix's JupyterLab overrides.json)"
    assert f"Jupyter Notebook service | {display_on}" in changed


# -- tls_mode letsencrypt -----------------------------------------------------------------

ACME = "https://acme.test/dir"
LE_DATA = {"tls_mode": "letsencrypt", "acme_directory_url": ACME, "letsencrypt_email": "admin@nb.test"}
CERTBOT = "certbot certonly --non-interactive --agree-tos --email admin@nb.test --no-eff-email"


def test_letsencrypt_fresh_host_serves_port_80_before_certbot_then_switches(monkeypatch):
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, **LE_DATA, "fake_responses": FRESH})]
    ).values()
    joined = "\n".join(commands)
    [install] = [c for c in commands if "apt-get" in c and " install " in c]
    assert "certbot" in install.split(" install ", 1)[1].split()
    steps = [
        "openssl req -x509",  # the fallback certificate, so the first vhost passes configtest
        "apache-config-swap sites jupyter",
        "apache2ctl configtest\nsystemctl reload-or-restart apache2.service",
        "ufw --force enable",
        f"{CERTBOT} --server {ACME} --webroot -w {letsencrypt.WEBROOT} -d {NAME} --cert-name {NAME}",
    ]
    position = 0
    for step in steps:
        found = joined.find(step, position)
        assert found >= 0, f"{step!r} missing or out of order"
        position = found + 1
    # The fake host keeps no file, so it never holds the certificate certbot made: which
    # target the links get after certbot is checked on real hosts (tests/e2e/test_letsencrypt.py).
    assert changed[-1] == (
        "Let's Encrypt certificate | Certificate for the server name from the ACME server (certbot, webroot)"
    )
    # Once certbot has it, the deploy hook points Apache at it and reloads (after configtest),
    # as after each renewal: one operation decides the served links, the hook keeps them.
    [certbot] = [c for c in commands if "certbot certonly" in c]
    assert certbot.endswith(f"RENEWED_LINEAGE={tls.live_dir(NAME)} {letsencrypt.DEPLOY_HOOK}")
    # Until certbot's certificate exists, the links point at the self-signed pair.
    assert joined.index(f"ln -sfn {tls.CERT} {tls.SERVED_CERT}") < joined.index("apache-config-swap sites jupyter")
    assert "certbot.timer" in joined and letsencrypt.DEPLOY_HOOK in joined
    # Apache's version is read by the host checks only.
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


def letsencrypt_converged_responses(server=ACME):
    """A converged letsencrypt-mode host whose certificate certbot renews from ``server``."""
    hook = letsencrypt.deploy_hook(NAME)
    host = converged_host(data=LE_DATA)
    host.units["certbot.timer"] = True
    host.files[letsencrypt.DEPLOY_HOOK] = (hook, ("root", "root", "755"))
    host.files[letsencrypt.WEBROOT] = ("dir", ("root", "root", "755"))
    host.answer(letsencrypt.RenewalConfig(NAME), [f"server={server}", "authenticator=webroot"])
    return host.responses()


def test_letsencrypt_converged_host_requests_nothing(monkeypatch):
    [(commands, changed)] = run_deploy(
        monkeypatch,
        [("@fake/nb1", {"server_name": NAME, **LE_DATA, "fake_responses": letsencrypt_converged_responses()})],
    ).values()
    assert changed == []
    assert not [c for c in commands if "certbot certonly" in c or "openssl req" in c or "systemctl reload" in c]


def test_letsencrypt_certificate_from_another_server_is_replaced_and_reloaded(monkeypatch):
    responses = letsencrypt_converged_responses(server="https://acme-staging-v02.api.letsencrypt.org/directory")
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, **LE_DATA, "fake_responses": responses})]
    ).values()
    # One operation: certbot, then its deploy hook serves the new certificate and reloads Apache.
    assert changed == [
        "Let's Encrypt certificate | Certificate for the server name from the ACME server (certbot, webroot)",
    ]
    [certbot] = [c for c in commands if "certbot certonly" in c]
    assert "--force-renewal" in certbot and certbot.endswith(letsencrypt.DEPLOY_HOOK)


# The command that prints a host check's reason and fails (the fake host answers success).
REFUSAL = "printf '%s\\n' '@fake/nb1: "


def test_an_existing_account_not_made_by_the_deploy_is_refused_before_any_change(monkeypatch):
    """www-data (which can read the htpasswd) or a person's login must not become the notebook user."""
    host = checked(
        fresh_host(), "www-data", ["www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin"], "2.4.71-1~deb12u1"
    )
    host.commands[REFUSAL] = {"success": False}
    responses = host.responses()
    [(commands, changed)] = run_deploy(
        monkeypatch,
        [("@fake/nb1", {"server_name": NAME, "jupyter_user": "www-data", "fake_responses": responses})],
        failing=["@fake/nb1"],
        yes=True,
    ).values()
    assert changed == []
    # As `pyinfra -y` runs: the check's fact, then the command that fails the host with the
    # reason; nothing else reaches it.
    assert len(commands) == 2 and snapshot.READ_MARKER in commands[0]
    assert commands[1].startswith(
        "printf '%s\\n' '@fake/nb1: setting jupyter_user = '\"'\"'www-data'\"'\"' is not allowed: "
    )
    assert commands[1].endswith(">&2; exit 1")


def test_an_apache_too_old_for_the_vhost_is_refused_before_any_change(monkeypatch):
    host = checked(fresh_host(), "jupyter", [], "2.4.41-4ubuntu3.17")
    host.commands[REFUSAL] = {"success": False}
    responses = host.responses()
    [(commands, changed)] = run_deploy(
        monkeypatch,
        [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})],
        failing=["@fake/nb1"],
        yes=True,
    ).values()
    assert changed == [] and len(commands) == 2
    assert "Apache 2.4.41 is older than 2.4.47" in commands[1]


def test_an_account_an_earlier_version_made_is_still_accepted(monkeypatch):
    """Deployed before the account carried the deploy's comment: home and config group say it is ours."""
    responses = converged_responses(account_comment="")
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})]
    ).values()
    assert changed == ["Jupyter Notebook service | System user jupyter (no login shell)"]
    assert [c for c in commands if c.startswith("usermod")] == [
        "usermod --comment 'Jupyter Notebook (jupyter-apache-deploy)' --home /var/lib/jupyter "
        "--shell /usr/sbin/nologin jupyter"
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


# None: the account and Apache checks are the first operation (operations/host_checks.py).
PLANNING_FACTS = set()


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


def uninstall_probe(data):
    """What uninstall.py reads of a host with these settings."""
    from operations import uninstall

    merged = {**settings.DEFAULTS, **data}
    state = uninstall.uninstall_snapshot(
        merged["jupyter_user"],
        merged["notebook_dir"],
        merged["conda_prefix"],
        merged["server_name"],
        merged["backup_repository"],
        merged["uninstall_purge"],
    )
    return state.probes["left"]


def test_uninstall_never_puts_a_repository_url_on_a_command_line(monkeypatch):
    """A rest: URL may carry credentials: the script only needs to know it is not a local path."""
    secret = "s3cret-pw"
    data_for_uninstall = {
        "server_name": NAME,
        "backup_repository": f"rest:https://user:{secret}@backup.example.org/nb1",
        "uninstall_purge": True,
    }
    data = {
        "server_name": NAME,
        "backup_repository": f"rest:https://user:{secret}@backup.example.org/nb1",
        "uninstall_purge": True,
        "fake_responses": FakeHost().answer(uninstall_probe(data_for_uninstall), ["path /etc/jupyter"]).responses(),
    }
    [(commands, changed)] = run_deploy(monkeypatch, [("@fake/nb1", data)], script="uninstall.py").values()
    joined = "\n".join(commands)
    assert changed == ["Uninstall | Remove the deploy and the data it made (uninstall_purge)"]
    assert "--purge" in joined and "--local-repository ''" in joined
    assert secret not in joined and "backup.example.org" not in joined


def test_switching_backups_off_keeps_what_restores_moved_aside_and_says_how_big(monkeypatch, caplog):
    from operations import backups

    caplog.set_level("INFO")
    host = converged_host()
    host.files[backups.CONFIG_DIR] = ("dir", ("root", "root", "700"))
    host.answer(backups.DiskUse(backups.MOVED_ASIDE), [f"12\t{backups.MOVED_ASIDE}"])
    responses = host.responses()
    [(commands, changed)] = run_deploy(
        monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})]
    ).values()
    assert changed == ["Backups | No backups"]
    [removal] = [c for c in commands if c.startswith("rm -rf ") and backups.CONFIG_DIR in c]
    assert backups.MOVED_ASIDE not in removal and backups.STATE_DIR + " " not in removal + " "
    assert f"kept {backups.MOVED_ASIDE} (12 KiB)" in caplog.text


def test_the_uninstall_script_removes_every_path_the_deploy_leaves():
    """Each of uninstall.INSTALLED is a path uninstall.py gives files/jupyter-uninstall to
    remove, itself or a directory it is in: a path the deploy leaves and the script is not
    given makes every uninstall run report a change (seen: the login ban's action file)."""
    from operations import backups, records, uninstall

    given = [path for option, paths in uninstall.SCRIPT_PATHS.items() if option.endswith("-file") for path in paths]
    given += [f"{path}.d" for path in uninstall.SCRIPT_PATHS["--unit-file"]]
    # Single paths: the trusted ACME CA; the record's directory (records.STATE_DIR) and the
    # backups' state, which the script empties.
    given += [uninstall.SCRIPT_OPTIONS["--trusted-ca"], records.STATE_DIR, backups.STATE_DIR]

    def named(path: str) -> bool:
        return any(path == candidate or path.startswith(candidate + "/") for candidate in given)

    assert [path for path in uninstall.INSTALLED if not named(path)] == []
    # And the script removes what it is given (each list option reaches a remove or a loop).
    script = (ROOT / "files" / "jupyter-uninstall").read_text()
    for option in uninstall.SCRIPT_PATHS:
        variable = option[2:].replace("-", "_") + "s"
        assert f'"${{{variable}[@]}}"' in script, option


def test_restore_from_a_replaced_host_names_it_and_lists_what_its_python_built(monkeypatch):
    """restore.py with restore_from: the backup script restores that host's latest snapshot and
    lists, with the distribution's Python, what users built on another one; without it, the
    host's own snapshots (no --from-host)."""
    from operations import backups

    repository = {"backup_repository": "/srv/backups/nb", "server_name": NAME, "fake_responses": converged_responses()}
    results = run_deploy(
        monkeypatch,
        [("@fake/new", {**repository, "restore_from": "old-nb.example.org"}), ("@fake/same", repository)],
        yes=True,
        script="restore.py",
    )
    [replaced] = [c for c in results["@fake/new"][0] if f"{backups.SCRIPT} " in c and " restore " in c]
    prefix = settings.DEFAULTS["conda_prefix"]
    assert (
        f"--from-host old-nb.example.org --stranded {conda.STRANDED_SCRIPT} --python {prefix}/bin/python "
        "restore latest" in replaced
    ), replaced
    [own] = [c for c in results["@fake/same"][0] if f"{backups.SCRIPT} " in c and " restore " in c]
    assert "--from-host" not in own and own.endswith(" restore latest"), own
