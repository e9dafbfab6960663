"""
Jupyter Notebook as a systemd service, listening on loopback for Apache.

The server runs as an unprivileged system user with no login shell, reads its
configuration from ``/etc/jupyter`` (root-owned: the notebook user can read but not
change it) and is restarted only when its configuration, password or unit changed.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy, operation
from pyinfra.operations import server

from . import collaboration, passwords, resource_usage, restarts, settings, sign_in, snapshot
from .render import FILES, render

CONFIG_DIR = "/etc/jupyter"
CONFIG_FILE = f"{CONFIG_DIR}/jupyter_server_config.py"
PASSWORD_FILE = f"{CONFIG_DIR}/password_hash"
# files/jupyter_login_handler.py, imported by the server from CONFIG_DIR.
LOGIN_HANDLER_MODULE = "jupyter_login_handler"
LOGIN_HANDLER_FILE = f"{CONFIG_DIR}/{LOGIN_HANDLER_MODULE}.py"
# files/jupyter_sign_in.py: who is signed in, as Apache says (auth 'oidc').
SIGN_IN_MODULE = "jupyter_sign_in"
SIGN_IN_FILE = f"{CONFIG_DIR}/{SIGN_IN_MODULE}.py"
# files/jupyter_activity.py: tells the deploy whether anything is busy and what the server runs.
ACTIVITY_FILE = restarts.ACTIVITY_FILE
MIGRATED_MARKER = f"{CONFIG_DIR}/migrated"
# The server's data dir (JUPYTER_DATA_DIR): root-owned, holds the deploy's python3 kernel spec.
DATA_DIR = f"{CONFIG_DIR}/data"
KERNEL_DIR = f"{DATA_DIR}/kernels/python3"
KERNEL_SPEC = f"{KERNEL_DIR}/kernel.json"
# On JUPYTER_PATH after DATA_DIR: holds only `kernels`, a link to the user's kernel specs.
USER_KERNELS = f"{CONFIG_DIR}/user"
# The `conda` first on the notebook user's PATH (files/conda-shared-prefix-guard).
GUARD_DIR = "/usr/local/lib/jupyter-deploy/bin"
GUARD_FILE = f"{GUARD_DIR}/conda"
# The smoke check's cell on the host itself (files/jupyter-cell-check and the client it runs),
# for a single sign-on host nobody can log in to with a password: run as root over SSH.
CELL_CHECK = "/usr/local/lib/jupyter-deploy/jupyter-cell-check"
CELL_CHECK_CLIENT = "/usr/local/lib/jupyter-deploy/jupyter_cell_check.py"
NOLOGIN = "/usr/sbin/nologin"
# Ceilings of the unit whatever the settings: see the unit template.
TASKS_MAX = 2048
OOM_SCORE_ADJUST = 800
# Apache's proxy timeout divided by this is how often Jupyter pings idle websockets.
PINGS_PER_PROXY_TIMEOUT = 3
# The cloud metadata service (Linode, AWS, GCP, Azure...): denied to the unit. Linode's
# (Akamai's Metadata API) answers on all three.
METADATA_ADDRESSES = ("169.254.169.254", "fd00:a9fe:a9fe::1", "fe80::a9fe:a9fe")
UNIT = "jupyter"
UNIT_FILE = f"/etc/systemd/system/{UNIT}.service"
LIMITS_DROPIN = f"/etc/systemd/system/{UNIT}.service.d/limits.conf"
# What confines the server, its kernels and terminals; files/conda-switch runs the check of a
# new distribution with the same properties (it reads this file).
SANDBOX_DROPIN = f"/etc/systemd/system/{UNIT}.service.d/sandbox.conf"


def restart_pending(state: snapshot.Snapshot, unit: str, paths: list[str]) -> list[str]:
    """
    What a running ``unit`` has not picked up yet, from the concern's snapshot: each of
    ``paths`` changed after its main process started (empty when it is not running). A run
    interrupted between writing a file and restarting leaves exactly this behind. (That
    systemd still has an old copy of a unit file calls for a daemon-reload, not a restart:
    ``snapshot.service`` does it.)
    """
    current = state.unit(unit)
    # systemd's own start time, to the microsecond: `ps -o lstart` is derived from the boot
    # time truncated to a second and can read up to a second early, which made a file
    # written just before a restart look newer than the process.
    return state.newer_than(paths, current.started) if current.main_pid > 0 and current.started else []


class Account(snapshot.Probe):
    """``user``'s passwd entry as its seven fields (``None``: no such account)."""

    def __init__(self, user: str):
        self.user = user

    def command(self):
        return f"getent passwd {shlex.quote(self.user)}"

    def parse(self, lines):
        return next((line.split(":") for line in lines if line.count(":") == 6), None)


