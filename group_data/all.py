"""
Your settings for every host of the inventory. Each setting is here as a commented-out
line with its default and meaning: uncomment a line and change the value to set it.
Host data in inventory.py (per host) and `--data name=value` (per run) override these.

The defaults live in operations/settings/registry.py (ad hoc runs, `pyinfra HOST deploy.py`, load
no group_data and get them too); python -m scripts.settings_docs writes this file's comments
from there, so only change values, not the comment lines.
"""

# --- Jupyter server (operations/jupyter/) ---

# Public DNS name or IP of the host; None means the inventory name
# server_name = None

# URL path Jupyter is served under, with leading and trailing '/'
# jupyter_base_url = '/jupyter/'

# Loopback port Jupyter listens on behind Apache
# jupyter_port = 8888

# System user (no login shell) that runs Jupyter and its kernels
# jupyter_user = 'jupyter'

# Directory the notebook server shows and saves into
# notebook_dir = '/srv/jupyter'

# argon2 hash of the login password; None means hash $JUPYTER_PASSWORD locally
# jupyter_password_hash = None

# Whether the web terminal (a shell as jupyter_user) is enabled
# jupyter_terminals = True

# A restart ends every kernel: 'when-idle' waits until no kernel or terminal is busy, 'now' doesn't
# restart_policy = 'when-idle'

# Hours a restart waits for idle at most; then it happens whatever is running
# restart_deadline = 24

# --- Conda distribution (operations/conda.py) ---

# Installer of the conda distribution (Anaconda, Miniforge or Miniconda)
# conda_installer_url = 'https://repo.anaconda.com/archive/Anaconda3-2026.07-1-Linux-x86_64.sh'

# Published sha256 of that installer; checked before it runs
# conda_installer_sha256 = '9f49042048e9a8220c1cddf9192054290724052d3b2a86f938f9f5edd911db8f'

# The current distribution's path: a link into conda_prefix.dists, one directory per installer
# conda_prefix = '/opt/anaconda3'

# How Jupyter gets into the prefix: 'bundled' (Anaconda), 'conda' or 'pip'
# conda_jupyter_install = 'bundled'

# Accept Anaconda's channel Terms of Service for 'conda install' (Anaconda/Miniconda only)
# conda_accept_tos = False

# --- TLS (operations/tls.py, operations/letsencrypt.py) ---

# Where the certificate comes from: 'self-signed' or 'letsencrypt' (certbot, HTTP-01 webroot)
# tls_mode = 'self-signed'

# Contact address of the ACME account ('' registers without one); tls_mode 'letsencrypt' only
# letsencrypt_email = ''

# ACME directory certbot asks for certificates (Let's Encrypt production)
# acme_directory_url = 'https://acme-v02.api.letsencrypt.org/directory'

# Local PEM file with a private ACME server's CA, trusted by the host system-wide; '' for none
# acme_ca_bundle = ''

# --- Apache (operations/apache.py) ---

# Extra lines for the HTTPS vhost (checked by apache2ctl configtest before they go live)
# apache_extra_directives = []

# Seconds Apache waits on either side of a connection, idle websockets too (Jupyter pings within it)
# apache_proxy_timeout = 300

# Largest request body Apache and Jupyter accept (a notebook saved at once; uploads come in 1 MiB chunks)
# max_request_size = '100M'

# Optional second login (Apache Basic auth) for this user, password in $JUPYTER_BASIC_AUTH_PASSWORD; None means off
# basic_auth_user = None

# --- Single sign-on and collaboration (operations/sign_in.py, operations/jupyter/collaboration.py) ---

# How people sign in: 'password' (Jupyter's, one shared password) or 'oidc' (each person at an OpenID Connect provider)
# auth = 'password'

# auth 'oidc': the provider's issuer URL (its /.well-known/openid-configuration is read)
# oidc_issuer = None

# auth 'oidc': the client ID registered at the provider; its secret in $JUPYTER_OIDC_CLIENT_SECRET
# oidc_client_id = None

# auth 'oidc': who is let in: e-mail addresses and 'group:NAME' (a value of the groups claim)
# oidc_allowed = []

