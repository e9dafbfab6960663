"""
The deploy's settings: names, defaults, one-line meanings and validation.

This is the one place a setting is defined. ``group_data/all.py`` and the README
settings table repeat the defaults for readers; a test checks they agree with
``SETTINGS``. Every packaged deploy takes its ``data_defaults`` from here, so an
ad hoc ``pyinfra HOST deploy.py`` (which loads no group_data) gets the same values.

``validate(host)`` runs in ``deploy.py`` before any operation is added, so a bad
value stops the whole run during pyinfra's prepare phase: no host is changed.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyinfra.api.exceptions import PyinfraError

PASSWORD_ENV = "JUPYTER_PASSWORD"
BASIC_AUTH_PASSWORD_ENV = "JUPYTER_BASIC_AUTH_PASSWORD"
BACKUP_PASSWORD_ENV = "JUPYTER_BACKUP_PASSWORD"
# An s3: repository's credentials, taken from the control machine's environment.
S3_CREDENTIAL_ENVS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

# The current Anaconda Distribution for Linux x86_64 and its published sha256.
ANACONDA_URL = "https://repo.anaconda.com/archive/Anaconda3-2026.07-1-Linux-x86_64.sh"
ANACONDA_SHA256 = "9f49042048e9a8220c1cddf9192054290724052d3b2a86f938f9f5edd911db8f"
# Let's Encrypt's production ACME directory (RFC 8555).
LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"


class SettingsError(PyinfraError):
    """A host's settings are invalid; the message names the setting, value and what is allowed."""


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


_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_URL_PATH = re.compile(r"/([A-Za-z0-9._~-]+/)*")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ARGON2 = re.compile(r"argon2:\$argon2id?\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_port(value):
    if _is_int(value) and 1 <= value <= 65535:
        return None
    return "an integer from 1 to 65535"


def check_base_url(value):
    if isinstance(value, str) and _URL_PATH.fullmatch(value):
        return None
    return "a URL path that starts and ends with '/', without spaces (e.g. '/jupyter/')"


def is_ip(value) -> bool:
    """An IPv4 or IPv6 address written the one canonical way, with no scope id.

    ``ipaddress`` also takes ``fe80::1%<anything>`` (quotes, newlines...) and
    non-canonical spellings; such a value would land in the vhost and the Jupyter config.
    """
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return "%" not in value and str(address) == value


def is_ipv6(value) -> bool:
    """An IPv6 address in any spelling, without a scope id."""
    try:
        return isinstance(value, str) and "%" not in value and ipaddress.ip_address(value).version == 6
    except ValueError:
        return False


def is_hostname_or_ip(value) -> bool:
    """A DNS name or an IPv4 address: what the vhost can name as it is (IPv6 would need brackets)."""
    if not isinstance(value, str) or not value:
        return False
    if is_ip(value):
        return not is_ipv6(value)
    name = value[:-1] if value.endswith(".") else value
    return len(name) <= 253 and all(_HOSTNAME_LABEL.fullmatch(label) for label in name.split("."))


def _is_dns_name(value) -> bool:
    return is_hostname_or_ip(value) and not is_ip(value) and "." in value.strip(".")


_IPV6_SERVER_NAME = (
    "a DNS hostname or an IPv4 address (or None for the host's inventory name); an IPv6 "
    "address is not supported as server_name: give a DNS name with an AAAA record instead"
)


def check_server_name(value):
    if value is None or is_hostname_or_ip(value):
        return None
    if isinstance(value, str) and is_ipv6(value):
        return _IPV6_SERVER_NAME
    return "a DNS hostname or an IPv4 address in its usual form (or None for the host's inventory name)"


def check_user(value):
    if isinstance(value, str) and _USER_NAME.fullmatch(value) and value != "root":
        return None
    return "a lowercase system user name (not root), e.g. 'jupyter'"


# The deploy chowns notebook_dir to the Jupyter user and makes it writable in the unit
# (ReadWritePaths); the installer writes conda_prefix as root. Neither may be, or be
# inside, a directory the system itself owns. /var holds the Jupyter user's home.
SYSTEM_DIRS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
)
# Top-level directories that hold other things: fine to be under, not to be.
SHARED_TOP_DIRS = ("/home", "/media", "/mnt", "/opt", "/srv")


