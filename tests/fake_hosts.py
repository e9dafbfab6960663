"""
Simulated Debian hosts for pyinfra's ``@fake`` connector: what a fresh host and a host a
finished deploy left behind answer to every fact command of deploy.py. Used by the fast
tests (tests/test_fake_deploy.py) and the fleet benchmark (bench/fake_fleet.py).
"""

import hashlib
import json
from pathlib import Path

from operations import (
    apache,
    backups,
    conda,
    environment,
    firewall,
    jupyter,
    letsencrypt,
    login_ban,
    os_updates,
    passwords,
    settings,
    sign_in,
    snapshot,
    system,
    tls,
)
from operations.jupyter import collaboration, resource_usage, restarts
from operations.render import render

ROOT = Path(__file__).resolve().parents[1]
# Every package a concern can want (a converged host has them all, whatever its settings).
ALL_PACKAGES = sorted(
    {
        name
        for concern in (conda, restarts, sign_in, tls, apache, firewall, login_ban, backups, letsencrypt, os_updates)
        for data in (
            settings.DEFAULTS,
            {**settings.DEFAULTS, "auth": "oidc"},
            {**settings.DEFAULTS, "tls_mode": "letsencrypt", "backup_repository": "/srv/backups"},
        )
        for name in concern.packages(data)
    }
)
PASSWORD = "correct horse battery staple"
NAME = "nb.test"


class FakeHost:
    """
    What a simulated host answers to the deploy's read of it (``snapshot.HostSnapshot``: one
    answer, the same whatever the read asks, holding every path, unit and probe the host has)
    and to its downloads: ``responses()`` is the host's ``fake_responses``.

    + files: path -> (content, or "dir", or ("link", target); (user, group, mode)); every file
      is older than the last reload (``reloaded``: the reload stamp is there) and each unit
      started after them, except ``newer`` (written after both: what an interrupted run leaves)
    + units: unit -> whether it is active (a known unit runs since 300 s after the epoch)
    + answer(probe, lines): what a probe's command prints here
    """

    def __init__(self):
        self.files: dict[str, tuple] = {}
        self.newer: set[str] = set()
        self.reloaded = False
        self.units: dict[str, bool] = {}
        self.probes: dict[str, list[str]] = {}
        self.downloads: dict[str, str] = {}
        # Other commands' answers (fake_responses matchers), after the read's.
        self.commands: dict = {}

    def answer(self, probe: snapshot.Probe, lines) -> "FakeHost":
        self.probes[snapshot.probe_key(probe)] = [lines] if isinstance(lines, str) else list(lines)
        return self

    def read_lines(self) -> list[str]:
        lines = []
        if self.reloaded:
            lines.append(f"P\t{apache.RELOAD_STAMP}\tfile\t644\troot\troot\t200.0\t")
        for path, (content, (user, group, mode)) in self.files.items():
            if content == "dir":
                kind, detail = "dir", ""
            elif isinstance(content, tuple):
                kind, detail = content
            else:
                kind, detail = "file", hashlib.sha256(content.encode()).hexdigest()
            mtime = 400.0 if path in self.newer else 100.0
            lines.append(f"P\t{path}\t{kind}\t{mode}\t{user}\t{group}\t{mtime}\t{detail}")
        for unit, active in self.units.items():
            if not active:
                lines += [
                    f"U\t{unit}\tActiveState=inactive",
                    f"U\t{unit}\tUnitFileState=static",
                    f"U\t{unit}\tMainPID=0",
                ]
                continue
            lines += [
                f"U\t{unit}\t{line}"
                for line in (
                    "ActiveState=active",
                    "UnitFileState=enabled",
                    "NeedDaemonReload=no",
                    "MainPID=812",
                    "ExecMainStartTimestamp=Thu 1970-01-01 00:05:00.000000 UTC",
                )
            ]
        for key, probe_lines in self.probes.items():
            lines += [f"X\t{key}\t{line}" for line in probe_lines]
        return lines

    def responses(self) -> dict:
        """The host's ``fake_responses``: the read's answer first (other matchers may be words
        of a probe's command), then the other commands', then the downloads."""
        return {
            snapshot.READ_MARKER: self.read_lines(),
            **self.commands,
            **{FakeDownloads.key(path): content for path, content in self.downloads.items()},
        }


