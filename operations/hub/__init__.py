"""
Each person their own server (``per_person_servers``): JupyterHub behind Apache.

Apache (TLS, as for the single server) passes ``jupyter_base_url`` to configurable-http-proxy
(Debian's ``node-configurable-http-proxy``) on ``jupyter_port``; the proxy sends each request
to the hub or to the person's own server. The hub signs people in at the OpenID Connect
provider (``auth = 'oidc'``: OAuthenticator's ``GenericOAuthenticator``, the hub is the
relying party) or with their own password (``auth = 'password'``: NativeAuthenticator, people
sign up and ``hub_admins`` approve them; the admins' first passwords are the deploy's), makes
each person's Unix account at their first sign-in (``operations/people.py`` names it from
their address) and starts their server with ``jupyterhub-systemdspawner``: a transient
systemd unit under their account, from ``conda_prefix``, in the single server's sandbox
(``jupyter.sandbox_properties``), with ``memory_limit``/``cpu_limit`` each, in one slice
capped by ``people_memory_limit``. ``jupyterhub-idle-culler`` stops a server idle for
``cull_idle_servers_after``; a busy kernel reports itself as activity.

- ``layout``: every path and unit; ``config``: what the hub, its units and people's servers
  are given (rendered from ``templates/``);
- here: the concern's host state (``hub_snapshot``) and its packaged deploy, ``install_hub``.

With ``per_person_servers`` off (the default) ``stop_unless_wanted`` stops the hub, its proxy
and every person's server (a host switched back keeps each home, listed in the run's output),
before the single server starts on the port the proxy held; nothing is installed.
"""

from __future__ import annotations

import shlex

from pyinfra import host, logger
from pyinfra.api import StringCommand, deploy, operation

from .. import environment, passwords, people, settings, sign_in, snapshot
from ..jupyter import resource_usage
from ..render import FILES
from . import config, layout, restarts
from .restarts import install_restarts

__all__ = [
    "config",
    "enabled",
    "hub_snapshot",
    "install_hub",
    "install_restarts",
    "layout",
    "packages",
    "restarts",
    "server_packages_command",
    "stop_unless_wanted",
]


def enabled(data) -> bool:
    return bool(data.get("per_person_servers", settings.DEFAULTS["per_person_servers"]))


def packages(data) -> list[str]:
    """What the concern installs (through ``system.install_packages``): a venv for the hub,
    the proxy (it brings Debian's nodejs), git (nbgitpuller's course links)."""
    return ["python3-venv", "node-configurable-http-proxy", "git"] if enabled(data) else []


class PeopleHomes(snapshot.Probe):
    """The homes of the accounts the hub made (their comment says so): ``[(name, home)]``."""

    def command(self):
        return "getent passwd || true"

    def parse(self, lines):
        homes = []
        for line in lines:
            fields = line.split(":")
            if len(fields) >= 7 and fields[4].startswith(people.COMMENT_PREFIX):
                homes.append((fields[0], fields[5]))
        return homes


def hub_snapshot(prefix: str, shared_data_dir: str | None) -> snapshot.Snapshot:
    """The concern's host state: its paths, units, the packages in the hub's environment and
    jupyterhub in ``prefix`` (``conda_prefix``), and the people's accounts."""
    return snapshot.Snapshot(
        paths=[
            *([shared_data_dir] if shared_data_dir else []),
            layout.PREFIX,
            layout.PYTHON,
            layout.CONFIG_DIR,
            layout.CONFIG_FILE,
            layout.PEOPLE_FILE,
            layout.ACCOUNTS_FILE,
            layout.SERVER_DIR,
            layout.SERVER_EXTENSION_FILE,
            layout.SERVER_ACTIVITY_FILE,
            layout.SERVER_CONFIG,
            layout.SERVER_EXTENSIONS_CONFIG,
            layout.SECRETS_DIR,
            layout.SECRETS_SCRIPT,
            layout.CA_BUNDLE,
            layout.STATE_DIR,
            layout.HUB_UNIT_FILE,
            layout.PROXY_UNIT_FILE,
            layout.SLICE_FILE,
            layout.SPAWN_FILE,
            resource_usage.overrides_path(prefix),
        ],
        secret_paths=[
            layout.PROXY_ENV,
            layout.SMOKE_TOKEN,
            layout.RESTART_TOKEN,
            layout.CLIENT_SECRET,
            layout.ADMIN_PASSWORDS,
        ],
        units=[layout.HUB_UNIT, layout.PROXY_UNIT, layout.SLICE],
        probes={
            "installed": environment.FleetPackages(layout.PREFIX),
            "resource_usage": resource_usage.probe(prefix),
            "server_packages": snapshot.Lines(
                " ".join(
                    [
                        "ls -d",
                        *(f"{shlex.quote(prefix)}/lib/python3*/site-packages/{p}" for p in layout.SERVER_REQUIREMENTS),
                    ]
                )
                + " 2>/dev/null || true"
            ),
            "people": PeopleHomes(),
            "admins_group": snapshot.Lines(f"getent group {layout.ADMINS_GROUP} || true"),
            "check_account": snapshot.Lines(f"getent passwd {layout.CHECK_ACCOUNT} || true"),
        },
    )


