"""
Where the per-person mode's files and units are on a host (``per_person_servers``): the hub,
its proxy, the slice every person's server runs in, defined once.

Laid out as The Littlest JupyterHub does it: the hub in a root-owned environment of its own
(apart from ``conda_prefix``, which people's servers run from and upgrades switch), its
config root-owned in ``/etc``, its state (database, cookie secret) root's alone in ``/var/lib``.
"""

from __future__ import annotations

from .. import layout

# The hub's own Python environment (a venv of Debian's python3), root-owned.
PREFIX = "/opt/jupyterhub"
PYTHON = f"{PREFIX}/bin/python"
# What the deploy installed into it (operations/environment.py's record, same format).
REQUIREMENTS = (
    "jupyterhub>=6,<7",
    "jupyterhub-systemdspawner>=1,<2",
    "oauthenticator>=17,<18",
    "jupyterhub-idle-culler>=2,<3",
    # auth 'password': people sign up and sign in with their own password; argon2-cffi checks
    # an admin's first password given as an argon2 hash (NativeAuthenticator checks bcrypt).
    "jupyterhub-nativeauthenticator>=1.3,<2",
    "argon2-cffi>=23.1",
)
# What people's servers need in conda_prefix, by the directory each installs in site-packages:
# jupyterhub-singleuser (the spawner starts it), the hub's major release; nbgitpuller, so an
# instructor's link pulls a course's repository into each person's home (with Debian's git).
SERVER_REQUIREMENTS = {
    "jupyterhub/singleuser": "jupyterhub>=6,<7",
    "nbgitpuller": "nbgitpuller==1.3.0",
}

# A person's server's unit and account: jupyter-<hub name> (operations/people.py).
SERVER_UNIT_TEMPLATE = "jupyter-{USERNAME}"
ACCOUNT_TEMPLATE = "jupyter-{USERNAME}"

# Its configuration (root's; the modules it imports live beside it).
CONFIG_DIR = "/etc/jupyterhub"
CONFIG_FILE = f"{CONFIG_DIR}/jupyterhub_config.py"
# operations/people.py, uploaded as it is: a person's account name from their address.
PEOPLE_MODULE = "jupyter_people"
PEOPLE_FILE = f"{CONFIG_DIR}/{PEOPLE_MODULE}.py"
# files/jupyterhub_accounts.py: accounts made at sign-in, the spawner that checks its server.
ACCOUNTS_MODULE = "jupyterhub_accounts"
ACCOUNTS_FILE = f"{CONFIG_DIR}/{ACCOUNTS_MODULE}.py"
# What people's servers load from the root's side (on their PYTHONPATH and
# JUPYTER_CONFIG_PATH): the extension that reports a busy kernel as activity, and the
# single server's own counting of what is busy that it uses.
SERVER_DIR = f"{CONFIG_DIR}/server"
SERVER_EXTENSION_MODULE = "jupyter_busy_activity"
SERVER_EXTENSION_FILE = f"{SERVER_DIR}/{SERVER_EXTENSION_MODULE}.py"
SERVER_ACTIVITY_MODULE = "jupyter_activity"
SERVER_ACTIVITY_FILE = f"{SERVER_DIR}/{SERVER_ACTIVITY_MODULE}.py"
# Their server's settings from the deploy (websocket pings, body sizes); a person's own
# ~/.jupyter config comes first, for their server alone.
SERVER_CONFIG = f"{SERVER_DIR}/jupyter_server_config.json"
# The deploy's extensions turned on as every extension turns itself on (a file of its own in
# jupyter_server_config.d, merged with the others'): in SERVER_CONFIG, an older jupyter_server
# (2.14) lets it replace jupyterhub-singleuser's own, and no person's server starts.
SERVER_EXTENSIONS_CONFIG = f"{SERVER_DIR}/jupyter_server_config.d/jupyter-apache-deploy.json"
# Root's alone (0700): the secrets the units load.
SECRETS_DIR = f"{CONFIG_DIR}/secrets"
# CONFIGPROXY_AUTH_TOKEN=..., for the hub and the proxy (made on the host once).
PROXY_ENV = f"{SECRETS_DIR}/proxy.env"
# The OpenID Connect client secret (from the control machine), and the provider's CA.
CLIENT_SECRET = f"{SECRETS_DIR}/oidc-client-secret"
CA_BUNDLE = f"{CONFIG_DIR}/provider-ca.pem"
# auth 'password': hub_admin_password_hashes (address -> hash), from the control machine.
ADMIN_PASSWORDS = f"{SECRETS_DIR}/admin-passwords.json"
# The smoke check's API token (root's alone, made on the host): the hub loads it as the
# token of a service that may start, use and stop the check account's server, nobody else's.
SMOKE_TOKEN = f"{SECRETS_DIR}/smoke-token"
SMOKE_SERVICE = "jupyter-deploy-smoke"
# The check account: its hub name (a person's always ends in 8 hex digits: never this one)
# and its Unix account, made by the deploy (home 0700, no login).
CHECK_NAME = "smoke-check"
CHECK_ACCOUNT = ACCOUNT_TEMPLATE.format(USERNAME=CHECK_NAME)
CHECK_COMMENT = "Jupyter smoke check (jupyter-apache-deploy)"
SECRETS_SCRIPT = f"{layout.LIB}/jupyterhub-secrets"