def fresh_host() -> FakeHost:
    """A fresh Debian host; apt's apache2 package enables its default site and starts Apache
    (the fake host answers as it would once the package is in)."""
    host = FakeHost().answer(apache.ApacheEnabled("sites"), ["000-default.conf"])
    host.units[apache.UNIT] = True
    return host


FRESH = fresh_host().responses()


def account_line(user: str, comment: str = jupyter.ACCOUNT_COMMENT) -> str:
    return f"{user}:x:999:999:{comment}:{settings.home_of(user)}:{jupyter.NOLOGIN}"


def checked(host: FakeHost, user: str, account: list[str], apache_version: str) -> FakeHost:
    """What the host checks read here: the account's lines and Apache's version."""
    return host.answer(jupyter.AccountOrigin(user), account).answer(apache.ApacheVersion(), [apache_version])


def certificates(host: FakeHost, letsencrypt_mode: bool) -> FakeHost:
    """The TLS state of a converged host: a valid self-signed pair; in letsencrypt mode also
    certbot's live one, and the links pointing at it."""
    valid = ["valid", f"    DNS:{NAME}"]
    host.answer(tls.Certificate(tls.CERT, tls.KEY), valid)
    live_cert, live_key = tls.live_paths(NAME)
    host.answer(tls.Certificate(live_cert, live_key, renew_before_days=0), valid if letsencrypt_mode else [])
    if letsencrypt_mode:
        for link, target in zip((tls.SERVED_CERT, tls.SERVED_KEY), tls.live_paths(NAME), strict=True):
            host.files[link] = (("link", target), ("root", "root", "777"))
    return host


# The server's packages on a converged host (what files/jupyter_activity.py prints).
SERVER_PACKAGES = {"jupyter-server": "2.21.1", "notebook": "7.6.5", "tornado": "6.5.2"}


