"""
Apache as the TLS-terminating reverse proxy in front of Jupyter.

Every change to Apache's configuration (a module, a site, a conf file) is checked
with ``apache2ctl configtest`` in the same command that makes it; when the check
fails the change is undone before the command exits, so a broken configuration is
never left enabled, and the reload (itself behind another configtest) never sees it.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand, deploy, operation

from . import layout, passwords, records, settings, sign_in, snapshot, tls
from .render import FILES, render

# What Apache enables and how: the commands that enable and disable each kind.
KINDS = {
    "mods": ("a2enmod", "a2dismod"),
    "sites": ("a2ensite", "a2dissite"),
    "conf": ("a2enconf", "a2disconf"),
}

# mod_proxy_http tunnels websockets itself (ProxyPass ... upgrade=websocket) from 2.4.47.
# Older Apache needed a RewriteRule ... [P] for them, the CVE-2023-25690 pattern: refused.
WEBSOCKET_UPGRADE_VERSION = (2, 4, 47)
# The login form's body: a password and the _xsrf token (bytes).
LOGIN_REQUEST_BYTES = 8192
UNIT = "apache2.service"
SITE = "jupyter"
SITE_PATH = f"/etc/apache2/sites-available/{SITE}.conf"
HARDENING_CONF = "zz-jupyter-hardening"
HARDENING_PATH = f"/etc/apache2/conf-available/{HARDENING_CONF}.conf"
# Apache's workers, ready before a burst of connections (files/apache-mpm.conf).
WORKERS_CONF = "zz-jupyter-workers"
WORKERS_PATH = f"/etc/apache2/conf-available/{WORKERS_CONF}.conf"
PACKAGES = ["apache2"]
# The optional Basic-auth layer's users (setting basic_auth_user).
HTPASSWD = "/etc/apache2/jupyter.htpasswd"
# Debian's APACHE_LOG_DIR, where the vhost's logs are.
LOG_DIR = "/var/log/apache2"
# Where the HTTPS vhost logs errors, Basic-auth failures among them (read by login_ban).
HTTPS_ERROR_LOG = f"{LOG_DIR}/jupyter-ssl-error.log"
# Every request to Jupyter's login form (time, peer address, status, method, path), read by
# login_ban: a log only Apache writes.
LOGIN_LOG_NAME = "jupyter-login.log"
LOGIN_LOG = f"{LOG_DIR}/{LOGIN_LOG_NAME}"
# Stages, enables and configtests a site or conf file (files/apache-config-swap; config_file).
SWAP_SCRIPT = f"{layout.LIB}/apache-config-swap"
# Touched after every successful reload: config newer than this is not live yet.
RELOAD_STAMP = f"{layout.STATE_DIR}/apache-reloaded"
# Written when the deploy disables Apache's default site: uninstall.py enables it again.
DEFAULT_SITE_MARKER = f"{layout.STATE_DIR}/default-site-disabled"


class ApacheEnabled(snapshot.Probe):
    """The names enabled in ``/etc/apache2/{kind}-enabled`` (kind: mods, sites, conf), sorted."""

    def __init__(self, kind: str):
        self.kind = kind

    def command(self):
        return f"ls -1 {shlex.quote(f'/etc/apache2/{self.kind}-enabled/')} 2>/dev/null || true"

    def parse(self, output):
        return sorted(
            {
                re.sub(r"\.(load|conf)$", "", line.strip())
                for line in output
                if re.search(r"\.(load|conf)$", line.strip())
            }
        )


class ApacheVersion(snapshot.Probe):
    """
    Apache's version as a tuple, from the installed package or else the apt candidate (so a
    fresh host's vhost is right on the first run), or ``None``.
    """

    def command(self):
        return (
            "dpkg-query -W -f='${Version}\\n' apache2 2>/dev/null | grep . || "
            "apt-cache policy apache2 2>/dev/null | sed -n 's/^ *Candidate: //p'"
        )

    def parse(self, output):
        for line in output:
            match = re.match(r"^(?:\d+:)?(\d+)\.(\d+)\.(\d+)", line.strip())
            if match:
                return tuple(int(x) for x in match.groups())
        return None


def _configtest_or(undo: str, what: str) -> str:
    return (
        f"if ! apache2ctl configtest; then {undo}; "
        f"echo {shlex.quote(f'Apache rejected {what}; the previous configuration was restored')} >&2; exit 1; fi"
    )


def enabled_names(kind: str, state: snapshot.Snapshot) -> list[str]:
    """What ``ApacheEnabled`` says of ``kind``, from the Apache snapshot (``site_snapshot``)."""
    return state.probe(f"{kind}-enabled")


def _switched(kind: str, names: list[str], on: bool, state: snapshot.Snapshot):
    enable_cmd, disable_cmd = KINDS[kind]
    current = set(enabled_names(kind, state))
    todo = [n for n in names if (n not in current) == on]
    if not todo:
        host.noop(f"{kind} already {'enabled' if on else 'disabled'}: {', '.join(names)}")
        return
    if on and kind == "mods":
        # The swap script enables, configtests (undoing on failure) and records what it
        # enabled, dependencies too: uninstall disables only those.
        yield StringCommand(QuoteString(SWAP_SCRIPT), "mods", QuoteString(records.RECORD), *map(QuoteString, todo))
        return
    args = " ".join(shlex.quote(n) for n in todo)
    do, undo = (enable_cmd, disable_cmd) if on else (disable_cmd, enable_cmd)
    yield f"{do} -q {args} && {{ {_configtest_or(f'{undo} -q {args}', f'{do} {args}')}; }}"


@operation()
def enabled(kind: str, names: list[str], state: snapshot.Snapshot):
    """
    Enable Apache modules, sites or conf snippets, with a configtest.

    + kind: ``mods``, ``sites`` or ``conf``
    + names: names without suffix, e.g. ``["proxy", "proxy_http"]``
    + state: the Apache concern's ``snapshot.Snapshot`` (``site_snapshot``)

    Only the names not yet enabled are touched; when the result does not pass
    ``apache2ctl configtest`` the change is undone and the operation fails. Modules go
    through ``SWAP_SCRIPT`` (``configure_apache`` uploads it first), which records them.

    **Example:**

    .. code:: python

        apache.enabled(name="Enable proxy modules", kind="mods", names=["proxy", "proxy_http"], state=state)
    """
    yield from _switched(kind, names, on=True, state=state)


@operation()
def disabled(kind: str, names: list[str], state: snapshot.Snapshot):
    """
    Disable Apache modules, sites or conf snippets, with a configtest.

    + kind: ``mods``, ``sites`` or ``conf``
    + names: names without suffix, e.g. ``["000-default"]``
    + state: the Apache concern's ``snapshot.Snapshot`` (``site_snapshot``)

    Only the names still enabled are touched; when the result does not pass
    ``apache2ctl configtest`` the change is undone and the operation fails.

    **Example:**

    .. code:: python

        apache.disabled(name="Disable the default site", kind="sites", names=["000-default"], state=state)
    """
    yield from _switched(kind, names, on=False, state=state)


def available_path(kind: str, config_name: str) -> str:
    return f"/etc/apache2/{kind}-available/{config_name}.conf"


def enabled_path(kind: str, config_name: str) -> str:
    """Where a2ensite (a2enconf) puts its link to ``available_path``."""
    return f"/etc/apache2/{kind}-enabled/{config_name}.conf"


def enabled_link(kind: str, config_name: str) -> str:
    """The link's target, as a2ensite (a2enconf) writes it."""
    return f"../{kind}-available/{config_name}.conf"