# The hub's state: its database and cookie secret.
STATE_DIR = "/var/lib/jupyterhub"
DATABASE = f"{STATE_DIR}/jupyterhub.sqlite"
COOKIE_SECRET = f"{STATE_DIR}/jupyterhub_cookie_secret"
# auth 'password': which of ADMIN_PASSWORDS the hub has set (a digest per admin), so that a
# password an admin changed since is kept until the deploy is given another one.
ADMIN_PASSWORDS_SET = f"{STATE_DIR}/admin-passwords-set.json"
# A consistent copy of the database (SQLite's own backup), made before each backup: the
# backup holds it, never the live file a running hub may be writing.
DATABASE_COPY_DIR = f"{STATE_DIR}/backup"
DATABASE_COPY = f"{DATABASE_COPY_DIR}/jupyterhub.sqlite"
# An upgrade's check (files/conda-switch): while this root's file names a distribution, the
# hub starts the check account's server from it instead of conda_prefix, as it would start
# anyone's; nobody else's server reads it.
CHECK_DISTRIBUTION = f"{STATE_DIR}/check-distribution"

# The units: the hub, the proxy (its own unit, so a restart of the hub drops no connection)
# and the slice every person's server runs in (one cap for all of them together).
HUB_UNIT = "jupyterhub.service"
HUB_UNIT_FILE = f"{layout.SYSTEMD_DIR}/{HUB_UNIT}"
PROXY_UNIT = "jupyterhub-proxy.service"
PROXY_UNIT_FILE = f"{layout.SYSTEMD_DIR}/{PROXY_UNIT}"
PROXY_BINARY = "/usr/bin/configurable-http-proxy"
SLICE = "jupyter-people.slice"
SLICE_FILE = f"{layout.SYSTEMD_DIR}/{SLICE}"

# hub_admins' accounts are in this group: it may write shared_data_dir (root:GROUP, 2775).
ADMINS_GROUP = "jupyter-hub-admins"
# What the shared data directory is called in each home (a link).
SHARED_LINK = "shared"

HUB_PORT = layout.HUB_PORT
PROXY_API_PORT = layout.PROXY_API_PORT
LOGIN_PATH = layout.HUB_LOGIN_PATH

# How long a person's server may take to start (the hub's start_timeout; a restart waits as long).
START_SECONDS = 120
# What each person's server is started with (its systemd properties, environment, command):
# the hub reads it at its start; a server started before it changed owes a restart.
SPAWN_FILE = f"{CONFIG_DIR}/spawn.json"
# Restarts of people's servers (restart_policy): the single server's restart script decides
# for each person's server on its own (operations/jupyter/restarts.py), with its own owed
# record and timer; the hub stops and starts it (RESTART_SERVER_SCRIPT, with a token of a
# service that may do only that).
RESTART_PEOPLE_SCRIPT = f"{layout.LIB}/jupyterhub-restart-people"
RESTART_SERVER_SCRIPT = f"{layout.LIB}/jupyterhub-restart-server"
RESTART_TOKEN = f"{SECRETS_DIR}/restart-token"
RESTART_SERVICE = "jupyter-deploy-restarts"
RESTART_UNIT_PREFIX = "jupyterhub-restart@"
RESTART_SERVICE_FILE = f"{layout.SYSTEMD_DIR}/{RESTART_UNIT_PREFIX}.service"
RESTART_TIMER_FILE = f"{layout.SYSTEMD_DIR}/{RESTART_UNIT_PREFIX}.timer"
OWED_DIR = f"{STATE_DIR}/restarts-owed"
RESTART_REPORT = f"{STATE_DIR}/restart-report"
# The server unit of a person (or the check account): jupyter-NAME.service.
SERVER_UNIT_PREFIX = SERVER_UNIT_TEMPLATE.removesuffix("{USERNAME}")


def server_unit(hub_name: str) -> str:
    """The systemd unit of the server of the person the hub calls ``hub_name``."""
    return SERVER_UNIT_TEMPLATE.format(USERNAME=hub_name) + ".service"