def converged_host(
    data=None, interrupted=False, account_comment=jupyter.ACCOUNT_COMMENT, deferred=False, running=None, overrides=None
) -> FakeHost:
    """
    A host that a finished deploy left behind.

    + interrupted: Jupyter's config and the vhost were written after the last restart and
      reload (a run was killed in between)
    + account_comment: the notebook account's GECOS comment
    + deferred: a restart is owed since after Jupyter started, and its timer waits
    + running: the server's packages the running server loaded, when not those installed
    + overrides: the prefix's JupyterLab overrides.json, when not the deploy's
    """
    data = {**settings.DEFAULTS, "server_name": NAME, **(data or {})}
    user = data["jupyter_user"]
    prefix = data["conda_prefix"]
    stored_hash = passwords.hash_password(PASSWORD)
    config = jupyter.server_config(data, NAME)
    unit = jupyter.unit_file(user, prefix, data["notebook_dir"], data["jupyter_base_url"], data["jupyter_port"])
    letsencrypt_mode = data["tls_mode"] == "letsencrypt"
    vhost = apache.vhost(data, NAME)
    home = f"/var/lib/{user}"
    readable = ("root", user, "640")
    system_file = ("root", "root", "644")
    script = ("root", "root", "755")
    host = FakeHost()
    host.reloaded = True
    host.files.update(
        {
            data["notebook_dir"]: ("dir", (user, user, "750")),
            home: ("dir", (user, user, "750")),
            jupyter.CONFIG_DIR: ("dir", ("root", user, "750")),
            jupyter.layout.MIGRATED_MARKER: ("", readable),
            jupyter.CONFIG_FILE: (config, readable),
            jupyter.LOGIN_HANDLER_FILE: ((ROOT / "files" / "jupyter_login_handler.py").read_text(), readable),
            jupyter.layout.SIGN_IN_FILE: ((ROOT / "files" / "jupyter_sign_in.py").read_text(), readable),
            jupyter.layout.KERNEL_DIR: ("dir", ("root", user, "750")),
            jupyter.layout.USER_KERNELS: ("dir", ("root", user, "750")),
            f"{jupyter.layout.USER_KERNELS}/kernels": (
                ("link", f"{home}/.local/share/jupyter/kernels"),
                ("root", user, "777"),
            ),
            jupyter.KERNEL_SPEC: (jupyter.kernel_spec(prefix, user), readable),
            jupyter.GUARD_FILE: ((ROOT / "files" / "conda-shared-prefix-guard").read_text(), script),
            jupyter.CELL_CHECK: ((ROOT / "files" / "jupyter-cell-check").read_text(), script),
            jupyter.CELL_CHECK_CLIENT: ((ROOT / "files" / "jupyter_cell_check.py").read_text(), system_file),
            jupyter.UNIT_FILE: (unit, system_file),
            jupyter.SANDBOX_DROPIN: (jupyter.sandbox_dropin(user, data["notebook_dir"]), system_file),
            jupyter.LIMITS_DROPIN: (jupyter.limits_dropin(data["memory_limit"], data["cpu_limit"]), system_file),
            jupyter.PASSWORD_FILE: ("secret", readable),
            jupyter.layout.ACTIVITY_FILE: ((ROOT / "files" / "jupyter_activity.py").read_text(), readable),
            jupyter.layout.MEMORY_MAX_FILE: ("700000000", system_file),
            resource_usage.overrides_path(prefix): (overrides or resource_usage.OVERRIDES, system_file),
            jupyter.layout.RESTART_SCRIPT: ((ROOT / "files" / jupyter.layout.RESTART_NAME).read_text(), script),
            jupyter.layout.RESTART_SERVICE_FILE: (
                render("jupyter-restart-when-idle.service.j2", unit=jupyter.UNIT, command=restarts.script_command()),
                system_file,
            ),
            jupyter.layout.RESTART_TIMER_FILE: (
                (ROOT / "files" / jupyter.layout.RESTART_TIMER).read_text(),
                system_file,
            ),
            **({jupyter.layout.OWED: ("owed", ("root", "root", "600"))} if deferred else {}),
            apache.SWAP_SCRIPT: ((ROOT / "files" / "apache-config-swap").read_text(), script),
            apache.SITE_PATH: (vhost, system_file),
            apache.HARDENING_PATH: ((ROOT / "files" / "apache-hardening.conf").read_text(), system_file),
            apache.WORKERS_PATH: ((ROOT / "files" / "apache-mpm.conf").read_text(), system_file),
            **{path: ("certificate", system_file) for path in tls.served_paths(data["tls_mode"])},
            **{f"/etc/apache2/{kind}-enabled": ("dir", ("root", "root", "755")) for kind in apache.KINDS},
            **{
                apache.enabled_path(kind, name): (("link", apache.enabled_link(kind, name)), ("root", "root", "777"))
                for kind, name in apache.OWN_CONFIGS
            },
            login_ban.FILTER_FILE: ((ROOT / "files" / "fail2ban-jupyter-login.conf").read_text(), system_file),
            login_ban.ACTION_FILE: ((ROOT / "files" / "fail2ban-jupyter-ban.conf").read_text(), system_file),
            login_ban.JAIL_FILE: (login_ban.jail_config(data), system_file),
            **{
                path: ((ROOT / "files" / path.rsplit("/", 1)[1]).read_text(), script)
                for path in (conda.INSTALL_SCRIPT, conda.SWITCH_SCRIPT, conda.CHECK_SCRIPT, conda.STRANDED_SCRIPT)
            },
            **os_updates_files(data, system_file, script),
        }
    )
    host.newer.update([jupyter.CONFIG_FILE, apache.SITE_PATH] if interrupted else [])
    host.newer.update([jupyter.layout.OWED] if deferred else [])
    host.units.update(
        {
            jupyter.UNIT: True,
            "fail2ban.service": True,
            apache.UNIT: True,
            jupyter.layout.RESTART_TIMER: deferred,
            os_updates.REBOOT_TIMER: True,
        }
    )
    checked(host, user, [account_line(user, account_comment), f"config-group={user}"], "2.4.71-1~deb12u1")
    host.answer(jupyter.Account(user), [account_line(user, account_comment)])
    host.answer(resource_usage.probe(prefix), [f"{prefix}/lib/python3.13/site-packages/jupyter_resource_usage"])
    host.answer(collaboration.probe(prefix), [])
    for kind, names in {
        "mods": [f"{m}.load" for m in apache.needed_modules(basic_auth=False)] + ["mpm_event.load"],
        "sites": [f"{apache.SITE}.conf"],
        "conf": ["security.conf", f"{apache.HARDENING_CONF}.conf", f"{apache.WORKERS_CONF}.conf"],
    }.items():
        host.answer(apache.ApacheEnabled(kind), names)
    certificates(host, letsencrypt_mode)
    # The prefix changed since the server started only when it runs other packages.
    host.answer(
        restarts.ServerVersions(prefix),
        ["unchanged"]
        if running is None
        else ["kernels=1 kernels_busy=0 terminals=0 terminals_busy=0"]
        + [f"running {n} {v}" for n, v in running.items()]
        + [f"installed {n} {v}" for n, v in SERVER_PACKAGES.items()],
    )
    host.answer(system.PackageState(), [f"ii  {p}" for p in ALL_PACKAGES] + ["index-age 60"])
    target = conda.distribution_dir(prefix, data["conda_installer_sha256"])
    host.answer(
        conda.CondaInstallation(prefix, target),
        [
            "prefix link",
            f"prefix-sha256 {data['conda_installer_sha256']}",
            "prefix-notebook",
            "target-present",
            f"target-sha256 {data['conda_installer_sha256']}",
            "target-notebook",
        ],
    )
    host.answer(
        firewall.UfwState(),
        [
            "installed",
            "Status: active",
            "Default: deny (incoming), allow (outgoing), disabled (routed)",
            "--added--",
            "ufw allow 22/tcp",
            "ufw allow 80/tcp",
            "ufw allow 443/tcp",
        ],
    )
    record = {"conda": data["conda_packages"], "pip": data["pip_packages"], "requirements": None}
    host.answer(environment.FleetPackages(prefix), [json.dumps(record)])
    # Not a command: what get_file downloads (see FakeDownloads).
    host.downloads[jupyter.PASSWORD_FILE] = passwords.file_content(stored_hash)
    return host