def check_abs_path(value):
    # It lands in shell commands, the systemd unit and Python config: no quoting surprises.
    if not (isinstance(value, str) and re.fullmatch(r"/[A-Za-z0-9._+/-]*", value)):
        return "an absolute path of letters, digits and . _ + - / (no spaces or quotes)"
    parts = value.rstrip("/").split("/")[1:]
    if value != "/" and (value.endswith("/") or any(part in ("", ".", "..") for part in parts)):
        return "a normalised absolute path: no '.' or '..' parts, no '//', no trailing '/'"
    if value == "/" or value in SHARED_TOP_DIRS or any(value == d or value.startswith(d + "/") for d in SYSTEM_DIRS):
        return (
            f"a directory of its own, not '/', not one of {', '.join(SHARED_TOP_DIRS)} and not in a system "
            f"directory ({', '.join(SYSTEM_DIRS)}), e.g. '/srv/jupyter'"
        )
    if len(parts) == 2 and parts[0] == "home":
        return "a directory of its own, not a person's home directory itself (e.g. '/home/alice/notebooks')"
    return None


def check_password_hash(value):
    if value is None or (isinstance(value, str) and _ARGON2.fullmatch(value)):
        return None
    if isinstance(value, str) and value.startswith("sha1:"):
        return "an 'argon2:' hash; sha1 hashes are too weak, make a new one (see README, 'Passwords')"
    return (
        "an 'argon2:$argon2id$...' hash (this does not look like one: if it is a plaintext "
        f"password, put it in the {PASSWORD_ENV} environment variable instead)"
    )


def check_basic_auth_user(value):
    if value is None or (isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value)):
        return None
    return "None (off) or a user name of letters, digits, '.', '_' or '-'"


def check_directives(value):
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and "\n" not in v for v in value):
        return None
    return "a list of Apache directive lines (strings without newlines)"


def check_url(value):
    if isinstance(value, str) and re.fullmatch(r"https?://[^\s/]+/\S*", value):
        return None
    return "an http:// or https:// URL"


def check_sha256(value):
    if isinstance(value, str) and _HEX64.fullmatch(value):
        return None
    return "64 hexadecimal characters (the installer's published sha256)"


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def check_email(value):
    if value == "" or (isinstance(value, str) and _EMAIL.fullmatch(value)):
        return None
    return "an e-mail address, or '' to register the ACME account without one"


def check_https_url(value):
    if isinstance(value, str) and re.fullmatch(r"https://[^\s/'\"]+/[^\s'\"]*", value):
        return None
    return "an https:// URL (an ACME directory, e.g. Let's Encrypt's)"


def check_ca_bundle(value):
    # Read on the control machine, before any host is touched: a typo in the path
    # fails here rather than as a TLS error from certbot on every host.
    if value == "":
        return None
    try:
        text = open(value, encoding="ascii").read() if isinstance(value, str) else ""
    except (OSError, UnicodeDecodeError):
        text = ""
    if "-----BEGIN CERTIFICATE-----" in text and "PRIVATE KEY" not in text:
        return None
    return "'' or the path of a readable local PEM file of CA certificates (no private keys)"


# A conda match spec without spaces: [channel::]name[version/build constraints].
_CONDA_SPEC = re.compile(r"([A-Za-z0-9_.-]+::)?[A-Za-z0-9_][A-Za-z0-9_.-]*([=<>!~][A-Za-z0-9_.*=<>!~,+-]*)?")
# A PEP 508 requirement written without spaces: name, extras, version specifiers, no URL
# (``name @ url``), no environment markers (``;``), nothing the shell or pip reads specially.
_PIP_SPEC = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._,-]+\])?((===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!-]+(,(===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!-]+)*)?"
)
_SIZE = re.compile(r"[1-9][0-9]*[KMGT]")
_PERCENT = re.compile(r"([1-9][0-9]?)%")