@operation()
def hub_environment(state: snapshot.Snapshot):
    """
    The hub's own venv (Debian's python3), made once; its packages come next.

    + state: ``hub_snapshot``
    """
    if state.path(layout.PYTHON).kind is not None:
        host.noop(f"{layout.PREFIX} is there")
        return
    yield StringCommand("python3", "-m", "venv", "--clear", shlex.quote(layout.PREFIX))


@operation()
def server_packages_installed(prefix: str, state: snapshot.Snapshot):
    """
    What people's servers need in ``prefix`` (``layout.SERVER_REQUIREMENTS``): each that is
    missing, in one pip run (one already there, of any version, is kept).

    + prefix: ``conda_prefix``
    + state: ``hub_snapshot``
    """
    found = state.probe("server_packages")
    missing = [
        requirement
        for path, requirement in layout.SERVER_REQUIREMENTS.items()
        if not any(line.endswith(f"/site-packages/{path}") for line in found)
    ]
    if not missing:
        host.noop(f"{', '.join(layout.SERVER_REQUIREMENTS.values())}: installed in {prefix}")
        return
    yield server_packages_command(prefix, missing)


def server_packages_command(prefix: str, requirements=None) -> StringCommand:
    """pip's install of what people's servers need into ``prefix`` (a distribution's
    directory; ``requirements``: of ``layout.SERVER_REQUIREMENTS``, all by default): also an
    upgrade's new distribution, before its switch (``conda.carried_over``)."""
    requirements = layout.SERVER_REQUIREMENTS.values() if requirements is None else requirements
    return StringCommand(environment.pip_install(prefix), *(shlex.quote(r) for r in requirements))


@operation()
def admins_group(state: snapshot.Snapshot):
    """
    The group of hub_admins' accounts (they write shared_data_dir).

    + state: ``hub_snapshot``
    """
    if state.probe("admins_group"):
        host.noop(f"group {layout.ADMINS_GROUP} exists")
        return
    yield StringCommand("groupadd", "--system", layout.ADMINS_GROUP)


@operation()
def hub_tokens(tokens: tuple[str, ...], state: snapshot.Snapshot):
    """
    Secrets the hub's units load, made on the host once each (``files/jupyterhub-secrets``, which
    keeps every one that exists): the token the hub and the proxy share, and the API tokens.

    + tokens: which of them this operation sees to (a new one restarts only what loads it)
    + state: ``hub_snapshot``
    """
    if all(state.path(path).kind == "file" for path in tokens):
        host.noop("kept: " + ", ".join(tokens))
        return
    api_tokens = [path for path in tokens if path != layout.PROXY_ENV]
    yield StringCommand(
        shlex.quote(layout.SECRETS_SCRIPT), shlex.quote(layout.PROXY_ENV), *(shlex.quote(p) for p in api_tokens)
    )


@operation()
def check_account(state: snapshot.Snapshot):
    """
    The smoke check's account (``layout.CHECK_ACCOUNT``): its server is the one the smoke check
    starts. Made once, like a person's (home 0700, no login, its own group).

    + state: ``hub_snapshot``
    """
    if state.probe("check_account"):
        host.noop(f"account {layout.CHECK_ACCOUNT} exists")
        return
    home = f"{people.HOMES}/{layout.CHECK_ACCOUNT}"
    yield StringCommand(
        "useradd --create-home --user-group --shell /usr/sbin/nologin",
        "--home-dir",
        shlex.quote(home),
        "--comment",
        shlex.quote(layout.CHECK_COMMENT),
        shlex.quote(layout.CHECK_ACCOUNT),
        "&& chmod 0700",
        shlex.quote(home),
    )


@operation()
def homes_kept(state: snapshot.Snapshot):
    """
    Says, when the hub still runs, that stopping it keeps every person's home, and lists them.

    + state: ``hub_snapshot`` (before the hub is stopped)
    """
    homes = [home for _, home in state.probe("people")]
    if state.unit(layout.HUB_UNIT).active == "active" and homes:
        logger.warning(
            f"{host.name}: per_person_servers is off: the hub and every person's server stop; "
            f"their homes are kept: {', '.join(homes)}"
        )
    host.noop(f"{len(homes)} people's homes are kept" if homes else "no person's home on this host")
    return
    yield


