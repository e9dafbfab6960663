"""
The server's own files: its config (``jupyter_server_config.py``), rendered from a host's
settings, the modules it loads, its password, and the python3 kernel spec of the distribution;
and the tools beside it (the conda guard on its PATH, the smoke check's cell on the host).
"""

from __future__ import annotations

from .. import passwords, settings, sign_in, snapshot
from ..render import FILES, render
from . import layout

# Apache's proxy timeout divided by this is how often Jupyter pings idle websockets.
PINGS_PER_PROXY_TIMEOUT = 3


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
        password_file=layout.PASSWORD_FILE,
        config_dir=layout.CONFIG_DIR,
        login_handler=f"{layout.LOGIN_HANDLER_MODULE}.LoginHandler",
        single_sign_on=sign_in.enabled(data),
        collaboration=data.get("collaboration"),
        identity_provider=f"{layout.SIGN_IN_MODULE}.ApacheIdentityProvider",
        credential=sign_in.CREDENTIAL,
        logout_url=sign_in.logout_url(server_name, data.get("jupyter_base_url")),
        activity_module=layout.ACTIVITY_MODULE,
        memory_max_file=layout.MEMORY_MAX_FILE,
        home=settings.home_of(data.get("jupyter_user")),
        prefix=data.get("conda_prefix"),
        data_dir=layout.DATA_DIR,
        cull_idle_timeout=cull_idle_timeout,
        cull_interval=cull_interval(cull_idle_timeout) if cull_idle_timeout else 0,
        proxy_timeout=proxy_timeout,
        ws_ping_interval_ms=ws_ping_interval_ms(proxy_timeout),
        max_request_bytes=settings.size_bytes(data.get("max_request_size")),
    )


def kernel_spec(prefix, user) -> str:
    return render("python3-kernel.json.j2", prefix=prefix, home=settings.home_of(user))


def install_server_files(state: snapshot.Snapshot, data, server_name: str, user: str, prefix: str, home: str) -> list:
    """The config directory and what the server reads from it (root-owned, readable by
    ``user``); returns the operations of what the server reads at start (a change restarts it)."""
    readable_by_user = {"user": "root", "group": user, "state": state}
    snapshot.directory(name="Config directory", path=layout.CONFIG_DIR, mode="750", **readable_by_user)
    # Jupyter migrates an old ~/.ipython into its config dir unless this marker exists; the
    # config dir is read-only for the server, and a failed migration stops it from starting.
    snapshot.put(
        name="No config migration", src=snapshot.text(""), dest=layout.MIGRATED_MARKER, mode="640", **readable_by_user
    )
    read_at_start = [
        snapshot.put(
            name="Jupyter server config",
            src=snapshot.text(server_config(data, server_name)),
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
    if sign_in.enabled(data):
        # People sign in at the provider: Jupyter has no password of its own.
        read_at_start.append(
            snapshot.absent(name="No Jupyter password (single sign-on)", path=layout.PASSWORD_FILE, state=state)
        )
    else:
        read_at_start.append(
            passwords.password_file(
                name="Jupyter password hash (never shown)",
                path=layout.PASSWORD_FILE,
                password_hash=data.jupyter_password_hash,
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
    return read_at_start


def install_tools(state: snapshot.Snapshot) -> None:
    """Root's scripts beside the server: the conda guard first on its PATH, and the smoke
    check's cell on the host (single sign-on hosts) with its client."""
    for name, dest, src in (
        ("conda guard for the shared environment", layout.GUARD_FILE, "conda-shared-prefix-guard"),
        ("The smoke check's cell on the host (single sign-on hosts)", layout.CELL_CHECK, "jupyter-cell-check"),
    ):
        snapshot.script(name=name, dest=dest, src=FILES / src, state=state)
    snapshot.put(
        name="The smoke check's client for that cell",
        src=FILES / "jupyter_cell_check.py",
        dest=layout.CELL_CHECK_CLIENT,
        user="root",
        group="root",
        mode="644",
        state=state,
        create_remote_dir=True,
    )
