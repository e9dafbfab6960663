"""
Simulated Debian hosts for pyinfra's ``@fake`` connector: what a fresh host and a host a
finished deploy left behind answer to every fact command of deploy.py. Used by the fast
tests (tests/test_fake_deploy.py) and the fleet benchmark (bench/fake_fleet.py).
"""

import hashlib
import json
import re
import time
from pathlib import Path

from operations import apache, conda, environment, jupyter, login_ban, passwords, settings, tls

ROOT = Path(__file__).resolve().parents[1]
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
    config = jupyter.server_config(
        NAME,
        data["jupyter_base_url"],
        data["jupyter_port"],
        data["notebook_dir"],
        data["jupyter_terminals"],
        home=f"/var/lib/{user}",
        prefix=data["conda_prefix"],
        cull_idle_timeout=data["cull_idle_kernels_after"],
        proxy_timeout=data["apache_proxy_timeout"],
    )
    unit = jupyter.unit_file(
        user, data["conda_prefix"], data["notebook_dir"], data["jupyter_base_url"], data["jupyter_port"]
    )
    vhost = apache.vhost(NAME, data["jupyter_base_url"], data["jupyter_port"], tls.CERT, tls.KEY)
    packages = ["curl", "ca-certificates", "bzip2", "openssl", "apache2", "ufw", *login_ban.PACKAGES]
    responses = {
        # Nothing is waiting for a reload or restart (checked first: the command names paths
        # that other canned answers match on).
        f"-newer {apache.RELOAD_STAMP}": [],
        "NeedDaemonReload": [],
        "uname -s": "Linux",
        "cat /etc/passwd | cut -d: -f1": (
            f"{user}:x:999:999:{jupyter.ACCOUNT_COMMENT}:/var/lib/{user}:/usr/sbin/nologin|{user}|{user}||!"
        ),
        f"getent passwd {user}": [
            f"{user}:x:999:999:{jupyter.ACCOUNT_COMMENT}:/var/lib/{user}:/usr/sbin/nologin",
            f"config-group={user}",
        ],
        "cat /etc/group": f"{user}:x:999:",
        "dpkg -l": [f"ii  {p}  1.0-1  amd64  the {p} package" for p in packages],
        "update-success-stamp": stat("/var/lib/apt/periodic/update-success-stamp", "root", "root", "-rw-r--r--"),
        f"stat -c '%U:%G:%a' {jupyter.PASSWORD_FILE}": f"root:{user}:640",
        # Not a command: what get_file downloads (see FakeDownloads).
        FakeDownloads.key(jupyter.PASSWORD_FILE): passwords.file_content(stored_hash),
        "--property SubState": [
            f"Id={jupyter.UNIT}.service",
            "SubState=running",
            f"Id={login_ban.SERVICE}.service",
            "SubState=running",
        ],
        "--property UnitFileState": [
            f"Id={jupyter.UNIT}.service",
            "UnitFileState=enabled",
            f"Id={login_ban.SERVICE}.service",
            "UnitFileState=enabled",
        ],
        conda.MARKER: ["present", data["conda_installer_sha256"], "notebook"],
        "openssl x509": ["valid", f"    DNS:{NAME}"],
        "dpkg-query -W": "2.4.71-1~deb12u1",
        "mods-enabled": [f"{m}.load" for m in apache.needed_modules()] + ["mpm_event.load"],
        "sites-enabled": ["jupyter.conf"],
        "conf-enabled": ["security.conf", f"{apache.HARDENING_CONF}.conf"],
        "ufw status": [
            "Status: active",
            "Default: deny (incoming), allow (outgoing), disabled (routed)",
            "--added--",
            "ufw allow 22/tcp",
            "ufw allow 80/tcp",
            "ufw allow 443/tcp",
        ],
    }
    for path in (data["notebook_dir"], f"/var/lib/{user}"):
        responses[re.compile(rf"test -e {re.escape(path)} \|\|")] = stat(path, user, user, "drwxr-x---")
    responses[re.compile(r"test -e /etc/jupyter \|\|")] = stat("/etc/jupyter", "root", user, "drwxr-x---")
    responses[re.compile(rf"test -e {jupyter.MIGRATED_MARKER} \|\|")] = stat(
        jupyter.MIGRATED_MARKER, "root", user, "-rw-r-----"
    )
    responses[re.compile(r"test -e /etc/systemd/system \|\|")] = stat(
        "/etc/systemd/system", "root", "root", "drwxr-xr-x"
    )
    responses.update(file_facts(jupyter.CONFIG_FILE, config, "root", user, "-rw-r-----"))
    responses.update(
        file_facts(
            jupyter.LOGIN_HANDLER_FILE,
            (ROOT / "files" / "jupyter_login_handler.py").read_text(),
            "root",
            user,
            "-rw-r-----",
        )
    )
    responses.update(file_facts(jupyter.UNIT_FILE, unit, "root", "root", "-rw-r--r--"))
    responses.update(
        file_facts(
            jupyter.LIMITS_DROPIN,
            jupyter.limits_dropin(data["memory_limit"], data["cpu_limit"]),
            "root",
            "root",
            "-rw-r--r--",
        )
    )
    responses.update(
        file_facts(jupyter.KERNEL_SPEC, jupyter.kernel_spec(data["conda_prefix"], user), "root", user, "-rw-r-----")
    )
    guard = (ROOT / "files" / "conda-shared-prefix-guard").read_text()
    responses.update(file_facts(f"{jupyter.GUARD_DIR}/conda", guard, "root", "root", "-rwxr-xr-x"))
    responses[re.compile(rf"test -e {re.escape(jupyter.DATA_DIR)}/kernels/python3 \|\|")] = stat(
        f"{jupyter.DATA_DIR}/kernels/python3", "root", user, "drwxr-x---"
    )
    responses[re.compile(rf"test -e {re.escape(jupyter.USER_KERNELS)} \|\|")] = stat(
        jupyter.USER_KERNELS, "root", user, "drwxr-x---"
    )
    link = f"{jupyter.USER_KERNELS}/kernels"
    target = f"/var/lib/{user}/.local/share/jupyter/kernels"
    now = int(time.time())
    responses[re.compile(rf"test -e {re.escape(link)} \|\|")] = (
        f"user=root group={user} mode=lrwxrwxrwx atime={now} mtime={now} ctime={now} size=10 '{link}' -> '{target}'"
    )
    for directory in (jupyter.GUARD_DIR, "/etc/systemd/system/jupyter.service.d"):
        responses[re.compile(rf"test -e {re.escape(directory)} \|\|")] = stat(directory, "root", "root", "drwxr-xr-x")
    responses[environment.RECORD] = json.dumps(
        {"conda": data["conda_packages"], "pip": data["pip_packages"], "requirements": None}
    )
    responses.update(
        file_facts(f"/etc/apache2/sites-available/{apache.SITE}.conf", vhost, "root", "root", "-rw-r--r--")
    )
    responses.update(
        file_facts(
            f"/etc/apache2/conf-available/{apache.HARDENING_CONF}.conf",
            apache.render("apache-hardening.conf.j2"),
            "root",
            "root",
            "-rw-r--r--",
        )
    )
    for directory in ("/etc/fail2ban/filter.d", "/etc/fail2ban/jail.d"):
        responses[re.compile(rf"test -e {re.escape(directory)} \|\|")] = stat(directory, "root", "root", "drwxr-xr-x")
    responses.update(
        file_facts(
            login_ban.FILTER_FILE,
            (ROOT / "files" / "fail2ban-jupyter-login.conf").read_text(),
            "root",
            "root",
            "-rw-r--r--",
        )
    )
    responses.update(
        file_facts(
            login_ban.JAIL_FILE,
            login_ban.jail_config(
                data["login_ban_max_failures"],
                data["login_ban_window"],
                data["login_ban_seconds"],
                data["login_ban_ignore"],
                basic_auth=bool(data["basic_auth_user"]),
            ),
            "root",
            "root",
            "-rw-r--r--",
        )
    )
    return responses


class FakeDownloads:
    """pyinfra's @fake connector downloads nothing: serve files from ``fake_responses``."""

    @staticmethod
    def key(path: str) -> str:
        return f"<download {path}>"

    @staticmethod
    def get_file(connector, remote_filename, filename_or_io, *args, **kwargs):
        content = connector.data.get("fake_responses", {}).get(FakeDownloads.key(remote_filename))
        if content is None:
            return False
        filename_or_io.write(content.encode())
        return True