def _spec_list(pattern, example):
    def check(value):
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) and pattern.fullmatch(v) for v in value):
            if len(set(value)) == len(value):
                return None
            return "a list without repeated entries"
        bad = (
            [v for v in value if not (isinstance(v, str) and pattern.fullmatch(v))]
            if isinstance(value, (list, tuple))
            else []
        )
        what = f" ({bad[0]!r} is not one)" if bad else ""
        return f"a list of {example}{what}"

    return check


check_conda_packages = _spec_list(
    _CONDA_SPEC,
    "conda package specs without spaces, e.g. ['numpy', 'scipy>=1.11', 'conda-forge::xarray']",
)
check_pip_packages = _spec_list(
    _PIP_SPEC,
    "PEP 508 names with optional [extras] and versions, no spaces, URLs or markers, e.g. ['requests>=2.31']",
)


def check_requirements_file(value):
    # Read on the control machine, before any host is touched, and checked line by line
    # with the same rule as pip_packages: no options (-e, --index-url, -r), no URLs.
    if value == "":
        return None
    what = "'' or the path of a readable local requirements file of PEP 508 specs (one per line, no options or URLs)"
    try:
        lines = open(value, encoding="utf-8").read().splitlines() if isinstance(value, str) else None
    except (OSError, UnicodeDecodeError):
        lines = None
    if lines is None:
        return what
    for number, line in enumerate(lines, start=1):
        spec = line.split("#", 1)[0].strip()
        if spec and not _PIP_SPEC.fullmatch(spec):
            return f"{what}; line {number} is {spec!r}"
    return None


def check_memory_limit(value):
    if value is None:
        return None
    if isinstance(value, str):
        percent = _PERCENT.fullmatch(value)
        if percent and 10 <= int(percent.group(1)) <= 95:
            return None
        if _SIZE.fullmatch(value) and size_bytes(value) >= 256 * 2**20:
            return None
    return (
        "None (no limit), a size of at least 256M (e.g. '2G', '1536M') "
        "or a percentage of the host's RAM from 10% to 95% (e.g. '80%')"
    )


def check_request_size(value):
    if isinstance(value, str) and _SIZE.fullmatch(value) and 2 * 2**20 <= size_bytes(value) <= 2**30:
        return None
    return "a size from 2M to 1G, e.g. '100M' (the largest notebook saved in one request)"


def size_bytes(size: str) -> int:
    """``'2G'`` -> bytes (K, M, G, T are powers of 1024, as systemd reads them)."""
    return int(size[:-1]) * 1024 ** ("KMGT".index(size[-1]) + 1)


def check_cpu_limit(value):
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.1 <= value <= 1024):
        return None
    return "None (no limit) or a number of CPU cores from 0.1, e.g. 1.5"


def check_seconds(minimum, maximum, zero_ok=False):
    def check(value):
        if _is_int(value) and (minimum <= value <= maximum or (zero_ok and value == 0)):
            return None
        return f"{'0 (never) or ' if zero_ok else ''}a whole number of seconds from {minimum} to {maximum}"

    return check


def _one_of(*allowed):
    def check(value):
        if value in allowed:
            return None
        return "one of " + ", ".join(repr(a) for a in allowed)

    return check


def check_count(minimum, maximum):
    def check(value):
        if _is_int(value) and minimum <= value <= maximum:
            return None
        return f"a whole number from {minimum} to {maximum}"

    return check


def is_network(value) -> bool:
    """An address or a CIDR network written the canonical way (``203.0.113.0/24``, ``2001:db8::/32``),
    with no host bits set: what fail2ban's ``ignoreip`` takes, and nothing else."""
    if not isinstance(value, str) or "%" in value:
        return False
    if is_ip(value):
        return True
    try:
        return str(ipaddress.ip_network(value, strict=True)) == value
    except ValueError:
        return False


