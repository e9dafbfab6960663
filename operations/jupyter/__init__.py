"""
Jupyter Notebook as a systemd service, listening on loopback for Apache: the server concern,
one module per job.

- ``layout``: every path and unit of the server;
- ``account``: the notebook account (and the host check that refuses one not the deploy's);
- ``server``: its config and kernel spec; ``unit``: its unit, sandbox and limits;
- ``restarts``: restarts that wait until nothing is busy, and what the server says it runs;
- ``resource_usage``: the UI's memory display; ``collaboration``: real-time collaboration;
- ``service``: its state on a host and the one operation that decides its unit.

The server runs as an unprivileged system user with no login shell, reads its configuration
from ``/etc/jupyter`` (root-owned: the notebook user can read but not change it) and is
restarted only when what it reads at start, or the packages it imports, changed.
``install_jupyter`` is the concern's packaged deploy; ``install_restarts`` (the restart
machinery) runs before anything restarts the server, the conda switch included. The names
below are what other concerns use.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy

from .. import passwords, settings, sign_in, snapshot
from ..render import FILES
from . import collaboration, layout, resource_usage, restarts, service
from .account import ACCOUNT_COMMENT, NOLOGIN, Account, AccountOrigin, account, check_account, made_by_deploy
from .layout import (
    CELL_CHECK,
    CELL_CHECK_CLIENT,
    CONFIG_DIR,
    CONFIG_FILE,
    GUARD_DIR,
    GUARD_FILE,
    KERNEL_SPEC,
    LIMITS_DROPIN,
    LOGIN_HANDLER_FILE,
    PASSWORD_FILE,
    SANDBOX_DROPIN,
    UNIT,
    UNIT_FILE,
)
from .restarts import install_restarts
from .server import cull_interval, kernel_spec, server_config, ws_ping_interval_ms
from .service import RESTART_PATHS, restart_pending, service_snapshot
from .unit import (
    METADATA_ADDRESSES,
    OOM_SCORE_ADJUST,
    TASKS_MAX,
    cpu_quota,
    limits_dropin,
    limits_values,
    memory_limits,
    sandbox_dropin,
    unit_file,
)

__all__ = [
    "ACCOUNT_COMMENT",
    "CELL_CHECK",
    "CELL_CHECK_CLIENT",
    "CONFIG_DIR",
    "CONFIG_FILE",
    "GUARD_DIR",
    "GUARD_FILE",
    "KERNEL_SPEC",
    "LIMITS_DROPIN",
    "LOGIN_HANDLER_FILE",
    "METADATA_ADDRESSES",
    "NOLOGIN",
    "OOM_SCORE_ADJUST",
    "PASSWORD_FILE",
    "RESTART_PATHS",
    "SANDBOX_DROPIN",
    "TASKS_MAX",
    "UNIT",
    "UNIT_FILE",
    "Account",
    "AccountOrigin",
    "account",
    "check_account",
    "cpu_quota",
    "cull_interval",
    "install_jupyter",
    "install_restarts",
    "kernel_spec",
    "limits_dropin",
    "limits_values",
    "made_by_deploy",
    "memory_limits",
    "restart_pending",
    "sandbox_dropin",
    "server_config",
    "service_snapshot",
    "unit_file",
    "ws_ping_interval_ms",
]


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
    """The account, the server's files and unit, its restart machinery, memory display and
    collaboration, and the server running with all of them (restarted only on change)."""
    user = host.data.jupyter_user
    notebook_dir = host.data.notebook_dir
    prefix = host.data.conda_prefix
    home = settings.home_of(user)
    # An existing account that the deploy did not make was refused by host_checks, first.
    state = service_snapshot(user, notebook_dir, prefix)
    account(name=f"System user {user} (no login shell)", user=user, comment=ACCOUNT_COMMENT, home=home, state=state)
    owned_by_user = {"user": user, "group": user, "mode": "750", "state": state}
    readable_by_user = {"user": "root", "group": user, "state": state}
    snapshot.directory(name="Notebook directory", path=notebook_dir, record_as="notebook_dir", **owned_by_user)
    snapshot.directory(name="Jupyter's home", path=home, **owned_by_user)
    snapshot.directory(name="Config directory", path=layout.CONFIG_DIR, mode="750", **readable_by_user)
    # Jupyter migrates an old ~/.ipython into its config dir unless this marker exists; the
    # config dir is read-only for the server, and a failed migration stops it from starting.
    snapshot.put(
        name="No config migration", src=snapshot.text(""), dest=layout.MIGRATED_MARKER, mode="640", **readable_by_user
    )
    read_at_start = [
        snapshot.put(
            name="Jupyter server config",
            src=snapshot.text(server_config(host.data, settings.server_name(host))),
            dest=layout.CONFIG_FILE,
            mode="640",
            **readable_by_user,
        )
    ]
    for name, module, path in (
        ("Login handler (password checks off the event loop)", layout.LOGIN_HANDLER_MODULE, layout.LOGIN_HANDLER_FILE),
        ("Activity check (is anything busy?) for deferred restarts", layout.ACTIVITY_MODULE, layout.ACTIVITY_FILE),
        ("Identity from Apache's single sign-on (used with auth 'oidc')", layout.SIGN_IN_MODULE, layout.SIGN_IN_FILE),
    ):
        read_at_start.append(
            snapshot.put(name=name, src=FILES / f"{module}.py", dest=path, mode="640", **readable_by_user)
        )
    if sign_in.enabled(host.data):
        # People sign in at the provider: Jupyter has no password of its own.
        read_at_start.append(
            snapshot.absent(name="No Jupyter password (single sign-on)", path=layout.PASSWORD_FILE, state=state)
        )
    else:
        read_at_start.append(
            passwords.password_file(
                name="Jupyter password hash (never shown)",
                path=layout.PASSWORD_FILE,
                password_hash=host.data.jupyter_password_hash,
                password=passwords.password_from_environment(),
                group=user,
                state=state,
            )
        )
    snapshot.directory(name="Server data directory", path=layout.KERNEL_DIR, mode="750", **readable_by_user)
    snapshot.directory(
        name="User kernel specs link directory", path=layout.USER_KERNELS, mode="750", **readable_by_user
    )
    snapshot.link(
        name="The user's kernel specs, and nothing else of their data dir",
        path=f"{layout.USER_KERNELS}/kernels",
        target=f"{home}/.local/share/jupyter/kernels",
        **readable_by_user,
    )
    snapshot.put(
        name="Python 3 kernel spec",
        src=snapshot.text(kernel_spec(prefix, user)),
        dest=layout.KERNEL_SPEC,
        mode="640",
        **readable_by_user,
    )
    for name, dest, src in (
        ("conda guard for the shared environment", layout.GUARD_FILE, "conda-shared-prefix-guard"),
        ("The smoke check's cell on the host (single sign-on hosts)", layout.CELL_CHECK, "jupyter-cell-check"),
    ):
        snapshot.script(name=name, dest=dest, src=FILES / src, state=state)
    system_file = {"user": "root", "group": "root", "mode": "644", "state": state, "create_remote_dir": True}
    snapshot.put(
        name="The smoke check's client for that cell",
        src=FILES / "jupyter_cell_check.py",
        dest=layout.CELL_CHECK_CLIENT,
        **system_file,
    )
    unit = snapshot.put(
        name="systemd unit",
        src=snapshot.text(
            unit_file(
                user,
                prefix,
                notebook_dir,
                host.data.jupyter_base_url,
                host.data.jupyter_port,
                single_sign_on=sign_in.enabled(host.data),
            )
        ),
        dest=layout.UNIT_FILE,
        **system_file,
    )
    sandbox = snapshot.put(
        name="Sandbox of the server, its kernels and terminals (systemd drop-in)",
        src=snapshot.text(sandbox_dropin(user, notebook_dir)),
        dest=layout.SANDBOX_DROPIN,
        **system_file,
    )
    limits = snapshot.put(
        name="Memory, CPU and task limits (systemd drop-in)",
        src=snapshot.text(limits_dropin(host.data.memory_limit, host.data.cpu_limit)),
        dest=layout.LIMITS_DROPIN,
        **system_file,
    )
    display = resource_usage.installed(
        name="Memory display for the notebook UI (jupyter-resource-usage)", prefix=prefix, state=state
    )
    collaborating = collaboration.installed(
        name="Real-time collaboration (jupyter-collaboration)"
        if host.data.collaboration
        else "No real-time collaboration",
        prefix=prefix,
        wanted=host.data.collaboration,
        state=state,
    )
    resource_usage.display_on(
        name="The memory display on by default (the prefix's JupyterLab overrides.json)", prefix=prefix, state=state
    )
    # New limits reach the running unit's cgroup at once; no restart, kernels keep running.
    # (Before the daemon-reload below: on systemd 252 a set-property after it left the unit
    # flagged as changed on disk.)
    snapshot.shell(
        name="Apply the new limits to the running server",
        commands=[
            StringCommand(
                "systemctl",
                "set-property",
                "--runtime",
                layout.UNIT,
                *(
                    QuoteString(f"{k}={v}")
                    for k, v in limits_values(host.data.memory_limit, host.data.cpu_limit).items()
                ),
            )
        ],
        when=snapshot.Changes(limits),
    )
    # Restarted for what the server reads at start (also when an interrupted earlier run wrote
    # it and never restarted: the snapshot says so) and for a change to the packages it imports
    # (the fleet's, installed before this concern, and those above); a stopped server starts
    # with them. A restart ends every kernel: with restart_policy 'when-idle' it waits until
    # nothing is busy (restarts.py), and a restart already deferred is not owed a second time.
    service.running(
        state,
        restarts.updates_snapshot(prefix),
        host.data.restart_policy,
        host.data.restart_deadline,
        restart_for=[*read_at_start, unit, sandbox, display, collaborating],
        reload_for=[unit, sandbox, limits],
    )
    resource_usage.memory_limit_file(
        name="Memory limit the notebook UI shows (the unit's MemoryMax)",
        unit=layout.UNIT,
        state=state,
        changed=snapshot.Changes(limits),
    )