# Local PEM file with a private provider's CA, trusted by Apache for it alone; '' for none
# oidc_ca_bundle = ''

# Real-time collaboration (jupyter-collaboration): people in one notebook see each other's edits and names
# collaboration = False

# --- Per-person servers (JupyterHub) (operations/hub/) ---

# Each person gets a server of their own under their own Unix account (JupyterHub); auth: 'oidc' or their own 'password'
# per_person_servers = False

# per_person_servers: addresses of the people who get the hub's admin page and write shared_data_dir
# hub_admins = []

# per_person_servers, auth 'password': each hub_admins address's first password (a hash: argon2/bcrypt)
# hub_admin_password_hashes = {}

# per_person_servers: most memory all people's servers may use together (one systemd slice; memory_limit is each one's)
# people_memory_limit = '90%'

# per_person_servers: seconds after which a person's idle server is stopped (files stay); 0 = never
# cull_idle_servers_after = 3600

# per_person_servers: a directory all read and hub_admins write, linked into each home as 'shared'; None for none
# shared_data_dir = None

# --- System updates and reboots (operations/os_updates.py) ---

# Debian's updates installed daily (unattended-upgrades): 'security', 'all' (stable updates too) or None (yours)
# os_updates = 'security'

# When a host owing a reboot may reboot (host's time, once nothing is busy); None: never, only report
# reboot_window = 'Sun 03:00-05:00'

# Days a reboot waits for idle kernels at most; then it happens in the window whatever runs
# reboot_deadline = 7

# --- Firewall (operations/firewall.py) ---

# Enable ufw: allow SSH, 80 and 443 only
# firewall = True

# --- The researcher's environment (operations/environment.py, operations/jupyter/) ---

# conda specs installed into conda_prefix with 'conda install' on every host (conda_accept_tos applies)
# conda_packages = []

# PEP 508 specs installed into conda_prefix with its own pip on every host
# pip_packages = []

# Local requirements file uploaded to every host and installed with the prefix's pip; '' for none
# pip_requirements = ''

# Most memory Jupyter, its kernels and terminals may use together (systemd MemoryMax; '2G', '80%' or None)
# memory_limit = '80%'

# Most CPU cores Jupyter and its kernels may use together (systemd CPUQuota), e.g. 1.5; None for no limit
# cpu_limit = None

# Seconds after which an idle kernel with no open connection is shut down; 0 = never
# cull_idle_kernels_after = 86400

# --- Login ban (operations/login_ban.py) ---

# Ban an address from 80 and 443 (fail2ban + nftables) after repeated failed logins
# login_ban = True

# Failed logins from one address within login_ban_window that get it banned
# login_ban_max_failures = 5

# Seconds within which login_ban_max_failures failed logins lead to a ban
# login_ban_window = 600

# How long a banned address stays banned (restarts of fail2ban or the host keep it)
# login_ban_seconds = 3600

# Addresses or CIDR networks never banned, e.g. your office or CI runner
# login_ban_ignore = []

# --- Backups, restore, uninstall (operations/backups.py, operations/uninstall.py) ---

# restic repository the notebooks are backed up to (local path, sftp:, rest:, s3:); None means no backups
# backup_repository = None

# When backups run (systemd OnCalendar); None means daily at a night time derived from the host name
# backup_schedule = None

# Snapshots kept by age after each backup (restic forget --keep-*); older ones are pruned
# backup_keep = {'daily': 7, 'weekly': 4, 'monthly': 12}

# Local private key file the host uses for an sftp: repository ('' means root's own SSH setup on the host)
# backup_ssh_key = ''

# restore.py only: the snapshot to restore, 'latest' or an id
# restore_snapshot = 'latest'

# restore.py only: a side directory to restore into; None restores in place (replaced files are moved aside)
# restore_to = None

# restore.py only: the host name of the host this one replaces, its latest snapshot restored; None means this host's own
# restore_from = None

# restore.py only, per_person_servers: the address of the person whose home alone to restore
# restore_person = None

# uninstall.py only: also delete notebook_dir, the Jupyter user and home, the conda prefix and certbot's certificates
# uninstall_purge = False
