"""
Single sign-on (setting ``auth = 'oidc'``): each person signs in as themselves at the
organisation's OpenID Connect provider, through Apache's mod_auth_openidc.

This concern keeps the secrets of that sign-in in ``DIR`` (each file root's alone):

- ``CLIENT_SECRET_CONF``: the client secret, from the control machine's
  ``$JUPYTER_OIDC_CLIENT_SECRET``, uploaded (never on a command line, never diffed) and
  compared by download;
- ``HOST_SECRETS_CONF``: the passphrase that encrypts Apache's session state, and the proxy
  secret Apache adds to every request it passes to Jupyter; made on the host once
  (``files/sign-in-secrets``) and kept across runs, so a rerun ends nobody's session;
- ``PROXY_SECRET``: the same proxy secret, which Jupyter's unit loads as a systemd
  credential (``CREDENTIAL``): Jupyter trusts the person Apache names only on requests that
  carry it;
- ``CA_BUNDLE``: a private provider's CA (``oidc_ca_bundle``), for Apache alone (not the
  system's trust store), readable by its workers.

Apache keeps each person's session in ``CACHE_DIR`` (its workers' alone, each file encrypted
with the passphrase), so a reload of Apache signs nobody out.

The Apache concern includes the two conf files in the vhost (``vhost_values``) and enables
``MODULE``; the Jupyter concern loads ``files/jupyter_sign_in.py`` as its identity provider.
With ``auth = 'password'`` the directory is removed (the vhost that named it is replaced in
the same run; Apache keeps the configuration it loaded until a reload that configtest passed).
"""

from __future__ import annotations

from urllib.parse import quote

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy, operation

from . import layout, passwords, settings, snapshot
from .render import FILES

PACKAGE = "libapache2-mod-auth-openidc"
MODULE = "auth_openidc"
DIR = "/etc/apache2/jupyter-sign-in"
CLIENT_SECRET_CONF = f"{DIR}/client-secret.conf"
HOST_SECRETS_CONF = f"{DIR}/host-secrets.conf"
PROXY_SECRET = f"{DIR}/proxy-secret"
CA_BUNDLE = f"{DIR}/provider-ca.pem"
SECRETS_SCRIPT = f"{layout.LIB}/sign-in-secrets"
# Apache's sessions, one file each, encrypted with the session passphrase (mod_auth_openidc's
# file cache): unlike its default shared memory they outlive a reload or restart of Apache
# (a rerun that changes the vhost, a renewed certificate, an update of Apache itself).
CACHE_DIR = "/var/cache/apache2/jupyter-sign-in"
APACHE_USER = "www-data"
# Jupyter's systemd credential, read by files/jupyter_sign_in.py.
CREDENTIAL = "jupyter-proxy-secret"
# Under jupyter_base_url: mod_auth_openidc's own endpoint (the provider's redirect and logout).
REDIRECT_PATH = "oidc-redirect"
# The headers Apache sets for Jupyter (files/jupyter_sign_in.py reads them).
USER_HEADER = "X-Jupyter-User"
NAME_HEADER = "X-Jupyter-User-Name"
SECRET_HEADER = "X-Jupyter-Proxy-Secret"
# Idle time after which Apache's session ends. The module's default, 5 minutes, would sign out
# someone reading a notebook; this equals the session's longest life (the module's default).
SESSION_IDLE_SECONDS = 8 * 3600
# What Apache reads at a reload from here: a change needs one.
APACHE_READS = [CLIENT_SECRET_CONF, HOST_SECRETS_CONF, CA_BUNDLE]


def enabled(data) -> bool:
    """Apache does the sign-in: auth 'oidc' on the single server. (With per_person_servers
    the hub is the relying party: operations/hub/.)"""
    return data.get("auth", settings.DEFAULTS["auth"]) == "oidc" and not data.get(
        "per_person_servers", settings.DEFAULTS["per_person_servers"]
    )


def packages(data) -> list[str]:
    """What the concern installs (through ``system.install_packages``)."""
    return [PACKAGE] if enabled(data) else []


def redirect_uri(server_name: str, base_url: str) -> str:
    """What the provider must know as this client's redirect URI."""
    return f"https://{server_name}{base_url}{REDIRECT_PATH}"


def logout_url(server_name: str, base_url: str) -> str:
    """Ends the session at Apache, then at the provider, and comes back to the notebook."""
    return f"{base_url}{REDIRECT_PATH}?logout={quote(f'https://{server_name}{base_url}', safe='')}"


def requirements(allowed: list[str]) -> list[str]:
    """``Require`` lines, any of which lets a person in."""
    lines = []
    for entry in allowed:
        if entry.startswith("group:"):
            lines.append(f"Require claim groups:{entry.removeprefix('group:')}")
        else:
            lines.append(f"Require claim email:{entry}")
    return lines