def check_networks(value):
    if isinstance(value, (list, tuple)) and all(is_network(v) for v in value):
        return None
    bad = [v for v in value if not is_network(v)] if isinstance(value, (list, tuple)) else []
    what = f" ({bad[0]!r} is not one)" if bad else ""
    return f"a list of IP addresses or CIDR networks in canonical form, e.g. ['203.0.113.7', '198.51.100.0/24']{what}"


# restic repositories this deploy sets up: a local path, sftp:user@host:/path,
# rest:http(s)://..., s3:... (restic's own spellings). No whitespace, quotes or backslashes:
# the value lands in a root-only shell file and on restic's command line through it.
_SFTP_REPOSITORY = re.compile(r"sftp:([a-z_][a-z0-9_.-]{0,31})@([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(/[^\s'\"\\]*)")
_OTHER_REPOSITORY = re.compile(r"(rest:https?://|s3:)[^\s'\"\\]+")
# A URL's user information (``user:password@``): never shown, never sent in clear.
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
# Where Debian keeps backups, and state directories: a local repository may be a directory of
# its own there (``/var/backups/NAME``, ``/var/lib/NAME``), not one the deploy itself uses.
LOCAL_REPOSITORY_PARENTS = ("/var/backups", "/var/lib")


def shown_repository(value):
    """A repository as it may be printed: ``rest:https://***@host/path`` (the password never)."""
    return _USERINFO.sub("***@", value) if isinstance(value, str) else value


def _check_local_repository(value: str) -> str | None:
    parent = next((p for p in LOCAL_REPOSITORY_PARENTS if value.startswith(p + "/")), None)
    if parent is None:
        problem = check_abs_path(value)
        return problem and f"for a local repository, {problem}, or a directory of its own in /var/backups or /var/lib"
    if check_abs_path("/srv" + value[len(parent) :]):
        return "for a local repository, a normalised path of letters, digits and . _ + - / (no spaces or quotes)"
    if value.split("/")[3] in ("jupyter-backup", "jupyter-apache-deploy"):
        return f"for a local repository, a directory of its own, not one this deploy keeps its state in ({value})"
    return None


def check_backup_repository(value):
    if value is None or _SFTP_REPOSITORY.fullmatch(value or ""):
        return None
    if isinstance(value, str) and _OTHER_REPOSITORY.fullmatch(value):
        if value.startswith("rest:http://") and _USERINFO.search(value):
            return "a rest: repository with credentials over https:// (over http:// they would travel in clear)"
        return None
    if isinstance(value, str) and value.startswith("/"):
        return _check_local_repository(value)
    return (
        "None (no backups) or a restic repository: a local path ('/srv/backups/jupyter', '/var/backups/jupyter'), "
        "'sftp:user@host:/path', 'rest:https://host/path' or 's3:host/bucket/path'"
    )


def sftp_parts(repository: str) -> tuple[str, str, str] | None:
    """``sftp:user@host:/path`` -> (user, host, path); None for other repositories."""
    match = _SFTP_REPOSITORY.fullmatch(repository or "")
    return match.groups() if match else None


# systemd OnCalendar expressions: 'daily', 'Mon..Fri 02:00', '*-*-* 03:30:00', ...
# (the host's systemd-analyze checks the expression itself before the timer is written).
_CALENDAR = re.compile(r"[A-Za-z0-9*:,./~ +-]{1,100}")


def check_calendar(value):
    if value is None or (isinstance(value, str) and _CALENDAR.fullmatch(value) and value.strip() == value):
        return None
    return (
        "None (daily, at a time of night derived from the host name) or a systemd OnCalendar "
        "expression, e.g. 'daily', '*-*-* 02:30:00', 'Mon..Fri 22:00'"
    )


KEEP_KINDS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def check_keep(value):
    if (
        isinstance(value, dict)
        and value
        and all(k in KEEP_KINDS for k in value)
        and all(_is_int(n) and 0 <= n <= 10000 for n in value.values())
        and any(value.values())
    ):
        return None
    return (
        f"a dict of snapshot counts to keep by {', '.join(KEEP_KINDS)} (at least one above 0), "
        "e.g. {'daily': 7, 'weekly': 4, 'monthly': 12}"
    )


