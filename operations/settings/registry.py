"""
Every setting of the deploy, by concern: its name, default, one-line meaning and check.

This is the one place a setting is defined. The settings table (docs/settings.md) and
``group_data/all.py`` are written from it (``scripts/settings_docs.py``; a test fails when
either is stale), and every packaged deploy takes its ``data_defaults`` from ``defaults``,
so an ad hoc ``pyinfra HOST deploy.py`` (which loads no group_data) gets the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .addresses import check_networks, check_server_name
from .checks import (
    check_address_or_none,
    check_addresses,
    check_base_url,
    check_basic_auth_user,
    check_bool,
    check_ca_bundle,
    check_calendar,
    check_client_id,
    check_conda_packages,
    check_count,
    check_cpu_limit,
    check_days,
    check_directives,
    check_email,
    check_host_name_or_none,
    check_hours,
    check_https_url,
    check_https_url_or_none,
    check_hub_password_hashes,
    check_keep,
    check_local_file_or_empty,
    check_memory_limit,
    check_oidc_allowed,
    check_password_hash,
    check_pip_packages,
    check_port,
    check_reboot_window,
    check_request_size,
    check_requirements_file,
    check_seconds,
    check_sha256,
    check_snapshot,
    check_url,
    check_user,
    one_of,
)
from .environ import BASIC_AUTH_PASSWORD_ENV, OIDC_CLIENT_SECRET_ENV, PASSWORD_ENV
from .paths import check_abs_path, check_abs_path_or_none, check_backup_repository, check_restore_to, shown_repository

# The current Anaconda Distribution for Linux x86_64 and its published sha256.
ANACONDA_URL = "https://repo.anaconda.com/archive/Anaconda3-2026.07-1-Linux-x86_64.sh"
ANACONDA_SHA256 = "9f49042048e9a8220c1cddf9192054290724052d3b2a86f938f9f5edd911db8f"
# Let's Encrypt's production ACME directory (RFC 8555).
LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    meaning: str
    # Returns None when the value is fine, else what is allowed.
    check: Callable[[Any], str | None]
    # Never echo the value in an error message.
    secret: bool = False
    # How the value is shown in messages (e.g. without a URL's password).
    shown: Callable[[Any], Any] = lambda value: value


@dataclass(frozen=True)
class Group:
    """The settings of one concern, and the modules that use them."""

    title: str
    modules: str
    settings: tuple[Setting, ...]


GROUPS: tuple[Group, ...] = (
    Group(
        "Jupyter server",
        "operations/jupyter/",
        (
            Setting(
                "server_name",
                None,
                "Public DNS name or IP of the host; None means the inventory name",
                check_server_name,
            ),
            Setting(
                "jupyter_base_url",
                "/jupyter/",
                "URL path Jupyter is served under, with leading and trailing '/'",
                check_base_url,
            ),
            Setting("jupyter_port", 8888, "Loopback port Jupyter listens on behind Apache", check_port),
            Setting(
                "jupyter_user", "jupyter", "System user (no login shell) that runs Jupyter and its kernels", check_user
            ),
            Setting(
                "notebook_dir", "/srv/jupyter", "Directory the notebook server shows and saves into", check_abs_path
            ),
            Setting(
                "jupyter_password_hash",
                None,
                f"argon2 hash of the login password; None means hash ${PASSWORD_ENV} locally",
                check_password_hash,
                secret=True,
            ),
            Setting(
                "jupyter_terminals", True, "Whether the web terminal (a shell as jupyter_user) is enabled", check_bool
            ),
            Setting(
                "restart_policy",
                "when-idle",
                "A restart ends every kernel: 'when-idle' waits until no kernel or terminal is busy, 'now' doesn't",
                one_of("when-idle", "now"),
            ),
            Setting(
                "restart_deadline",
                24,
                "Hours a restart waits for idle at most; then it happens whatever is running",
                check_hours(0.01, 720),
            ),
        ),
    ),
    Group(
        "Conda distribution",
        "operations/conda.py",
        (
            Setting(
                "conda_installer_url",
                ANACONDA_URL,
                "Installer of the conda distribution (Anaconda, Miniforge or Miniconda)",
                check_url,
            ),
            Setting(
                "conda_installer_sha256",
                ANACONDA_SHA256,
                "Published sha256 of that installer; checked before it runs",
                check_sha256,
            ),
            Setting(
                "conda_prefix",
                "/opt/anaconda3",
                "The current distribution's path: a link into conda_prefix.dists, one directory per installer",
                check_abs_path,
            ),
            Setting(
                "conda_jupyter_install",
                "bundled",
                "How Jupyter gets into the prefix: 'bundled' (Anaconda), 'conda' or 'pip'",
                one_of("bundled", "conda", "pip"),
            ),
            Setting(
                "conda_accept_tos",
                False,
                "Accept Anaconda's channel Terms of Service for 'conda install' (Anaconda/Miniconda only)",
                check_bool,
            ),
        ),
    ),
    Group(
        "TLS",
        "operations/tls.py, operations/letsencrypt.py",
        (
            Setting(
                "tls_mode",
                "self-signed",
                "Where the certificate comes from: 'self-signed' or 'letsencrypt' (certbot, HTTP-01 webroot)",
                one_of("self-signed", "letsencrypt"),
            ),
            Setting(
                "letsencrypt_email",
                "",
                "Contact address of the ACME account ('' registers without one); tls_mode 'letsencrypt' only",
                check_email,
            ),
            Setting(
                "acme_directory_url",
                LETSENCRYPT_DIRECTORY,
                "ACME directory certbot asks for certificates (Let's Encrypt production)",
                check_https_url,
            ),
            Setting(
                "acme_ca_bundle",
                "",
                "Local PEM file with a private ACME server's CA, trusted by the host system-wide; '' for none",
                check_ca_bundle,
            ),
        ),
    ),
    Group(
        "Apache",
        "operations/apache.py",
        (
            Setting(
                "apache_extra_directives",
                [],
                "Extra lines for the HTTPS vhost (checked by apache2ctl configtest before they go live)",
                check_directives,
            ),
            Setting(
                "apache_proxy_timeout",
                300,
                "Seconds Apache waits on either side of a connection, idle websockets too (Jupyter pings within it)",
                check_seconds(5, 3600),
            ),
            Setting(
                "max_request_size",
                "100M",
                "Largest request body Apache and Jupyter accept (a notebook saved at once; uploads come in 1 "
                "MiB chunks)",
                check_request_size,
            ),
            Setting(
                "basic_auth_user",
                None,
                f"Optional second login (Apache Basic auth) for this user, password in ${BASIC_AUTH_PASSWORD_ENV}; "
                "None means off",
                check_basic_auth_user,
            ),
        ),
    ),
    Group(
        "Single sign-on and collaboration",
        "operations/sign_in.py, operations/jupyter/collaboration.py",
        (
            Setting(
                "auth",
                "password",
                "How people sign in: 'password' (Jupyter's, one shared password) or 'oidc' (each person at an "
                "OpenID Connect provider)",
                one_of("password", "oidc"),
            ),
            Setting(
                "oidc_issuer",
                None,
                "auth 'oidc': the provider's issuer URL (its /.well-known/openid-configuration is read)",
                check_https_url_or_none,
            ),
            Setting(
                "oidc_client_id",
                None,
                f"auth 'oidc': the client ID registered at the provider; its secret in ${OIDC_CLIENT_SECRET_ENV}",
                check_client_id,
            ),
            Setting(
                "oidc_allowed",
                [],
                "auth 'oidc': who is let in: e-mail addresses and 'group:NAME' (a value of the groups claim)",
                check_oidc_allowed,
            ),
            Setting(
                "oidc_ca_bundle",
                "",
                "Local PEM file with a private provider's CA, trusted by Apache for it alone; '' for none",
                check_ca_bundle,
            ),
            Setting(
                "collaboration",
                False,
                "Real-time collaboration (jupyter-collaboration): people in one notebook see each other's edits "
                "and names",
                check_bool,
            ),
        ),
    ),
    Group(
        "Per-person servers (JupyterHub)",
        "operations/hub/",
        (
            Setting(
                "per_person_servers",
                False,
                "Each person gets a server of their own under their own Unix account (JupyterHub); "
                "auth: 'oidc' or their own 'password'",
                check_bool,
            ),
            Setting(
                "hub_admins",
                [],
                "per_person_servers: addresses of the people who get the hub's admin page and write shared_data_dir",
                check_addresses,
            ),
            Setting(
                "hub_admin_password_hashes",
                {},
                "per_person_servers, auth 'password': each hub_admins address's first password (a hash: argon2/bcrypt)",
                check_hub_password_hashes,
                secret=True,
            ),
            Setting(
                "people_memory_limit",
                "90%",
                "per_person_servers: most memory all people's servers may use together (one systemd slice; "
                "memory_limit is each one's)",
                check_memory_limit,
            ),
            Setting(
                "cull_idle_servers_after",
                3600,
                "per_person_servers: seconds after which a person's idle server is stopped (files stay); 0 = never",
                check_seconds(60, 30 * 86400, zero_ok=True),
            ),
            Setting(
                "shared_data_dir",
                None,
                "per_person_servers: a directory all read and hub_admins write, linked into each home as "
                "'shared'; None for none",
                check_abs_path_or_none,
            ),
        ),
    ),
    Group(
        "System updates and reboots",
        "operations/os_updates.py",
        (
            Setting(
                "os_updates",
                "security",
                "Debian's updates installed daily (unattended-upgrades): 'security', 'all' (stable updates too) "
                "or None (yours)",
                one_of("security", "all", None),
            ),
            Setting(
                "reboot_window",
                "Sun 03:00-05:00",
                "When a host owing a reboot may reboot (host's time, once nothing is busy); None: never, only report",
                check_reboot_window,
            ),
            Setting(
                "reboot_deadline",
                7,
                "Days a reboot waits for idle kernels at most; then it happens in the window whatever runs",
                check_days(0.01, 90),
            ),
        ),
    ),
    Group(
        "Firewall",
        "operations/firewall.py",
        (Setting("firewall", True, "Enable ufw: allow SSH, 80 and 443 only", check_bool),),
    ),
    Group(
        "The researcher's environment",
        "operations/environment.py, operations/jupyter/",
        (
            Setting(
                "conda_packages",
                [],
                "conda specs installed into conda_prefix with 'conda install' on every host (conda_accept_tos applies)",
                check_conda_packages,
            ),
            Setting(
                "pip_packages",
                [],
                "PEP 508 specs installed into conda_prefix with its own pip on every host",
                check_pip_packages,
            ),
            Setting(
                "pip_requirements",
                "",
                "Local requirements file uploaded to every host and installed with the prefix's pip; '' for none",
                check_requirements_file,
            ),
            Setting(
                "memory_limit",
                "80%",
                "Most memory Jupyter, its kernels and terminals may use together (systemd MemoryMax; '2G', "
                "'80%' or None)",
                check_memory_limit,
            ),
            Setting(
                "cpu_limit",
                None,
                "Most CPU cores Jupyter and its kernels may use together (systemd CPUQuota), e.g. 1.5; None for "
                "no limit",
                check_cpu_limit,
            ),
            Setting(
                "cull_idle_kernels_after",
                86400,
                "Seconds after which an idle kernel with no open connection is shut down; 0 = never",
                check_seconds(10, 30 * 86400, zero_ok=True),
            ),
        ),
    ),
    Group(
        "Login ban",
        "operations/login_ban.py",
        (
            Setting(
                "login_ban",
                True,
                "Ban an address from 80 and 443 (fail2ban + nftables) after repeated failed logins",
                check_bool,
            ),
            Setting(
                "login_ban_max_failures",
                5,
                "Failed logins from one address within login_ban_window that get it banned",
                check_count(1, 100),
            ),
            Setting(
                "login_ban_window",
                600,
                "Seconds within which login_ban_max_failures failed logins lead to a ban",
                check_seconds(10, 86400),
            ),
            Setting(
                "login_ban_seconds",
                3600,
                "How long a banned address stays banned (restarts of fail2ban or the host keep it)",
                check_seconds(10, 30 * 86400),
            ),
            Setting(
                "login_ban_ignore",
                [],
                "Addresses or CIDR networks never banned, e.g. your office or CI runner",
                check_networks,
            ),
        ),
    ),
    Group(
        "Backups, restore, uninstall",
        "operations/backups.py, operations/uninstall.py",
        (
            Setting(
                "backup_repository",
                None,
                "restic repository the notebooks are backed up to (local path, sftp:, rest:, s3:); None means "
                "no backups",
                check_backup_repository,
                shown=shown_repository,
            ),
            Setting(
                "backup_schedule",
                None,
                "When backups run (systemd OnCalendar); None means daily at a night time derived from the host name",
                check_calendar,
            ),
            Setting(
                "backup_keep",
                {"daily": 7, "weekly": 4, "monthly": 12},
                "Snapshots kept by age after each backup (restic forget --keep-*); older ones are pruned",
                check_keep,
            ),
            Setting(
                "backup_ssh_key",
                "",
                "Local private key file the host uses for an sftp: repository ('' means root's own SSH setup on "
                "the host)",
                check_local_file_or_empty,
            ),
            Setting(
                "restore_snapshot",
                "latest",
                "restore.py only: the snapshot to restore, 'latest' or an id",
                check_snapshot,
            ),
            Setting(
                "restore_to",
                None,
                "restore.py only: a side directory to restore into; None restores in place (replaced files are "
                "moved aside)",
                check_restore_to,
            ),
            Setting(
                "restore_from",
                None,
                "restore.py only: the host name of the host this one replaces, its latest snapshot restored; "
                "None means this host's own",
                check_host_name_or_none,
            ),
            Setting(
                "restore_person",
                None,
                "restore.py only, per_person_servers: the address of the person whose home alone to restore",
                check_address_or_none,
            ),
            Setting(
                "uninstall_purge",
                False,
                "uninstall.py only: also delete notebook_dir, the Jupyter user and home, the conda prefix "
                "and certbot's certificates",
                check_bool,
            ),
        ),
    ),
)

SETTINGS: tuple[Setting, ...] = tuple(setting for group in GROUPS for setting in group.settings)
BY_NAME = {s.name: s for s in SETTINGS}
DEFAULTS = {s.name: s.default for s in SETTINGS}


def defaults(*names: str) -> dict[str, Any]:
    """The defaults of the named settings, for a packaged deploy's ``data_defaults``."""
    return {name: DEFAULTS[name] for name in names}
