"""
Simulated Debian hosts for pyinfra's ``@fake`` connector: what a fresh host and a host a
finished deploy left behind answer to every fact command of deploy.py. Used by the fast
tests (tests/test_fake_deploy.py) and the fleet benchmark (bench/fake_fleet.py).
"""

import hashlib
import json
from pathlib import Path

# Every concern deploy.py runs, so that each has registered its packages (system.wanted_packages).
from operations import (
    apache,
    backups,  # noqa: F401
    conda,
    environment,
    firewall,  # noqa: F401
    host_checks,
    jupyter,
    letsencrypt,  # noqa: F401
    login_ban,
    passwords,
    resource_usage,
    restarts,
    settings,
    sign_in,
    snapshot,
    system,
    tls,
)

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"
NAME = "nb.test"


# A fresh Debian host; apt's apache2 package enables its default site (the fake host
# answers as it would once the package is in).
FRESH = {"sites-enabled": "X\tsites-enabled\t000-default.conf"}


def snapshot_command(state) -> str:
    """The command a concern's ``snapshot.Snapshot`` reads its host with."""
    return snapshot.HostSnapshot().command(
        paths=state.paths, secret_paths=state.secret_paths, units=state.units, probes=state.probes
    )


def snapshot_answer(state, files, reloaded=False, probes=None, newer=(), inactive=()) -> list[str]:
    """
    What ``snapshot_command(state)`` prints on a converged host: ``files`` maps a path to
    (content or "dir" or ("link", target), (user, group, mode)); every file is older than
    the last reload (``reloaded``: the reload stamp is there) and each unit started after them,
    except ``newer`` (written after both: what an interrupted run leaves); units are active,
    except ``inactive`` ones.
    """
    lines = []
    for path in state.paths + state.secret_paths:
        if path == apache.RELOAD_STAMP and reloaded:
            lines.append(f"P\t{path}\tfile\t644\troot\troot\t200.0\t")
            continue
        if path not in files:
            lines.append(f"P\t{path}\tnone")
            continue
        content, (user, group, mode) = files[path]
        if content == "dir":
            kind, detail = "dir", ""
        elif isinstance(content, tuple):
            kind, detail = content
        else:
            kind = "file"
            detail = "" if path in state.secret_paths else hashlib.sha256(content.encode()).hexdigest()
        mtime = 400.0 if path in newer else 100.0
        lines.append(f"P\t{path}\t{kind}\t{mode}\t{user}\t{group}\t{mtime}\t{detail}")
    for unit in state.units:
        if unit in inactive:
            lines += [f"U\t{unit}\tActiveState=inactive", f"U\t{unit}\tUnitFileState=static", f"U\t{unit}\tMainPID=0"]
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
    for name, probe_lines in (probes or {}).items():
        lines += [f"X\t{name}\t{line}" for line in probe_lines]
    return lines


def checks_answer(user: str, account: list[str], apache_version: str) -> dict[str, list[str]]:
    """The fake response to the host checks' snapshot: the account's lines and Apache's version."""
    state = host_checks.checks_snapshot(user)
    answer = snapshot_answer(state, {}, probes={"account": account, "apache": [apache_version]})
    return {snapshot_command(state): answer}


def certificate_answer(letsencrypt_mode: bool) -> list[str]:
    """The TLS snapshot of a converged host: a valid self-signed pair; in letsencrypt mode
    also certbot's live one, and the links pointing at it."""
    valid = ("valid", f"    DNS:{NAME}")
    lines = [f"X\tself-signed\t{x}" for x in valid]
    if letsencrypt_mode:
        lines += [f"X\tlive\t{x}" for x in valid]
        for link, target in zip((tls.SERVED_CERT, tls.SERVED_KEY), tls.live_paths(NAME), strict=True):
            lines.append(f"P\t{link}\tlink\t777\troot\troot\t100.0\t{target}")
    return lines


# The server's packages on a converged host (what files/jupyter_activity.py prints).
SERVER_PACKAGES = {"jupyter-server": "2.21.1", "notebook": "7.6.5", "tornado": "6.5.2"}