def check_local_file_or_empty(value):
    if value == "" or (isinstance(value, str) and os.path.isfile(value) and os.access(value, os.R_OK)):
        return None
    return "'' or the path of a readable file on the control machine"


def check_snapshot(value):
    if value == "latest" or (isinstance(value, str) and re.fullmatch(r"[0-9a-f]{8,64}", value)):
        return None
    return "'latest' or a restic snapshot id (8 to 64 hex digits, as 'restic snapshots' shows it)"


def check_restore_to(value):
    if value is None:
        return None
    problem = check_abs_path(value)
    return problem and f"None (restore in place) or an empty or new directory: {problem}"


def check_bool(value):
    if isinstance(value, bool):
        return None
    return "true or false"


SETTINGS: tuple[Setting, ...] = (
    Setting("server_name", None, "Public DNS name or IP of the host; None means the inventory name", check_server_name),
    Setting(
        "jupyter_base_url",
        "/jupyter/",
        "URL path Jupyter is served under, with leading and trailing '/'",
        check_base_url,
    ),
    Setting("jupyter_port", 8888, "Loopback port Jupyter listens on behind Apache", check_port),
    Setting("jupyter_user", "jupyter", "System user (no login shell) that runs Jupyter and its kernels", check_user),
    Setting("notebook_dir", "/srv/jupyter", "Directory the notebook server shows and saves into", check_abs_path),
    Setting(
        "jupyter_password_hash",
        None,
        f"argon2 hash of the login password; None means hash ${PASSWORD_ENV} locally",
        check_password_hash,
        secret=True,
    ),
    Setting("jupyter_terminals", True, "Whether the web terminal (a shell as jupyter_user) is enabled", check_bool),
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
    Setting("conda_prefix", "/opt/anaconda3", "Where the distribution is installed", check_abs_path),
    Setting(
        "conda_jupyter_install",
        "bundled",
        "How Jupyter gets into the prefix: 'bundled' (Anaconda), 'conda' or 'pip'",
        _one_of("bundled", "conda", "pip"),
    ),
    Setting(
        "conda_accept_tos",
        False,
        "Accept Anaconda's channel Terms of Service for 'conda install' (Anaconda/Miniconda only)",
        check_bool,
    ),
    Setting(
        "tls_mode",
        "self-signed",
        "Where the certificate comes from: 'self-signed' or 'letsencrypt' (certbot, HTTP-01 webroot)",
        _one_of("self-signed", "letsencrypt"),
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
    Setting("firewall", True, "Enable ufw: allow SSH, 80 and 443 only", check_bool),
    Setting(
        "apache_extra_directives",
        [],
        "Extra lines for the HTTPS vhost (checked by apache2ctl configtest before they go live)",
        check_directives,
    ),
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
        "Most memory Jupyter, its kernels and terminals may use together (systemd MemoryMax; '2G', '80%' or None)",
        check_memory_limit,
    ),
    Setting(
        "cpu_limit",
        None,
        "Most CPU cores Jupyter and its kernels may use together (systemd CPUQuota), e.g. 1.5; None for no limit",
        check_cpu_limit,
    ),
    Setting(
        "cull_idle_kernels_after",
        86400,
        "Seconds after which an idle kernel with no open connection is shut down; 0 = never",
        check_seconds(10, 30 * 86400, zero_ok=True),
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
        "Largest request body Apache and Jupyter accept (a notebook saved at once; uploads come in 1 MiB chunks)",
        check_request_size,
    ),
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
        "login_ban_ignore", [], "Addresses or CIDR networks never banned, e.g. your office or CI runner", check_networks
    ),
    Setting(
        "backup_repository",
        None,
        "restic repository the notebooks are backed up to (local path, sftp:, rest:, s3:); None means no backups",
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
        "Local private key file the host uses for an sftp: repository ('' means root's own SSH setup on the host)",
        check_local_file_or_empty,
    ),
    Setting(
        "restore_snapshot", "latest", "restore.py only: the snapshot to restore, 'latest' or an id", check_snapshot
    ),
    Setting(
        "restore_to",
        None,
        "restore.py only: a side directory to restore into; None restores in place (replaced files are moved aside)",
        check_restore_to,
    ),
    Setting(
        "uninstall_purge",
        False,
        "uninstall.py only: also delete notebook_dir, the Jupyter user and home, the conda prefix "
        "and certbot's certificates",
        check_bool,
    ),
    Setting(
        "basic_auth_user",
        None,
        f"Optional second login (Apache Basic auth) for this user, password in ${BASIC_AUTH_PASSWORD_ENV}; "
        "None means off",
        check_basic_auth_user,
    ),
)