def os_updates_files(data, system_file, script) -> dict:
    """What operations/os_updates.py leaves on a host with these settings."""
    command = os_updates.script_command(data, NAME)
    files = {
        os_updates.SCRIPT: ((ROOT / "files" / os_updates.SCRIPT_NAME).read_text(), script),
        os_updates.REBOOT_SERVICE_FILE: (
            render("jupyter-reboot-when-idle.service.j2", command=command),
            system_file,
        ),
        os_updates.REBOOT_TIMER_FILE: ((ROOT / "files" / os_updates.REBOOT_TIMER).read_text(), system_file),
    }
    if data["os_updates"]:
        files[os_updates.APT_CONF] = (
            render("os-updates.apt.conf.j2", all_updates=data["os_updates"] == "all"),
            system_file,
        )
        files[os_updates.NEEDRESTART_CONF] = (
            render("needrestart.conf.j2", never=os_updates.never_restarted()),
            system_file,
        )
        files[os_updates.UPGRADE_DROPIN] = (
            render("apt-daily-upgrade-dropin.conf.j2", command=command, restart=os_updates.stale_restart_command(data)),
            system_file,
        )
    return files


def converged_responses(**kwargs) -> dict:
    """``converged_host(**kwargs)``'s ``fake_responses``."""
    return converged_host(**kwargs).responses()


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