def stopped(state: snapshot.Snapshot) -> None:
    """The hub, the proxy and every person's server stopped and disabled (files and homes kept)."""
    homes_kept(name="People's homes kept", state=state)
    for unit, what in (
        (layout.HUB_UNIT, "JupyterHub"),
        (layout.SLICE, "Every person's server"),
        (layout.PROXY_UNIT, "JupyterHub's proxy"),
    ):
        snapshot.service(
            name=f"{what} stopped (per_person_servers is off)",
            service=unit,
            running=False,
            enabled=False,
            state=state,
        )


def signing_in(data, state: snapshot.Snapshot) -> list:
    """What the hub's sign-in reads (its changes restart the hub): with auth 'oidc', the
    provider's client secret and CA; with 'password', the admins' first passwords."""
    root_file = {"user": "root", "group": "root", "mode": "644", "state": state}
    if data.auth != "oidc":
        return [
            snapshot.absent(name="No OpenID Connect client secret for the hub", path=layout.CLIENT_SECRET, state=state),
            snapshot.absent(name="No provider CA for the hub", path=layout.CA_BUNDLE, state=state),
            passwords.secret_file(
                name="The hub admins' first passwords (hashes, never shown)",
                path=layout.ADMIN_PASSWORDS,
                content=config.admin_passwords(data),
                state=state,
            ),
        ]
    secret = sign_in.client_secret(
        name="OpenID Connect client secret for the hub (never shown)",
        secret=passwords.password_from_environment(settings.OIDC_CLIENT_SECRET_ENV),
        path=layout.CLIENT_SECRET,
        apache_conf=False,
        state=state,
    )
    if data.oidc_ca_bundle:
        ca = snapshot.put(
            name="The provider's CA (for the hub)", src=data.oidc_ca_bundle, dest=layout.CA_BUNDLE, **root_file
        )
    else:
        ca = snapshot.absent(name="No provider CA for the hub", path=layout.CA_BUNDLE, state=state)
    passwords_file = snapshot.absent(name="No hub admins' passwords", path=layout.ADMIN_PASSWORDS, state=state)
    return [secret, ca, passwords_file]


@deploy(
    "Per-person servers stopped (per_person_servers off)",
    data_defaults=settings.defaults("per_person_servers", "conda_prefix", "shared_data_dir"),
)
def stop_unless_wanted():
    """With ``per_person_servers`` off: the hub, its proxy and every person's server stopped
    (homes kept), before the single server starts on the port the proxy held."""
    if enabled(host.data):
        return
    stopped(hub_snapshot(host.data.conda_prefix, None))