# The deploy's own site and conf file, each with its enabled link.
OWN_CONFIGS = [("sites", SITE), ("conf", HARDENING_CONF), ("conf", WORKERS_CONF)]


@snapshot.claiming(
    lambda arguments: [
        available_path(arguments["kind"], arguments["config_name"]),
        enabled_path(arguments["kind"], arguments["config_name"]),
    ]
)
@operation()
def config_file(kind: str, config_name: str, content: str, state: snapshot.Snapshot):
    """
    Write an Apache site or conf snippet and enable it, only if Apache accepts it.

    + kind: ``sites`` or ``conf``
    + config_name: file name without ``.conf`` under ``/etc/apache2/{kind}-available``
    + content: the full file content
    + state: the Apache concern's ``snapshot.Snapshot`` (``site_snapshot``)

    The new file is staged next to the old one and handed to ``SWAP_SCRIPT``
    (``files/apache-config-swap``, which ``configure_apache`` uploads first): after it is
    moved in and enabled, ``apache2ctl configtest`` runs. When it fails, the previous file
    (and enabled state) is restored, Apache's own error is printed and the operation fails.

    Decided from the file (content, owner root, mode 644) and the enabled link (a2ensite's,
    both in ``state.paths``): whatever differs is put back, and what changed outside the
    deploy since it last made them is said (an edited copy in place of the enabled link is
    set aside, in ``snapshot.SET_ASIDE_DIR``).

    **Example:**

    .. code:: python

        apache.config_file(name="Jupyter vhost", kind="sites", config_name="jupyter", content=vhost, state=state)
    """
    path, link = available_path(kind, config_name), enabled_path(kind, config_name)
    target = enabled_link(kind, config_name)
    sha256 = hashlib.sha256(content.encode()).hexdigest()
    current, enabled = state.path(path), state.path(link)
    if (current.kind, current.detail, current.user, current.group, current.mode) == (
        "file",
        sha256,
        "root",
        "root",
        "644",
    ) and (enabled.kind, enabled.detail) == ("link", target):
        host.noop(f"{path} is up to date and enabled")
        return
    yield from snapshot.repairing(path, state)
    yield from snapshot.repairing(link, state)
    staged = f"{path}.pyinfra-new"
    yield FileUploadCommand(StringIO(content), staged)
    yield StringCommand(
        QuoteString(SWAP_SCRIPT),
        kind,
        QuoteString(config_name),
        QuoteString(staged),
        QuoteString(snapshot.SET_ASIDE_DIR),
        "&&",
        records.made(path, sha256, "root:root", "644", (link, f"link:{target}", "root:root", "-")),
    )


