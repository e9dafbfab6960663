"""
What the hub, its proxy, the people's slice and people's servers are given (rendered from
``templates/``), from a host's settings.
"""

from __future__ import annotations

import json

from pyinfra.api import QuoteString, StringCommand

from .. import people, settings
from ..jupyter import unit as server_unit
from ..jupyter.server import ws_ping_interval_ms
from ..render import render
from . import layout

# A person's home, as the spawner expands it for each person (``{USERNAME}``: their hub name).
PERSON_HOME = f"{people.HOMES}/{layout.ACCOUNT_TEMPLATE}"
# auth 'password': the shortest password a person may sign up with or change to (and none of
# NativeAuthenticator's list of common ones).
MINIMUM_PASSWORD_LENGTH = 10
# How long a person's server trusts the hub's word on a sign-in (a token) before it asks
# again: a session the hub ended (a changed password, a person removed) ends there within it.
SIGN_IN_CACHE_SECONDS = 60


def activity_interval(cull_after: int) -> int:
    """Seconds between a person's server's reports of activity to the hub (and of a busy
    kernel, files/jupyter_busy_activity.py), the hub's look at the proxy's, and the culler's
    rounds: a sixth of ``cull_idle_servers_after`` (at most JupyterHub's default, 300), so
    that the three delays together stay within half of it and a busy server is never culled."""
    return max(5, min(300, cull_after // 6)) if cull_after else 300


def person_properties(memory_limit: str | None, cpu_limit: float | None) -> dict[str, str]:
    """The systemd properties of each person's server: the single server's sandbox, with the
    person's home (alone of all homes) writable, and their own limits."""
    properties: dict[str, str] = {}
    for line in server_unit.sandbox_dropin("{USERNAME}", PERSON_HOME).splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            properties[key] = value
    # Only their own home: every other home (and /root) is an empty tmpfs in their unit.
    properties["ReadWritePaths"] = PERSON_HOME
    properties["ProtectHome"] = "tmpfs"
    properties["BindPaths"] = PERSON_HOME
    # Debian's user-private-group umask: what a person writes is theirs and their own group's,
    # readable by others only where others can reach (their home is 0700): in shared_data_dir,
    # what a hub admin writes is read by everyone and changed by the other admins (its group).
    properties["UMask"] = "0002"
    for key, value in server_unit.limits_values(memory_limit, cpu_limit).items():
        if value:
            properties[key] = value
    return properties


def server_config(data) -> str:
    """People's servers' settings file (JSON, in ``layout.SERVER_DIR`` on JUPYTER_CONFIG_PATH)."""
    body = settings.size_bytes(data.max_request_size)
    return (
        json.dumps(
            {
                "ServerApp": {
                    "tornado_settings": {"ws_ping_interval": ws_ping_interval_ms(data.apache_proxy_timeout)},
                    "max_body_size": body,
                    "max_buffer_size": body,
                },
                "HubOAuth": {"cache_max_age": SIGN_IN_CACHE_SECONDS},
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )


def server_extensions() -> str:
    """The extensions people's servers load from the deploy (``layout.SERVER_EXTENSIONS_CONFIG``):
    the busy kernel reported as activity; what the server runs and whether anything is busy,
    for its restarts (answering root alone) and the audit."""
    extensions = {layout.SERVER_EXTENSION_MODULE: True, layout.SERVER_ACTIVITY_MODULE: True}
    return json.dumps({"ServerApp": {"jpserver_extensions": extensions}}, indent=2, sort_keys=True) + "\n"


def server_environment(prefix: str, cull_after: int) -> dict[str, str]:
    return {
        "PATH": f"{prefix}/bin:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": layout.SERVER_DIR,
        "JUPYTER_CONFIG_PATH": layout.SERVER_DIR,
        "JUPYTERHUB_ACTIVITY_INTERVAL": str(activity_interval(cull_after)),
    }


def memory_display_limit(memory_limit: str | None) -> int | str | None:
    """What the memory display shows as the person's limit (``MEM_LIMIT``, set by the hub at
    each spawn): ``memory_limit`` in bytes, or as a share of the host's memory (``'50%'``, in
    bytes once the hub reads the host's), or none."""
    if memory_limit is None or memory_limit.endswith("%"):
        return memory_limit
    return settings.size_bytes(memory_limit)


def spawn_settings(data) -> str:
    """What each person's server is started with (``layout.SPAWN_FILE``, JSON, read by the hub
    at its start): a change to it is owed to every running server (a restart that waits)."""
    return (
        json.dumps(
            {
                "cmd": [f"{data.conda_prefix}/bin/jupyterhub-singleuser"],
                "environment": server_environment(data.conda_prefix, data.cull_idle_servers_after),
                "memory_display_limit": memory_display_limit(data.memory_limit),
                "unit_properties": person_properties(data.memory_limit, data.cpu_limit),
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )


def _hub_names(addresses) -> list[str]:
    return sorted({people.hub_name(a) for a in addresses if not a.startswith("group:")})


def admin_passwords(data) -> str:
    """``layout.ADMIN_PASSWORDS``: each hub admin's first password (hub_admin_password_hashes),
    by their address, as the hub reads it."""
    hashes = {people.normalized(a): h for a, h in data.hub_admin_password_hashes.items()}
    return json.dumps(hashes, indent=2, sort_keys=True) + "\n"


def hub_config(data, server_name: str) -> str:
    allowed = list(data.oidc_allowed)
    groups = sorted(a.removeprefix("group:") for a in allowed if a.startswith("group:"))
    cull_after = data.cull_idle_servers_after
    return render(
        "jupyterhub_config.py.j2",
        config_dir=layout.CONFIG_DIR,
        accounts_module=layout.ACCOUNTS_MODULE,
        base_url=data.jupyter_base_url,
        public_port=data.jupyter_port,
        hub_port=layout.HUB_PORT,
        proxy_api_port=layout.PROXY_API_PORT,
        state_dir=layout.STATE_DIR,
        database=layout.DATABASE,
        cookie_secret=layout.COOKIE_SECRET,
        auth=data.auth,
        admin_passwords=layout.ADMIN_PASSWORDS,
        admin_passwords_set=layout.ADMIN_PASSWORDS_SET,
        minimum_password_length=MINIMUM_PASSWORD_LENGTH,
        issuer=data.oidc_issuer,
        ca_bundle=layout.CA_BUNDLE if data.oidc_ca_bundle else None,
        client_id=data.oidc_client_id,
        client_secret_file=layout.CLIENT_SECRET,
        callback_url=f"https://{server_name}{data.jupyter_base_url}hub/oauth_callback",
        scopes=["openid", "email", "profile"] + (["groups"] if groups else []),
        allowed_users=_hub_names(allowed),
        admin_users=_hub_names(data.hub_admins),
        allowed_groups=groups,
        shared_data_dir=data.shared_data_dir,
        shared_link=layout.SHARED_LINK,
        admins_group=layout.ADMINS_GROUP,
        account_template=layout.ACCOUNT_TEMPLATE,
        unit_template=layout.SERVER_UNIT_TEMPLATE,
        slice=layout.SLICE,
        spawn_file=layout.SPAWN_FILE,
        start_seconds=layout.START_SECONDS,
        cull_after=cull_after,
        activity_interval=activity_interval(cull_after),
        python=layout.PYTHON,
        smoke_token_file=layout.SMOKE_TOKEN,
        smoke_service=layout.SMOKE_SERVICE,
        restart_token_file=layout.RESTART_TOKEN,
        restart_service=layout.RESTART_SERVICE,
        check_name=layout.CHECK_NAME,
        check_distribution=layout.CHECK_DISTRIBUTION,
        conda_prefix=data.conda_prefix,
    )


def hub_unit(data) -> str:
    return render(
        "jupyterhub.service.j2",
        base_url=data.jupyter_base_url,
        proxy_unit=layout.PROXY_UNIT,
        prefix=layout.PREFIX,
        state_dir=layout.STATE_DIR,
        config_file=layout.CONFIG_FILE,
        proxy_env=layout.PROXY_ENV,
        hub_port=layout.HUB_PORT,
        metadata_addresses=server_unit.METADATA_ADDRESSES,
    )


def proxy_unit(data) -> str:
    return render(
        "jupyterhub-proxy.service.j2",
        proxy_env=layout.PROXY_ENV,
        binary=layout.PROXY_BINARY,
        public_port=data.jupyter_port,
        api_port=layout.PROXY_API_PORT,
        hub_port=layout.HUB_PORT,
        base_url=data.jupyter_base_url,
    )


def slice_limits(people_memory_limit: str | None) -> dict[str, str]:
    values = server_unit.limits_values(people_memory_limit, None)
    # Each server has its own TasksMax; together they leave a fifth of the host's tasks.
    return {**{k: values[k] for k in ("MemoryHigh", "MemoryMax", "MemorySwapMax")}, "TasksMax": "80%"}


def slice_unit(people_memory_limit: str | None) -> str:
    limits = slice_limits(people_memory_limit)
    return render("jupyter-people.slice.j2", limits=limits, tasks_max=limits["TasksMax"])


def slice_set_property(people_memory_limit: str | None) -> StringCommand:
    """The slice file's values applied to the running slice (its servers keep running)."""
    return StringCommand(
        "systemctl",
        "set-property",
        "--runtime",
        layout.SLICE,
        *(QuoteString(f"{k}={v}") for k, v in slice_limits(people_memory_limit).items()),
    )
