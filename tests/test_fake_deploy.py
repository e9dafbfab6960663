"""The whole deploy.py through pyinfra's API against `@fake` hosts (no real host).

A fresh host must get every step in order; a converged host (facts canned to what a
finished deploy leaves behind) must get nothing but fact commands; a changed setting
must change (and restart) only what depends on it. Secrets never reach a command.
"""

import hashlib
import re
import runpy
import time
from pathlib import Path

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.operations import run_ops

from operations import apache, conda, jupyter, passwords, settings, tls

ROOT = Path(__file__).resolve().parent.parent


PASSWORD = "correct horse battery staple"
NAME = "nb.test"


# A fresh Debian host; apt's apache2 package enables its default site (the fake host
# answers as it would once the package is in).
FRESH = {"uname -s": "Linux", "command -v useradd": "/usr/sbin/useradd", "sites-enabled": "000-default.conf"}


def stat(path, user, group, mode):
    now = int(time.time())
    return f"user={user} group={group} mode={mode} atime={now} mtime={now} ctime={now} size=10 '{path}'"


def file_facts(path, content, user, group, mode):
    return {
        re.compile(rf"test -e {re.escape(path)} \|\|"): stat(path, user, group, mode),
        re.compile(rf"sha1sum {re.escape(path)} "): f"{hashlib.sha1(content.encode()).hexdigest()}  {path}",
        re.compile(rf"sha256sum {re.escape(path)} "): f"{hashlib.sha256(content.encode()).hexdigest()}  {path}",
    }


def converged_responses(data=None):
    """What a host that a finished deploy left behind answers to every fact command."""
    data = {**settings.DEFAULTS, "server_name": NAME, **(data or {})}
    user = data["jupyter_user"]
    stored_hash = passwords.hash_password(PASSWORD)
    config = jupyter.server_config(NAME, data["jupyter_base_url"], data["jupyter_port"], data["notebook_dir"],
                                   data["jupyter_terminals"])
    unit = jupyter.unit_file(user, data["conda_prefix"], data["notebook_dir"], data["jupyter_base_url"],
                             data["jupyter_port"])
    version = (2, 4, 71)
    vhost = apache.vhost(NAME, data["jupyter_base_url"], data["jupyter_port"], tls.CERT, tls.KEY, version)
    packages = ["curl", "ca-certificates", "bzip2", "openssl", "apache2", "ufw"]
    responses = {
        # Nothing is waiting for a reload or restart (checked first: the command names paths
        # that other canned answers match on).
        f"-newer {apache.RELOAD_STAMP}": [],
        "NeedDaemonReload": [],
        "uname -s": "Linux",
        "cat /etc/passwd | cut -d: -f1": f"{user}:x:999:999::/var/lib/{user}:/usr/sbin/nologin|{user}|{user}||!",
        "cat /etc/group": f"{user}:x:999:",
        "dpkg -l": [f"ii  {p}  1.0-1  amd64  the {p} package" for p in packages],
        "update-success-stamp": stat("/var/lib/apt/periodic/update-success-stamp", "root", "root", "-rw-r--r--"),
        f"{jupyter.PASSWORD_FILE} | head -n 1; fi": [
            "sha256=" + hashlib.sha256(passwords.file_content(stored_hash).encode()).hexdigest(),
            f"owner=root:{user}:640",
            "params=" + stored_hash.rsplit("$", 1)[0],
        ],
        "--property SubState": [f"Id={jupyter.UNIT}.service", "SubState=running"],
        "--property UnitFileState": [f"Id={jupyter.UNIT}.service", "UnitFileState=enabled"],
        conda.MARKER: ["present", data["conda_installer_sha256"], "notebook"],
        "openssl x509": ["valid", f"    DNS:{NAME}"],
        "dpkg-query -W": "2.4.71-1~deb12u1",
        "mods-enabled": [f"{m}.load" for m in apache.needed_modules(version)] + ["mpm_event.load"],
        "sites-enabled": ["jupyter.conf"],
        "conf-enabled": ["security.conf", f"{apache.HARDENING_CONF}.conf"],
        "ufw status": ["Status: active", "Default: deny (incoming), allow (outgoing), disabled (routed)", "--added--",
                       "ufw allow 22/tcp", "ufw allow 80/tcp", "ufw allow 443/tcp"],
    }
    for path in (data["notebook_dir"], f"/var/lib/{user}"):
        responses[re.compile(rf"test -e {re.escape(path)} \|\|")] = stat(path, user, user, "drwxr-x---")
    responses[re.compile(r"test -e /etc/jupyter \|\|")] = stat("/etc/jupyter", "root", user, "drwxr-x---")
    responses[re.compile(rf"test -e {jupyter.MIGRATED_MARKER} \|\|")] = stat(jupyter.MIGRATED_MARKER, "root", user, "-rw-r-----")
    responses[re.compile(r"test -e /etc/systemd/system \|\|")] = stat("/etc/systemd/system", "root", "root", "drwxr-xr-x")
    responses.update(file_facts(jupyter.CONFIG_FILE, config, "root", user, "-rw-r-----"))
    responses.update(file_facts(jupyter.UNIT_FILE, unit, "root", "root", "-rw-r--r--"))
    responses.update(file_facts(f"/etc/apache2/sites-available/{apache.SITE}.conf", vhost, "root", "root", "-rw-r--r--"))
    responses.update(file_facts(f"/etc/apache2/conf-available/{apache.HARDENING_CONF}.conf",
                                apache.render("apache-hardening.conf.j2"), "root", "root", "-rw-r--r--"))
    return responses