class ApacheTooOld(settings.SettingsError):
    """The host's Apache predates ``ProxyPass ... upgrade=websocket``."""


def check_version(host_name: str, version) -> None:
    """Refuse Apache older than 2.4.47 (Ubuntu 20.04's 2.4.41), before any host is changed."""
    if version is not None and version < WEBSOCKET_UPGRADE_VERSION:
        shown = ".".join(map(str, version))
        raise ApacheTooOld(
            f"{host_name}: Apache {shown} is older than 2.4.47: its websockets would need a RewriteRule "
            "[P] proxy rule (the CVE-2023-25690 pattern); use a release with Apache 2.4.52 or newer "
            "(Debian 11+, Ubuntu 22.04+)",
        )


def needed_modules(basic_auth: bool, single_sign_on: bool = False) -> list[str]:
    """The modules the vhost uses."""
    modules = ["proxy", "proxy_http", "ssl", "headers", "rewrite"]
    if single_sign_on:
        modules += ["authn_core", sign_in.MODULE]
    if basic_auth:
        modules += ["authn_core", "auth_basic", "authn_file", "authz_user", "authn_socache", "socache_shmcb"]
    return modules


def login_path(data) -> str:
    """The path of the sign-in form people type a password into: the single server's, or the
    hub's with per-person servers."""
    per_person = data.get("per_person_servers", settings.DEFAULTS["per_person_servers"])
    return data.get("jupyter_base_url") + (layout.HUB_LOGIN_PATH if per_person else "login")


def vhost(data, server_name: str) -> str:
    """The vhost, from a host's settings (``data``: its host data, or a mapping of setting
    names); needs Apache >= 2.4.47 (``check_version``)."""
    cert, key = tls.served_paths(data.get("tls_mode"))
    letsencrypt_mode = data.get("tls_mode") == "letsencrypt"
    return render(
        "apache-vhost.conf.j2",
        server_name=server_name,
        server_name_pattern=re.escape(server_name),
        base_url=data.get("jupyter_base_url"),
        base_url_pattern=re.escape(data.get("jupyter_base_url")),
        port=data.get("jupyter_port"),
        cert=cert,
        key=key,
        htpasswd=HTPASSWD if data.get("basic_auth_user") else None,
        extra_directives=list(data.get("apache_extra_directives")),
        acme_webroot=tls.ACME_WEBROOT if letsencrypt_mode else None,
        proxy_timeout=data.get("apache_proxy_timeout"),
        max_request_bytes=settings.size_bytes(data.get("max_request_size")),
        login_request_bytes=LOGIN_REQUEST_BYTES,
        login_path=login_path(data),
        login_path_pattern=re.escape(login_path(data)),
        login_log_name=LOGIN_LOG_NAME,
        sign_in=sign_in.vhost_values(data, server_name),
    )


def packages(data) -> list[str]:
    """What the concern installs (through ``system.install_packages``)."""
    return PACKAGES


# The settings the vhost is made from (``vhost``).
SITE_SETTINGS = (
    "jupyter_base_url",
    "jupyter_port",
    "server_name",
    "basic_auth_user",
    "apache_extra_directives",
    "tls_mode",
    "apache_proxy_timeout",
    "max_request_size",
    "auth",
    "oidc_issuer",
    "oidc_client_id",
    "oidc_allowed",
    "oidc_ca_bundle",
    "per_person_servers",
)


def site_snapshot(tls_mode: str) -> snapshot.Snapshot:
    """
    The Apache concern's host state in one command: what is enabled, its config files, and
    the modification times that tell whether Apache has reloaded since they last changed.
    """
    return snapshot.Snapshot(
        paths=[
            SWAP_SCRIPT,
            SITE_PATH,
            HARDENING_PATH,
            WORKERS_PATH,
            *(enabled_path(kind, name) for kind, name in OWN_CONFIGS),
            RELOAD_STAMP,
            *served_by_apache(tls_mode),
        ],
        secret_paths=[HTPASSWD, *sign_in.APACHE_READS],
        units=[UNIT],
        probes={f"{kind}-enabled": ApacheEnabled(kind) for kind in KINDS},
    )