@deploy(
    "Per-person servers (JupyterHub)",
    data_defaults=settings.defaults(
        "per_person_servers",
        "server_name",
        "jupyter_base_url",
        "jupyter_port",
        "conda_prefix",
        "memory_limit",
        "cpu_limit",
        "people_memory_limit",
        "cull_idle_servers_after",
        "hub_admins",
        "hub_admin_password_hashes",
        "shared_data_dir",
        "auth",
        "oidc_issuer",
        "oidc_client_id",
        "oidc_allowed",
        "oidc_ca_bundle",
        "apache_proxy_timeout",
        "max_request_size",
        "restart_policy",
        "restart_deadline",
    ),
)
def install_hub():
    """The hub, its proxy and the people's slice, running with their current config
    (``per_person_servers``; with it off, ``stop_unless_wanted`` stopped them)."""
    data = host.data
    if not enabled(data):
        return
    state = hub_snapshot(data.conda_prefix, data.shared_data_dir)
    owed = restarts.owed_snapshot(data.conda_prefix)
    root_file = {"user": "root", "group": "root", "mode": "644", "state": state}
    hub_environment(name="JupyterHub's own environment (a venv)", state=state)
    hub_packages = environment.packages_installed(
        name="JupyterHub, its spawner, sign-in and idle culler in the hub's environment",
        prefix=layout.PREFIX,
        conda=[],
        pip=list(layout.REQUIREMENTS),
        state=state,
    )
    server_packages_installed(
        name="jupyterhub-singleuser and nbgitpuller in the conda prefix", prefix=data.conda_prefix, state=state
    )
    resource_usage.installed(name="Memory display in the conda prefix", prefix=data.conda_prefix, state=state)
    resource_usage.display_on(name="Memory display shown by default", prefix=data.conda_prefix, state=state)
    for path, mode, what in (
        (layout.CONFIG_DIR, "755", "JupyterHub's config directory"),
        (layout.SECRETS_DIR, "700", "JupyterHub's secrets (root only)"),
        (layout.STATE_DIR, "700", "JupyterHub's state (root only)"),
        (layout.SERVER_DIR, "755", "What people's servers load (root's)"),
    ):
        snapshot.directory(name=what, path=path, user="root", group="root", mode=mode, state=state)
    admins_group(name="The group of hub_admins (they write the shared data)", state=state)
    if data.shared_data_dir:
        snapshot.directory(
            name="Shared data (every person reads it, hub_admins write it)",
            path=data.shared_data_dir,
            user="root",
            group=layout.ADMINS_GROUP,
            mode="2775",
            state=state,
        )
    snapshot.script(
        name="Script that makes the hub's tokens",
        dest=layout.SECRETS_SCRIPT,
        src=FILES / "jupyterhub-secrets",
        state=state,
    )
    proxy_token = hub_tokens(
        name="The token the hub and its proxy share (made on the host, never shown)",
        tokens=(layout.PROXY_ENV,),
        state=state,
    )
    api_tokens = hub_tokens(
        name="The smoke check's and the restarts' API tokens (made on the host, never shown)",
        tokens=(layout.SMOKE_TOKEN, layout.RESTART_TOKEN),
        state=state,
    )
    check_account(name="The smoke check's account", state=state)
    sign_in_files = signing_in(data, state)
    modules = [
        snapshot.put(
            name="A person's account name (jupyter_people.py)",
            src=people.__file__,
            dest=layout.PEOPLE_FILE,
            **root_file,
        ),
        snapshot.put(
            name="People's accounts and spawner (jupyterhub_accounts.py)",
            src=FILES / "jupyterhub_accounts.py",
            dest=layout.ACCOUNTS_FILE,
            **root_file,
        ),
    ]
    for src, dest, what in (
        ("jupyter_busy_activity.py", layout.SERVER_EXTENSION_FILE, "A busy server is active (extension)"),
        ("jupyter_activity.py", layout.SERVER_ACTIVITY_FILE, "What counts as busy (jupyter_activity.py)"),
    ):
        snapshot.put(name=what, src=FILES / src, dest=dest, **root_file)
    snapshot.put(
        name="People's servers' settings (websocket pings, body sizes)",
        src=snapshot.text(config.server_config(data)),
        dest=layout.SERVER_CONFIG,
        **root_file,
    )
    snapshot.put(
        name="The extensions people's servers load (busy activity, what the server runs)",
        src=snapshot.text(config.server_extensions()),
        dest=layout.SERVER_EXTENSIONS_CONFIG,
        create_remote_dir=True,
        **root_file,
    )
    spawn = snapshot.put(
        name="What each person's server is started with (sandbox, limits, environment)",
        src=snapshot.text(config.spawn_settings(data)),
        dest=layout.SPAWN_FILE,
        **root_file,
    )
    hub_config = snapshot.put(
        name="JupyterHub's config",
        src=snapshot.text(config.hub_config(data, settings.server_name(host))),
        dest=layout.CONFIG_FILE,
        **root_file,
    )
    system_file = {**root_file, "create_remote_dir": True}
    slice_unit = snapshot.put(
        name="The slice of every person's server (their memory together)",
        src=snapshot.text(config.slice_unit(data.people_memory_limit)),
        dest=layout.SLICE_FILE,
        **system_file,
    )
    proxy_unit = snapshot.put(
        name="JupyterHub's proxy unit",
        src=snapshot.text(config.proxy_unit(data)),
        dest=layout.PROXY_UNIT_FILE,
        **system_file,
    )
    hub_unit = snapshot.put(
        name="JupyterHub's unit", src=snapshot.text(config.hub_unit(data)), dest=layout.HUB_UNIT_FILE, **system_file
    )
    units = snapshot.Changes(slice_unit, proxy_unit, hub_unit)
    snapshot.shell(
        name="New limits of the people's slice apply at once",
        commands=[StringCommand("systemctl", "daemon-reload"), config.slice_set_property(data.people_memory_limit)],
        when=snapshot.Changes(slice_unit),
    )
    snapshot.service(
        name="JupyterHub's proxy running",
        service=layout.PROXY_UNIT,
        daemon_reload=units,
        restarted=snapshot.Changes(proxy_unit, proxy_token),
        state=state,
    )
    snapshot.service(
        name="JupyterHub running with its current config (people's servers keep running)",
        service=layout.HUB_UNIT,
        # Also after the proxy restarted: the hub puts every route back into it at its start.
        restarted=snapshot.Changes(
            hub_packages, hub_config, spawn, hub_unit, proxy_unit, proxy_token, api_tokens, *sign_in_files, *modules
        ),
        state=state,
    )
    # After the hub's restart: it starts each server with what it gives people's servers now.
    restarts.people_restarted(
        name="People's servers restarted with their current settings and packages (each when idle)",
        state=owed,
        policy=data.restart_policy,
        hours=data.restart_deadline,
    )