BY_NAME = {s.name: s for s in SETTINGS}
DEFAULTS = {s.name: s.default for s in SETTINGS}


def defaults(*names: str) -> dict[str, Any]:
    """The defaults of the named settings, for a packaged deploy's ``data_defaults``."""
    return {name: DEFAULTS[name] for name in names}


def _errors_for(values: dict[str, Any]) -> list[str]:
    errors = []
    for setting in SETTINGS:
        value = values.get(setting.name, setting.default)
        allowed = setting.check(value)
        if allowed:
            shown = "(value hidden)" if setting.secret else repr(setting.shown(value))
            errors.append(f"setting {setting.name} = {shown} is not allowed: must be {allowed}")
    return errors


@functools.cache
def pyinfra_data_names() -> frozenset[str]:
    """Host data pyinfra itself reads: every connector's settings (``ssh_user``, ...)."""
    from pyinfra.api.connectors import get_all_connectors

    return frozenset(
        name for connector in get_all_connectors().values() for name in getattr(connector, "data_meta", {})
    )


def unknown_names(keys) -> list[str]:
    """Names that are neither a setting nor pyinfra's own data (``_`` names are its global arguments)."""
    own = pyinfra_data_names()
    return sorted(k for k in keys if k not in BY_NAME and k not in own and not k.startswith("_"))


def _close_match(key: str) -> str | None:
    """The setting a near-typo ``key`` most likely meant, if any."""
    match = difflib.get_close_matches(key, BY_NAME, n=1, cutoff=0.8)
    return match[0] if match else None


def _typo_errors(keys) -> list[str]:
    return [
        f"unknown setting {key!r}: did you mean {_close_match(key)!r}?"
        for key in unknown_names(keys)
        if _close_match(key)
    ]


def _unknown_errors(command_line_keys) -> list[str]:
    # --data is typed for this run: a name this version does not know is a mistake
    # (e.g. a setting of a newer version), never something to ignore silently.
    return [
        f"unknown setting {key!r} given with --data: this version has no such setting (see the README's settings table)"
        for key in unknown_names(command_line_keys)
        if not _close_match(key)
    ]


_warned: set[str] = set()