@operation()
def account(user: str, comment: str, home: str, state: snapshot.Snapshot):
    """
    A system account with no login shell, decided from the snapshot's ``account`` probe
    (``getent passwd USER``).

    + user: the account name
    + comment: its GECOS comment (how later runs know the deploy made it)
    + home: its home directory, created with the account

    **Example:**

    .. code:: python

        jupyter.account(name="System user", user="jupyter", comment=ACCOUNT_COMMENT,
                        home="/var/lib/jupyter", state=state)
    """
    q = shlex.quote
    entry = state.probe("account")
    if entry is None:
        yield StringCommand(
            f"useradd --system --comment {q(comment)} --home-dir {q(home)} --create-home --shell {NOLOGIN} {q(user)}"
        )
        return
    if (entry[4], entry[5], entry[6]) == (comment, home, NOLOGIN):
        host.noop(f"account {user} exists")
        return
    yield StringCommand(f"usermod --comment {q(comment)} --home {q(home)} --shell {NOLOGIN} {q(user)}")


# The GECOS comment of the account this deploy creates: how a later run knows it is ours.
ACCOUNT_COMMENT = "Jupyter Notebook (jupyter-apache-deploy)"


class AccountOrigin(snapshot.Probe):
    """
    ``None`` when ``user`` does not exist, else a dict: ``comment`` and ``home`` from passwd,
    and ``config_group``, the group owning the deploy's config directory (how hosts deployed
    before the comment existed are recognised).
    """

    def __init__(self, user: str):
        self.user = user

    def command(self):
        q = shlex.quote
        return f"getent passwd {q(self.user)} || true; stat -c 'config-group=%G' {CONFIG_DIR} 2>/dev/null || true"

    def parse(self, output):
        account, config_group = None, None
        for line in output:
            if line.startswith("config-group="):
                config_group = line.split("=", 1)[1].strip()
            elif line.count(":") == 6:
                fields = line.rstrip("\n").split(":")
                account = {"comment": fields[4], "home": fields[5]}
        return None if account is None else {**account, "config_group": config_group}


def made_by_deploy(user: str, origin: dict) -> bool:
    """Whether the existing account ``AccountOrigin`` describes is this deploy's own."""
    # Made by a version of this deploy that set no comment: its home and the config's group.
    earlier_version = origin["home"] == settings.home_of(user) and origin["config_group"] == user
    return origin["comment"] == ACCOUNT_COMMENT or earlier_version


def check_account(host_name: str, user: str, origin: dict | None) -> None:
    """Refuse to run Jupyter as an account that exists and was not made by this deploy."""
    if origin is None or made_by_deploy(user, origin):
        return
    raise settings.SettingsError(
        f"{host_name}: setting jupyter_user = {user!r} is not allowed: must be an account this deploy creates; "
        f"{user!r} already exists on this host (home {origin['home']}) and was not created by it. "
        "Choose another name, e.g. 'jupyter'",
    )


