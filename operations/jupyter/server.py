"""
The server's own files: its config (``jupyter_server_config.py``), rendered from a host's
settings, and the python3 kernel spec of the distribution.
"""

from __future__ import annotations

from .. import settings, sign_in
from ..render import render
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