def served_by_apache(tls_mode: str) -> list[str]:
    """What Apache reads at a reload, apart from the password file: a change to any of them needs one."""
    return [f"/etc/apache2/{kind}-enabled" for kind in KINDS] + [
        SITE_PATH,
        HARDENING_PATH,
        WORKERS_PATH,
        *tls.served_paths(tls_mode),
    ]


def reload_watched(tls_mode: str) -> list[str]:
    """Everything Apache reads at a reload: ``served_by_apache`` and the password file."""
    return [*served_by_apache(tls_mode), HTPASSWD, *sign_in.APACHE_READS]


def reload_pending(state: snapshot.Snapshot, tls_mode: str) -> bool:
    """
    Whether Apache owes a reload, from a snapshot holding ``RELOAD_STAMP`` and what it reads:
    something it reads (a certificate the TLS concern renewed, config an interrupted run
    wrote) is newer than the last reload, or this deploy never reloaded.
    """
    stamp = state.path(RELOAD_STAMP)
    return not stamp.kind or bool(state.newer_than(reload_watched(tls_mode), stamp.mtime))


@deploy(
    "Apache reverse proxy",
    data_defaults=settings.defaults(*SITE_SETTINGS),
)
def configure_apache():
    """
    Enable what the vhost needs, write it and reload when it, or anything it serves
    (the TLS concern's certificate), changed since the last reload.
    """
    # An Apache older than WEBSOCKET_UPGRADE_VERSION was refused by host_checks, first.
    tls_mode = host.data.tls_mode
    state = site_snapshot(tls_mode)
    basic_auth_user = host.data.basic_auth_user
    snapshot.script(
        name="Script that enables modules and swaps in a site or conf only if Apache accepts them",
        dest=SWAP_SCRIPT,
        src=FILES / "apache-config-swap",
        state=state,
    )
    modules = enabled(
        name="Enable the Apache modules the proxy needs",
        kind="mods",
        names=needed_modules(basic_auth=bool(basic_auth_user), single_sign_on=sign_in.enabled(host.data)),
        state=state,
    )
    if basic_auth_user:
        # Before the vhost that names it: configtest needs the file to exist.
        users = passwords.password_file(
            name="Basic-auth password (never shown)",
            path=HTPASSWD,
            password=passwords.password_from_environment(settings.BASIC_AUTH_PASSWORD_ENV),
            group="www-data",
            htpasswd_user=basic_auth_user,
            state=state,
        )
    hardening = config_file(
        name="Apache hygiene (no version banners, no TRACE)",
        kind="conf",
        config_name=HARDENING_CONF,
        content=(FILES / "apache-hardening.conf").read_text(),
        state=state,
    )
    workers = config_file(
        name="Apache workers ready for a burst of connections",
        kind="conf",
        config_name=WORKERS_CONF,
        content=(FILES / "apache-mpm.conf").read_text(),
        state=state,
    )
    site = config_file(
        name="Jupyter vhost (:80 redirect, :443 proxy)",
        kind="sites",
        config_name=SITE,
        content=vhost(host.data, settings.server_name(host)),
        state=state,
    )
    if not basic_auth_user:
        # Only after the vhost that no longer names it: a rejected vhost stops the host
        # first, and the live one, which still names the file, keeps working.
        users = snapshot.absent(name="No Basic-auth password file", path=HTPASSWD, state=state)
    changes = [modules, users, hardening, workers, site]
    if not sign_in.enabled(host.data):
        # After the vhost that no longer uses it (Debian's package enables it when installed).
        changes.append(
            disabled(name="Disable single sign-on (mod_auth_openidc)", kind="mods", names=[sign_in.MODULE], state=state)
        )
    default_site = disabled(name="Disable Apache's default site", kind="sites", names=["000-default"], state=state)
    snapshot.shell(
        name="Remember that the deploy disabled the default site",
        commands=[
            StringCommand("mkdir", "-p", QuoteString(DEFAULT_SITE_MARKER.rsplit("/", 1)[0])),
            StringCommand("touch", QuoteString(DEFAULT_SITE_MARKER)),
        ],
        when=snapshot.Changes(default_site),
    )
    # A reload for what this concern changed, and for anything Apache reads that is newer than
    # its last reload (a certificate the TLS concern renewed, what an interrupted run wrote):
    # the snapshot is as the host is when the run gets here (read again after any change).
    q_stamp, q_dir = shlex.quote(RELOAD_STAMP), shlex.quote(RELOAD_STAMP.rsplit("/", 1)[0])
    snapshot.service(
        name="Reload Apache (after configtest)",
        service=UNIT,
        reloaded=snapshot.Changes(*changes, default_site, owed=lambda: reload_pending(state, tls_mode)),
        check_command="apache2ctl configtest",
        ready_command=f"mkdir -p {q_dir} && touch {q_stamp}",
        state=state,
    )