def memory_limits(memory_limit: str | None) -> tuple[str | None, str | None]:
    """(MemoryMax, MemoryHigh) for the unit: high is 90 % of max, so reclaim starts first."""
    if memory_limit is None:
        return None, None
    if memory_limit.endswith("%"):
        percent = int(memory_limit[:-1])
        return f"{percent}%", f"{percent * 9 // 10}%"
    return memory_limit, str(settings.size_bytes(memory_limit) * 9 // 10)


def cpu_quota(cores: float | None) -> str | None:
    return None if cores is None else f"{round(cores * 100)}%"


def cull_interval(timeout: int) -> int:
    """How often the culler looks: a tenth of the timeout, at most Jupyter's default 300 s."""
    return max(1, min(300, timeout // 10))


def ws_ping_interval_ms(proxy_timeout: int) -> int:
    """Jupyter's own 30 s, or more often when Apache's proxy timeout is short."""
    return min(30000, proxy_timeout * 1000 // PINGS_PER_PROXY_TIMEOUT)


def server_config(data, server_name: str) -> str:
    """Jupyter's config, from a host's settings (``data``: its host data, or a mapping of
    setting names)."""
    cull_idle_timeout = data.get("cull_idle_kernels_after")
    proxy_timeout = data.get("apache_proxy_timeout")
    return render(
        "jupyter_server_config.py.j2",
        server_name=server_name,
        server_name_is_ip=settings.is_ip(server_name),
        base_url=data.get("jupyter_base_url"),
        port=data.get("jupyter_port"),
        notebook_dir=data.get("notebook_dir"),
        terminals=data.get("jupyter_terminals"),
        password_file=PASSWORD_FILE,
        config_dir=CONFIG_DIR,
        login_handler=f"{LOGIN_HANDLER_MODULE}.LoginHandler",
        single_sign_on=sign_in.enabled(data),
        collaboration=data.get("collaboration"),
        identity_provider=f"{SIGN_IN_MODULE}.ApacheIdentityProvider",
        credential=sign_in.CREDENTIAL,
        logout_url=sign_in.logout_url(server_name, data.get("jupyter_base_url")),
        activity_module=restarts.ACTIVITY_MODULE,
        memory_max_file=resource_usage.MEMORY_MAX_FILE,
        home=settings.home_of(data.get("jupyter_user")),
        prefix=data.get("conda_prefix"),
        data_dir=DATA_DIR,
        cull_idle_timeout=cull_idle_timeout,
        cull_interval=cull_interval(cull_idle_timeout) if cull_idle_timeout else 0,
        proxy_timeout=proxy_timeout,
        ws_ping_interval_ms=ws_ping_interval_ms(proxy_timeout),
        max_request_bytes=settings.size_bytes(data.get("max_request_size")),
    )


def unit_file(user, prefix, notebook_dir, base_url, port, single_sign_on: bool = False) -> str:
    return render(
        "jupyter.service.j2",
        user=user,
        port=port,
        home=settings.home_of(user),
        prefix=prefix,
        notebook_dir=notebook_dir,
        base_url=base_url,
        config_dir=CONFIG_DIR,
        data_dir=DATA_DIR,
        guard_dir=GUARD_DIR,
        user_kernels=USER_KERNELS,
        limits_dropin=LIMITS_DROPIN,
        sandbox_dropin=SANDBOX_DROPIN,
        proxy_secret=sign_in.PROXY_SECRET if single_sign_on else None,
        credential=sign_in.CREDENTIAL,
    )


def sandbox_dropin(user: str, notebook_dir: str) -> str:
    """The unit's sandbox (a drop-in): what the server, its kernels and terminals, and the
    check of a new distribution (files/conda-switch) run under."""
    return render(
        "jupyter-sandbox.conf.j2",
        user=user,
        home=settings.home_of(user),
        notebook_dir=notebook_dir,
        oom_score_adjust=OOM_SCORE_ADJUST,
        metadata_addresses=METADATA_ADDRESSES,
    )


def limits_values(memory_limit: str | None, cpu_limit: float | None) -> dict[str, str]:
    """The drop-in's properties, as `systemctl set-property` takes them."""
    memory_max, memory_high = memory_limits(memory_limit)
    return {
        "MemoryHigh": memory_high or "infinity",
        "MemoryMax": memory_max or "infinity",
        "MemorySwapMax": "0" if memory_max else "infinity",
        "CPUQuota": cpu_quota(cpu_limit) or "",
        "TasksMax": str(TASKS_MAX),
    }


def limits_dropin(memory_limit: str | None, cpu_limit: float | None) -> str:
    """The drop-in file: the very values `limits_values` hands to `systemctl set-property`."""
    return render("jupyter-limits.conf.j2", limits=limits_values(memory_limit, cpu_limit))


def kernel_spec(prefix, user) -> str:
    return render("python3-kernel.json.j2", prefix=prefix, home=settings.home_of(user))


# What the server reads at start (the proxy secret: as its systemd credential): a change to
# any of them needs a restart.
RESTART_PATHS = [
    CONFIG_FILE,
    LOGIN_HANDLER_FILE,
    SIGN_IN_FILE,
    ACTIVITY_FILE,
    PASSWORD_FILE,
    UNIT_FILE,
    SANDBOX_DROPIN,
    sign_in.PROXY_SECRET,
]


def service_snapshot(user: str, notebook_dir: str, prefix: str) -> snapshot.Snapshot:
    """The Jupyter concern's host state in one command: its paths, its unit, its account."""
    return snapshot.Snapshot(
        paths=[
            notebook_dir,
            settings.home_of(user),
            CONFIG_DIR,
            MIGRATED_MARKER,
            CONFIG_FILE,
            LOGIN_HANDLER_FILE,
            SIGN_IN_FILE,
            ACTIVITY_FILE,
            KERNEL_DIR,
            USER_KERNELS,
            f"{USER_KERNELS}/kernels",
            KERNEL_SPEC,
            GUARD_FILE,
            CELL_CHECK,
            CELL_CHECK_CLIENT,
            UNIT_FILE,
            SANDBOX_DROPIN,
            LIMITS_DROPIN,
            *restarts.PATHS,
            resource_usage.MEMORY_MAX_FILE,
            resource_usage.overrides_path(prefix),
        ],
        secret_paths=[PASSWORD_FILE, sign_in.PROXY_SECRET],
        units=[f"{UNIT}.service", *restarts.UNITS],
        probes={
            "account": Account(user),
            "resource_usage": resource_usage.probe(prefix),
            "collaboration": collaboration.probe(prefix),
        },
    )


@deploy(
    "Jupyter Notebook service",
    data_defaults=settings.defaults(
        "server_name",
        "jupyter_base_url",
        "jupyter_port",
        "jupyter_user",
        "notebook_dir",
        "jupyter_password_hash",
        "jupyter_terminals",
        "conda_prefix",
        "memory_limit",
        "cpu_limit",
        "cull_idle_kernels_after",
        "apache_proxy_timeout",
        "max_request_size",
        "restart_policy",
        "restart_deadline",
        "auth",
        "collaboration",
    ),
)
def install_jupyter():
    """User, directories, config, password, systemd unit; restart only on change."""
    user = host.data.jupyter_user
    notebook_dir = host.data.notebook_dir
    home = settings.home_of(user)
    # An existing account that the deploy did not make was refused by host_checks, first.
    state = service_snapshot(user, notebook_dir, host.data.conda_prefix)
    account(name=f"System user {user} (no login shell)", user=user, comment=ACCOUNT_COMMENT, home=home, state=state)
    owned_by_user = {"user": user, "group": user, "mode": "750", "state": state}
    readable_by_user = {"user": "root", "group": user, "state": state}
    snapshot.directory(name="Notebook directory", path=notebook_dir, record_as="notebook_dir", **owned_by_user)
    snapshot.directory(name="Jupyter's home", path=home, **owned_by_user)
    snapshot.directory(name="Config directory", path=CONFIG_DIR, mode="750", **readable_by_user)
    # Jupyter migrates an old ~/.ipython into its config dir unless this marker exists; the
    # config dir is read-only for the server, and a failed migration stops it from starting.
    snapshot.put(
        name="No config migration", src=snapshot.text(""), dest=MIGRATED_MARKER, mode="640", **readable_by_user
    )
    config = snapshot.put(
        name="Jupyter server config",
        src=snapshot.text(server_config(host.data, settings.server_name(host))),
        dest=CONFIG_FILE,
        mode="640",
        **readable_by_user,
    )
    login_handler = snapshot.put(
        name="Login handler (password checks off the event loop)",
        src=FILES / f"{LOGIN_HANDLER_MODULE}.py",
        dest=LOGIN_HANDLER_FILE,
        mode="640",
        **readable_by_user,
    )
    activity = snapshot.put(
        name="Activity check (is anything busy?) for deferred restarts",
        src=FILES / f"{restarts.ACTIVITY_MODULE}.py",
        dest=ACTIVITY_FILE,
        mode="640",
        **readable_by_user,
    )
    sign_in_module = snapshot.put(
        name="Identity from Apache's single sign-on (used with auth 'oidc')",
        src=FILES / f"{SIGN_IN_MODULE}.py",
        dest=SIGN_IN_FILE,
        mode="640",
        **readable_by_user,
    )
    if sign_in.enabled(host.data):
        # People sign in at the provider: Jupyter has no password of its own.
        password = snapshot.absent(name="No Jupyter password (single sign-on)", path=PASSWORD_FILE, state=state)
    else:
        password = passwords.password_file(
            name="Jupyter password hash (never shown)",
            path=PASSWORD_FILE,
            password_hash=host.data.jupyter_password_hash,
            password=passwords.password_from_environment(),
            group=user,
            state=state,
        )
    snapshot.directory(name="Server data directory", path=KERNEL_DIR, mode="750", **readable_by_user)
    snapshot.directory(name="User kernel specs link directory", path=USER_KERNELS, mode="750", **readable_by_user)
    snapshot.link(
        name="The user's kernel specs, and nothing else of their data dir",
        path=f"{USER_KERNELS}/kernels",
        target=f"{home}/.local/share/jupyter/kernels",
        **readable_by_user,
    )
    snapshot.put(
        name="Python 3 kernel spec",
        src=snapshot.text(kernel_spec(host.data.conda_prefix, user)),
        dest=KERNEL_SPEC,
        mode="640",
        **readable_by_user,
    )
    system_file = {"user": "root", "group": "root", "state": state, "create_remote_dir": True}
    snapshot.script(
        name="conda guard for the shared environment",
        dest=GUARD_FILE,
        src=FILES / "conda-shared-prefix-guard",
        state=state,
    )
    snapshot.script(
        name="The smoke check's cell on the host (single sign-on hosts)",
        dest=CELL_CHECK,
        src=FILES / "jupyter-cell-check",
        state=state,
    )
    snapshot.put(
        name="The smoke check's client for that cell",
        src=FILES / "jupyter_cell_check.py",
        dest=CELL_CHECK_CLIENT,
        user="root",
        group="root",
        mode="644",
        create_remote_dir=True,
        state=state,
    )
    unit = snapshot.put(
        name="systemd unit",
        src=snapshot.text(
            unit_file(
                user,
                host.data.conda_prefix,
                notebook_dir,
                host.data.jupyter_base_url,
                host.data.jupyter_port,
                single_sign_on=sign_in.enabled(host.data),
            )
        ),
        dest=UNIT_FILE,
        mode="644",
        **system_file,
    )
    sandbox = snapshot.put(
        name="Sandbox of the server, its kernels and terminals (systemd drop-in)",
        src=snapshot.text(sandbox_dropin(user, notebook_dir)),
        dest=SANDBOX_DROPIN,
        mode="644",
        **system_file,
    )
    limits = snapshot.put(
        name="Memory, CPU and task limits (systemd drop-in)",
        src=snapshot.text(limits_dropin(host.data.memory_limit, host.data.cpu_limit)),
        dest=LIMITS_DROPIN,
        mode="644",
        **system_file,
    )
    restart_service, restart_timer = restarts.install(state)
    resource_display = resource_usage.installed(
        name="Memory display for the notebook UI (jupyter-resource-usage)", prefix=host.data.conda_prefix, state=state
    )
    collaborating = collaboration.installed(
        name="Real-time collaboration (jupyter-collaboration)"
        if host.data.collaboration
        else "No real-time collaboration",
        prefix=host.data.conda_prefix,
        wanted=host.data.collaboration,
        state=state,
    )
    resource_usage.display_on(
        name="The memory display on by default (the prefix's JupyterLab overrides.json)",
        prefix=host.data.conda_prefix,
        state=state,
    )
    # New limits reach the running unit's cgroup at once; no restart, kernels keep running.
    # (Before the daemon-reload below: on systemd 252 a set-property after it left the unit
    # flagged as changed on disk.)
    server.shell(
        name="Apply the new limits to the running server",
        commands=[
            StringCommand(
                "systemctl",
                "set-property",
                "--runtime",
                UNIT,
                *(
                    QuoteString(f"{k}={v}")
                    for k, v in limits_values(host.data.memory_limit, host.data.cpu_limit).items()
                ),
            )
        ],
        _if=limits.did_change,
    )
    # Restarted for what the server reads at start (also when an interrupted earlier run
    # wrote it and never restarted: the snapshot says so); a stopped server starts with it.
    # A restart ends every kernel: with restart_policy 'when-idle' it waits until nothing is
    # busy (restarts.py), and a restart already deferred is not owed a second time. (A change
    # to the server's own packages: restarts.restart_for_server_updates, after they are in.)
    policy = host.data.restart_policy

    def waiting() -> bool:
        return policy != "now" and restarts.deferred(state, f"{UNIT}.service")

    snapshot.service(
        name="Jupyter running with its current config",
        service=f"{UNIT}.service",
        daemon_reload=snapshot.Changes(unit, sandbox, limits, restart_service, restart_timer),
        restarted=snapshot.Changes(
            config,
            login_handler,
            sign_in_module,
            activity,
            password,
            unit,
            sandbox,
            resource_display,
            collaborating,
            owed=lambda: [] if waiting() else restart_pending(state, f"{UNIT}.service", RESTART_PATHS),
        ),
        restart_commands=restarts.restart_commands(policy, host.data.restart_deadline),
        note=lambda: "its restart waits until nothing is busy" if waiting() else None,
        state=state,
    )
    resource_usage.memory_limit_file(
        name="Memory limit the notebook UI shows (the unit's MemoryMax)",
        unit=f"{UNIT}.service",
        state=state,
        changed=snapshot.Changes(limits),
    )