def converged_responses(
    data=None, interrupted=False, account_comment=jupyter.ACCOUNT_COMMENT, deferred=False, running=None, overrides=None
):
    """
    What a host that a finished deploy left behind answers to every fact command.

    + interrupted: Jupyter's config and the vhost were written after the last restart and
      reload (a run was killed in between)
    + account_comment: the notebook account's GECOS comment
    + deferred: a restart is owed since after Jupyter started, and its timer waits
    + running: the server's packages the running server loaded, when not those installed
    + overrides: the prefix's JupyterLab overrides.json, when not the deploy's
    """
    data = {**settings.DEFAULTS, "server_name": NAME, **(data or {})}
    user = data["jupyter_user"]
    stored_hash = passwords.hash_password(PASSWORD)
    config = jupyter.server_config(data, NAME)
    unit = jupyter.unit_file(
        user, data["conda_prefix"], data["notebook_dir"], data["jupyter_base_url"], data["jupyter_port"]
    )
    letsencrypt_mode = data["tls_mode"] == "letsencrypt"
    vhost = apache.vhost(data, NAME)
    home = f"/var/lib/{user}"
    readable = ("root", user, "640")
    system_file = ("root", "root", "644")
    # Every managed file older than the last restart and reload (see snapshot_answer).
    service = jupyter.service_snapshot(user, data["notebook_dir"], data["conda_prefix"])
    installer = conda.installer_snapshot(data["conda_prefix"], data["conda_installer_sha256"])
    updates = restarts.updates_snapshot(data["conda_prefix"])
    jupyter_files = {
        data["notebook_dir"]: ("dir", (user, user, "750")),
        home: ("dir", (user, user, "750")),
        jupyter.CONFIG_DIR: ("dir", ("root", user, "750")),
        jupyter.MIGRATED_MARKER: ("", readable),
        jupyter.CONFIG_FILE: (config, readable),
        jupyter.LOGIN_HANDLER_FILE: ((ROOT / "files" / "jupyter_login_handler.py").read_text(), readable),
        jupyter.SIGN_IN_FILE: ((ROOT / "files" / "jupyter_sign_in.py").read_text(), readable),
        jupyter.KERNEL_DIR: ("dir", ("root", user, "750")),
        jupyter.USER_KERNELS: ("dir", ("root", user, "750")),
        f"{jupyter.USER_KERNELS}/kernels": (("link", f"{home}/.local/share/jupyter/kernels"), ("root", user, "777")),
        jupyter.KERNEL_SPEC: (jupyter.kernel_spec(data["conda_prefix"], user), readable),
        jupyter.GUARD_FILE: ((ROOT / "files" / "conda-shared-prefix-guard").read_text(), ("root", "root", "755")),
        jupyter.CELL_CHECK: ((ROOT / "files" / "jupyter-cell-check").read_text(), ("root", "root", "755")),
        jupyter.CELL_CHECK_CLIENT: ((ROOT / "files" / "jupyter_cell_check.py").read_text(), system_file),
        jupyter.UNIT_FILE: (unit, system_file),
        jupyter.SANDBOX_DROPIN: (jupyter.sandbox_dropin(user, data["notebook_dir"]), system_file),
        jupyter.LIMITS_DROPIN: (
            jupyter.limits_dropin(data["memory_limit"], data["cpu_limit"]),
            ("root", "root", "644"),
        ),
        jupyter.PASSWORD_FILE: ("secret", readable),
        jupyter.ACTIVITY_FILE: ((ROOT / "files" / "jupyter_activity.py").read_text(), readable),
        resource_usage.MEMORY_MAX_FILE: ("700000000", system_file),
        resource_usage.overrides_path(data["conda_prefix"]): (overrides or resource_usage.OVERRIDES, system_file),
        restarts.SCRIPT: ((ROOT / "files" / restarts.UNIT).read_text(), ("root", "root", "755")),
        restarts.SERVICE_FILE: ((ROOT / "files" / f"{restarts.UNIT}.service").read_text(), system_file),
        restarts.TIMER_FILE: ((ROOT / "files" / f"{restarts.UNIT}.timer").read_text(), system_file),
        **({restarts.OWED: ("owed", ("root", "root", "600"))} if deferred else {}),
    }
    account = f"{user}:x:999:999:{account_comment}:{home}:{jupyter.NOLOGIN}"
    site = apache.site_snapshot(data["tls_mode"])
    apache_files = {
        apache.SWAP_SCRIPT: ((ROOT / "files" / "apache-config-swap").read_text(), ("root", "root", "755")),
        apache.SITE_PATH: (vhost, system_file),
        apache.HARDENING_PATH: ((ROOT / "files" / "apache-hardening.conf").read_text(), system_file),
        apache.WORKERS_PATH: ((ROOT / "files" / "apache-mpm.conf").read_text(), system_file),
        **{path: ("certificate", system_file) for path in tls.served_paths(data["tls_mode"])},
        **{f"/etc/apache2/{kind}-enabled": ("dir", ("root", "root", "755")) for kind in apache.KINDS},
        **{
            apache.enabled_path(kind, name): (("link", apache.enabled_link(kind, name)), ("root", "root", "777"))
            for kind, name in apache.OWN_CONFIGS
        },
    }
    enabled = {
        "mods-enabled": [f"{m}.load" for m in apache.needed_modules(basic_auth=False)] + ["mpm_event.load"],
        "sites-enabled": [f"{apache.SITE}.conf"],
        "conf-enabled": ["security.conf", f"{apache.HARDENING_CONF}.conf", f"{apache.WORKERS_CONF}.conf"],
    }
    jail = login_ban.jail_config(data)
    ban_files = {
        login_ban.FILTER_FILE: ((ROOT / "files" / "fail2ban-jupyter-login.conf").read_text(), system_file),
        login_ban.ACTION_FILE: ((ROOT / "files" / "fail2ban-jupyter-ban.conf").read_text(), system_file),
        login_ban.JAIL_FILE: (jail, system_file),
    }
    responses = {
        # Each concern's snapshot, by its exact command (first: other answers match parts of it).
        snapshot_command(service): snapshot_answer(
            service,
            jupyter_files,
            probes={"account": [account], "resource_usage": [f"{data['conda_prefix']}/lib/python3.13/site-packages/x"]},
            newer=([jupyter.CONFIG_FILE] if interrupted else []) + ([restarts.OWED] if deferred else []),
            inactive=() if deferred else restarts.UNITS,
        ),
        snapshot_command(site): snapshot_answer(
            site, apache_files, reloaded=True, probes=enabled, newer=[apache.SITE_PATH] if interrupted else ()
        ),
        snapshot_command(tls.certificate_snapshot(NAME)): certificate_answer(letsencrypt_mode),
        snapshot_command(updates): snapshot_answer(
            updates,
            {restarts.OWED: ("owed", ("root", "root", "600"))} if deferred else {},
            # The prefix changed since the server started only when it runs other packages.
            probes={
                "versions": ["unchanged"]
                if running is None
                else ["kernels=1 kernels_busy=0 terminals=0 terminals_busy=0"]
                + [f"running {n} {v}" for n, v in running.items()]
                + [f"installed {n} {v}" for n, v in SERVER_PACKAGES.items()]
            },
            newer=[restarts.OWED] if deferred else [],
            inactive=() if deferred else [restarts.TIMER],
        ),
        snapshot_command(login_ban.jail_snapshot()): snapshot_answer(login_ban.jail_snapshot(), ban_files),
        # auth 'password': nothing of the single sign-on.
        snapshot_command(sign_in.sign_in_snapshot()): snapshot_answer(sign_in.sign_in_snapshot(), {}),
        "db:Status-Abbrev": [f"ii  {p}" for p in system.wanted_packages(data)] + ["index-age 60"],
        # host_checks: the account and Apache's version, in one command.
        **checks_answer(user, [account, f"config-group={user}"], "2.4.71-1~deb12u1"),
        # What Apache reads, read again just before its reload when the run is planned first.
        snapshot_command(apache.reload_snapshot(data["tls_mode"])): snapshot_answer(
            apache.reload_snapshot(data["tls_mode"]), apache_files, reloaded=True
        ),
        # Not a command: what get_file downloads (see FakeDownloads).
        FakeDownloads.key(jupyter.PASSWORD_FILE): passwords.file_content(stored_hash),
        snapshot_command(installer): snapshot_answer(
            installer,
            {
                path: ((ROOT / "files" / path.rsplit("/", 1)[1]).read_text(), ("root", "root", "755"))
                for path in (conda.INSTALL_SCRIPT, conda.SWITCH_SCRIPT, conda.CHECK_SCRIPT, conda.STRANDED_SCRIPT)
            },
            probes={
                "installation": [
                    "prefix link",
                    f"prefix-sha256 {data['conda_installer_sha256']}",
                    "prefix-notebook",
                    "target-present",
                    f"target-sha256 {data['conda_installer_sha256']}",
                    "target-notebook",
                ]
            },
        ),
        "ufw status": [
            "Status: active",
            "Default: deny (incoming), allow (outgoing), disabled (routed)",
            "--added--",
            "ufw allow 22/tcp",
            "ufw allow 80/tcp",
            "ufw allow 443/tcp",
        ],
    }
    responses[environment.RECORD] = json.dumps(
        {"conda": data["conda_packages"], "pip": data["pip_packages"], "requirements": None}
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