def _warn_unknown(keys) -> None:
    # Inventory and group data may hold the user's own values (helpers, other tools'
    # settings): a warning, once per name and run, not an error.
    from pyinfra import logger

    for key in unknown_names(keys):
        if key not in _warned and not _close_match(key):
            _warned.add(key)
            logger.warning(
                f"host data {key!r} is not a setting of this deploy and is ignored (see the README's settings table)"
            )


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def check_values(values: dict[str, Any], environ=None, secrets: bool = True) -> list[str]:
    """Every problem with one host's data, as one line each (empty when all is well).

    ``secrets=False``: leave out the passwords and keys the control machine's environment
    must give for a deploy (restore.py and uninstall.py use what the host already has)."""
    environ = os.environ if environ is None else environ
    errors = _typo_errors(values.keys()) + _errors_for(values)
    user = values.get("basic_auth_user")
    if secrets and user and not check_basic_auth_user(user) and not environ.get(BASIC_AUTH_PASSWORD_ENV):
        errors.append(
            f"setting basic_auth_user = {user!r} needs a password: "
            f"export {BASIC_AUTH_PASSWORD_ENV} on the control machine (or set basic_auth_user to None)",
        )
    notebook_dir = values.get("notebook_dir", DEFAULTS["notebook_dir"])
    prefix = values.get("conda_prefix", DEFAULTS["conda_prefix"])
    if not check_abs_path(notebook_dir) and not check_abs_path(prefix) and _overlap(notebook_dir, prefix):
        # The notebook directory is writable by notebook code; the prefix holds what the
        # server imports.
        errors.append(
            f"setting notebook_dir = {notebook_dir!r} is not allowed: must not be conda_prefix ({prefix!r}), "
            "inside it, or contain it",
        )
    home = f"/var/lib/{values.get('jupyter_user', DEFAULTS['jupyter_user'])}"
    repository = values.get("backup_repository")
    shown = shown_repository(repository)
    if repository and not check_backup_repository(repository):
        if secrets and not environ.get(BACKUP_PASSWORD_ENV):
            errors.append(
                f"setting backup_repository = {shown!r} needs a password: export {BACKUP_PASSWORD_ENV} "
                "on the control machine (the repository's key; keep it somewhere safe, the backups are "
                "unreadable without it)"
            )
        if secrets and repository.startswith("s3:") and not all(environ.get(name) for name in S3_CREDENTIAL_ENVS):
            errors.append(
                f"setting backup_repository = {shown!r} needs {' and '.join(S3_CREDENTIAL_ENVS)} "
                "exported on the control machine"
            )
        if (
            repository.startswith("/")
            and not check_abs_path(notebook_dir)
            and (_overlap(repository, notebook_dir) or _overlap(repository, home))
        ):
            errors.append(
                f"setting backup_repository = {shown!r} is not allowed: must not be inside or contain "
                f"what it backs up (notebook_dir {notebook_dir!r}, the Jupyter home {home!r})"
            )
    restore_to = values.get("restore_to")
    if restore_to and not check_restore_to(restore_to) and not check_abs_path(notebook_dir):
        # The notebook user can change anything there while root restores into it.
        if _overlap(restore_to, notebook_dir) or _overlap(restore_to, home):
            errors.append(
                f"setting restore_to = {restore_to!r} is not allowed: must not be inside or contain notebook_dir "
                f"({notebook_dir!r}) or the Jupyter home ({home!r}), which the notebook user can write: restore "
                "in place (restore_to = None, done as the notebook user) or into a directory of its own"
            )
    if secrets and values.get("jupyter_password_hash") is None and not environ.get(PASSWORD_ENV):
        errors.append(
            f"setting jupyter_password_hash is not set and {PASSWORD_ENV} is empty: "
            f"give an argon2 hash or export {PASSWORD_ENV} on the control machine",
        )
    return errors


def validate(host, secrets: bool = True) -> None:
    """Raise ``SettingsError`` naming the host and every bad setting (``secrets``: as in ``check_values``)."""
    values = host.data.dict()
    inventory = getattr(host, "inventory", None)
    command_line = set(inventory.get_override_data()) if inventory is not None else set()
    errors = _unknown_errors(command_line) + check_values(values, secrets=secrets)
    _warn_unknown(set(values) - command_line)
    if values.get("server_name") is None and not is_hostname_or_ip(host.name):
        errors.append(
            f"setting server_name is not set and the inventory name {host.name!r} is not a "
            "hostname or IPv4 address: set server_name to the host's public DNS name",
        )
    if values.get("tls_mode") == "letsencrypt" and not _is_dns_name(server_name(host)):
        errors.append(
            f"setting tls_mode = 'letsencrypt' needs a DNS name, not {server_name(host)!r}: "
            "set server_name to the public name that points at this host",
        )
    if errors:
        raise SettingsError(f"{host.name}: " + "; ".join(errors))


def server_name(host) -> str:
    return host.data.get("server_name") or host.name