def vhost_values(data, server_name: str) -> dict | None:
    """What the vhost template needs for the sign-in (``None``: password mode)."""
    if not enabled(data):
        return None
    allowed = list(data.get("oidc_allowed"))
    scopes = ["openid", "email", "profile"] + (["groups"] if any(a.startswith("group:") for a in allowed) else [])
    return dict(
        metadata_url=data.get("oidc_issuer").rstrip("/") + "/.well-known/openid-configuration",
        client_id=data.get("oidc_client_id"),
        scope=" ".join(scopes),
        redirect_uri=redirect_uri(server_name, data.get("jupyter_base_url")),
        redirect_path=f"{data.get('jupyter_base_url')}{REDIRECT_PATH}",
        client_secret_conf=CLIENT_SECRET_CONF,
        host_secrets_conf=HOST_SECRETS_CONF,
        cache_dir=CACHE_DIR,
        ca_bundle=CA_BUNDLE if data.get("oidc_ca_bundle") else None,
        requirements=requirements(allowed),
        session_idle_seconds=SESSION_IDLE_SECONDS,
        user_header=USER_HEADER,
        name_header=NAME_HEADER,
    )


def client_secret_conf(secret: str) -> str:
    # Apache's quoted argument: a backslash or quote in the secret is escaped.
    escaped = secret.replace("\\", "\\\\").replace('"', '\\"')
    return f'OIDCClientSecret "{escaped}"\n'


@operation()
def client_secret(secret: str, state: snapshot.Snapshot, path: str = CLIENT_SECRET_CONF, apache_conf: bool = True):
    """
    ``path`` holds the client secret (root, 0600): as Apache's ``OIDCClientSecret`` line
    (``apache_conf``), or as the bare secret (for JupyterHub, with per_person_servers).

    + secret: the client secret, from the control machine's environment
    + state: the concern's snapshot (``path`` among its ``secret_paths``)
    + path: where it is kept; apache_conf: in Apache's syntax

    The file is downloaded into memory and compared; the secret is uploaded, never on a
    command line or in a diff. Always give this operation a ``name=``.
    """
    owner = passwords.stored_owner(path, state)
    wanted = client_secret_conf(secret) if apache_conf else f"{secret}\n"
    current = passwords.stored_content(path) if owner else None
    yield from passwords.store_secret(
        path,
        None if current == wanted else wanted,
        owner,
        "root",
        "600",
        unchanged=f"{path} holds this client secret",
    )


@operation()
def host_secrets(state: snapshot.Snapshot):
    """
    The session passphrase and the proxy secret, made on the host once (``SECRETS_SCRIPT``).

    + state: the concern's snapshot (both files among its ``secret_paths``)
    """
    if all(state.path(path).kind == "file" for path in (HOST_SECRETS_CONF, PROXY_SECRET)):
        host.noop("the session passphrase and the proxy secret are kept")
        return
    yield StringCommand(
        QuoteString(SECRETS_SCRIPT), QuoteString(HOST_SECRETS_CONF), QuoteString(PROXY_SECRET), SECRET_HEADER
    )


def sign_in_snapshot() -> snapshot.Snapshot:
    """The concern's host state in one command."""
    return snapshot.Snapshot(
        paths=[DIR, SECRETS_SCRIPT, CA_BUNDLE, CACHE_DIR],
        secret_paths=[CLIENT_SECRET_CONF, HOST_SECRETS_CONF, PROXY_SECRET],
    )


@deploy("Single sign-on secrets", data_defaults=settings.defaults("auth", "oidc_ca_bundle", "per_person_servers"))
def configure_sign_in():
    """The sign-in's secrets and CA with ``auth = 'oidc'``; none of them otherwise."""
    state = sign_in_snapshot()
    if not enabled(host.data):
        snapshot.absent(name="No single sign-on secrets", path=DIR, state=state)
        snapshot.absent(name="No single sign-on sessions", path=CACHE_DIR, state=state)
        return
    snapshot.directory(
        # Apache's workers (www-data) read the CA at each request to the provider: they may
        # pass through to it; the secrets in it are root's alone (0600).
        name="Single sign-on directory (secrets root only)",
        path=DIR,
        user="root",
        group="root",
        mode="711",
        state=state,
    )
    snapshot.directory(
        # Apache's workers keep the sessions here; nobody else reads them.
        name="Single sign-on sessions directory (Apache's alone)",
        path=CACHE_DIR,
        user=APACHE_USER,
        group=APACHE_USER,
        mode="700",
        state=state,
    )
    snapshot.script(
        name="Script that makes the host's own sign-in secrets",
        dest=SECRETS_SCRIPT,
        src=FILES / "sign-in-secrets",
        state=state,
    )
    host_secrets(name="Session passphrase and proxy secret (made on the host, never shown)", state=state)
    client_secret(
        name="OpenID Connect client secret (never shown)",
        secret=passwords.password_from_environment(settings.OIDC_CLIENT_SECRET_ENV),
        state=state,
    )
    if host.data.oidc_ca_bundle:
        snapshot.put(
            name="The provider's CA (for Apache)",
            src=host.data.oidc_ca_bundle,
            dest=CA_BUNDLE,
            user="root",
            group="root",
            mode="644",
            state=state,
        )
    else:
        snapshot.absent(name="No provider CA", path=CA_BUNDLE, state=state)