def run_deploy(monkeypatch, hosts, password=PASSWORD):
    """Run deploy.py for ``[(name, data)]`` on @fake hosts; returns {name: (commands, changed ops)}."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv(settings.PASSWORD_ENV, password)
    inventory = Inventory(([(name, {"fake_delay": 0, "fake_delay_jitter": 0, **data}) for name, data in hosts], {}))
    state = State(inventory, Config())
    connect_all(state)
    add_deploy(state, lambda: runpy.run_path(str(ROOT / "deploy.py")))
    run_ops(state)
    results = {}
    for host in inventory:
        changed = [
            next(iter(state.get_op_meta(op_hash).names))
            for op_hash in state.get_op_order()
            if (op_data := state.ops[host].get(op_hash)) and op_data.operation_meta.did_change()
        ]
        results[host.name] = (host.connector.executed_commands, changed)
    assert not state.failed_hosts
    return results


def test_fresh_host_gets_every_step_in_order(monkeypatch):
    [(commands, changed)] = run_deploy(monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": FRESH})]).values()
    joined = "\n".join(commands)
    steps = [
        "apt-get update",
        "install curl ca-certificates bzip2 openssl apache2 ufw",
        f"bash \"$d/installer.sh\" -b -p {settings.DEFAULTS['conda_prefix']}",
        "useradd -d /var/lib/jupyter -s /usr/sbin/nologin -r -m jupyter",
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
    ]
    positions = [joined.find(step) for step in steps]
    assert all(p >= 0 for p in positions), [s for s, p in zip(steps, positions) if p < 0]
    assert positions == sorted(positions), "steps ran out of order"
    assert joined.count("apt-get update") == 1
    assert "a2enmod -q proxy_https" not in joined and "proxy_wstunnel" not in joined
    assert PASSWORD not in joined and "$argon2id$" not in joined
    assert len(changed) >= 15


def test_converged_host_runs_only_facts(monkeypatch):
    [(commands, changed)] = run_deploy(monkeypatch, [("@fake/nb1", {
        "server_name": NAME, "fake_responses": converged_responses()})]).values()
    assert changed == []
    change_words = ("apt-get install", "apt-get update", "useradd", "installer.sh", "systemctl start",
                    "systemctl restart", "systemctl reload", "systemctl daemon-reload", "a2en", "a2dis", "openssl req",
                    "ufw allow", "ufw --force", "mv ", "chmod", "chown", "mkdir")
    assert [c for c in commands if any(w in c for w in change_words)] == []


def test_changed_port_rewrites_config_and_vhost_and_restarts_only_jupyter_and_apache(monkeypatch):
    [(commands, changed)] = run_deploy(monkeypatch, [("@fake/nb1", {
        "server_name": NAME, "jupyter_port": 8890, "fake_responses": converged_responses()})]).values()
    assert "Jupyter Notebook service | Jupyter server config" in changed
    assert "Jupyter Notebook service | Restart Jupyter for its new config" in changed
    assert "Apache reverse proxy | Jupyter vhost (:80 redirect, :443 proxy)" in changed
    assert "Apache reverse proxy | Reload Apache (after configtest)" in changed
    assert not [op for op in changed if op.startswith(("Conda", "TLS", "Firewall", "System"))]
    assert not [op for op in changed if "password" in op]
    assert "systemctl restart jupyter.service" in commands


def test_new_password_changes_only_the_hash_and_restarts_jupyter(monkeypatch):
    responses = converged_responses()
    [(commands, changed)] = run_deploy(monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})],
                                       password="a different password").values()
    assert changed == ["Jupyter Notebook service | Jupyter password hash (never shown)",
                       "Jupyter Notebook service | Restart Jupyter for its new config"]
    assert not [c for c in commands if "a different password" in c or "$argon2id$" in c]


def test_three_hosts_in_one_run_each_get_their_own_name(monkeypatch):
    hosts = [(f"@fake/nb{i}", {"server_name": f"nb{i}.test", "fake_responses": FRESH}) for i in (1, 2, 3)]
    results = run_deploy(monkeypatch, hosts)
    for i in (1, 2, 3):
        commands = "\n".join(results[f"@fake/nb{i}"][0])
        assert f"subjectAltName=DNS:nb{i}.test" in commands
        assert f"nb{(i % 3) + 1}.test" not in commands


def test_config_an_interrupted_run_left_unapplied_is_applied(monkeypatch):
    """Killed after writing files but before reloading/restarting: the next run still does it."""
    responses = converged_responses()
    # Same keys, so they keep their place ahead of the answers that would also match.
    responses[f"-newer {apache.RELOAD_STAMP}"] = f"/etc/apache2/sites-available/{apache.SITE}.conf"
    responses["NeedDaemonReload"] = [jupyter.CONFIG_FILE]
    [(commands, changed)] = run_deploy(monkeypatch, [("@fake/nb1", {"server_name": NAME, "fake_responses": responses})]).values()
    assert changed == ["Jupyter Notebook service | Restart Jupyter for its new config",
                       "Apache reverse proxy | Reload Apache (after configtest)"]
    assert "systemctl restart jupyter.service" in commands
    assert any(c.startswith("apache2ctl configtest && systemctl reload-or-restart apache2") for c in commands)
