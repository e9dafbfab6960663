"""
Login ban: an address that keeps failing to log in is blocked at 80 and 443 (fail2ban).

Jupyter Server has no throttling of its own, and every wrong password costs the server an
argon2 hash (the deploy's login handler runs it off the event loop, one at a time, so a
flood queues guesses, not the user's cells). fail2ban reads failed logins from Apache's log
of the login form (``apache.LOGIN_LOG``, the single server's form or, with per-person
passwords, the hub's: the peer address and the status Jupyter answered,
written by Apache alone; Jupyter's journal is not read, as kernels and terminals write to it
too), and Apache's Basic-auth failures when ``basic_auth_user`` is set, and puts the address
in an nftables set of its own for ``login_ban_seconds``; its database (``/var/lib/fail2ban``)
puts active bans back, with their original end, when fail2ban starts again. Bans never
touch SSH.

Switching ``login_ban`` off removes the jails and, with them, their bans; the fail2ban
package stays installed.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, deploy

from . import apache, settings, snapshot
from .render import FILES, render

# nftables: the `nft` fail2ban's ban action runs.
PACKAGES = ["fail2ban", "nftables"]
SERVICE = "fail2ban"
FILTER_NAME = "jupyter-login"
FILTER_FILE = f"/etc/fail2ban/filter.d/{FILTER_NAME}.conf"
# The ban itself (files/fail2ban-jupyter-ban.conf): nftables sets that hold an IPv6 /64.
ACTION_NAME = "jupyter-web-ban"
ACTION_FILE = f"/etc/fail2ban/action.d/{ACTION_NAME}.conf"
JAIL_FILE = "/etc/fail2ban/jail.d/jupyter-apache-deploy.local"
# The jails this deploy runs: failed Jupyter logins, failed Basic-auth logins.
LOGIN_JAIL = "jupyter-login"
BASIC_AUTH_JAIL = "jupyter-basic-auth"
JAILS = (LOGIN_JAIL, BASIC_AUTH_JAIL)


def packages(data) -> list[str]:
    """What the concern installs (through ``system.install_packages``)."""
    return PACKAGES if jails_wanted(data) else []


def jails_wanted(data) -> bool:
    """With single sign-on nobody types a password here: failed sign-ins happen at the provider."""
    oidc = data.get("auth", settings.DEFAULTS["auth"]) == "oidc"
    return data.get("login_ban", settings.DEFAULTS["login_ban"]) and not oidc


def jail_config(data) -> str:
    """The jail file, from a host's settings (``data``: its host data, or a mapping of setting
    names): the Jupyter login jail, and the Basic-auth jail when that login is on."""
    jails = [dict(name=LOGIN_JAIL, filter=FILTER_NAME, backend="polling", logpath=apache.LOGIN_LOG)]
    if data.get("basic_auth_user"):
        # fail2ban's own filter for Apache's auth_basic errors (AH01617 password mismatch,
        # AH01618 user not found), read from the HTTPS vhost's error log.
        jails.append(
            dict(name=BASIC_AUTH_JAIL, filter="apache-auth", backend="polling", logpath=apache.HTTPS_ERROR_LOG)
        )
    return render(
        "fail2ban-jail.local.j2",
        jails=jails,
        max_failures=data.get("login_ban_max_failures"),
        window=data.get("login_ban_window"),
        action=ACTION_NAME,
        ban_seconds=data.get("login_ban_seconds"),
        ignore=list(data.get("login_ban_ignore")),
    )


# Stops this deploy's jails in a running fail2ban (their nftables sets, and so their bans,
# go with them) without printing anything: a jail's status would list banned addresses.
STOP_JAILS = " ".join(
    [
        "if fail2ban-client ping >/dev/null 2>&1; then",
        *[f"fail2ban-client stop {jail} >/dev/null 2>&1 || true;" for jail in JAILS],
        "fi",
    ],
)


# fail2ban starts (or reloads) in the background: wait until it runs the login jail.
WAIT_FOR_JAIL = (
    f"for i in $(seq 100); do fail2ban-client status {LOGIN_JAIL} >/dev/null 2>&1 && exit 0; sleep 0.1; done; "
    f"echo 'fail2ban is not running the {LOGIN_JAIL} jail: see journalctl -u {SERVICE}' >&2; exit 1"
)


def jail_snapshot() -> snapshot.Snapshot:
    """The login ban's host state in one command: its three files and fail2ban's unit."""
    return snapshot.Snapshot(paths=[FILTER_FILE, ACTION_FILE, JAIL_FILE], units=[f"{SERVICE}.service"])


@deploy(
    "Login ban",
    data_defaults=settings.defaults(
        "login_ban",
        "login_ban_max_failures",
        "login_ban_window",
        "login_ban_seconds",
        "login_ban_ignore",
        "basic_auth_user",
        "auth",
    ),
)
def configure_login_ban():
    """Ban addresses with repeated failed logins at 80/443, or remove the jails (needs ``packages``)."""
    state = jail_snapshot()
    if not jails_wanted(host.data):
        jail = snapshot.absent(name="No login-ban jails", path=JAIL_FILE, state=state)
        login_filter = snapshot.absent(name="No login-ban filter", path=FILTER_FILE, state=state)
        ban_action = snapshot.absent(name="No login-ban action", path=ACTION_FILE, state=state)
        snapshot.shell(
            name="Stop the login-ban jails and lift their bans",
            commands=[StringCommand(STOP_JAILS)],
            when=snapshot.Changes(jail, login_filter, ban_action),
        )
        return
    config = {"user": "root", "group": "root", "mode": "644", "state": state}
    login_filter = snapshot.put(
        name="fail2ban filter for failed Jupyter logins",
        src=FILES / "fail2ban-jupyter-login.conf",
        dest=FILTER_FILE,
        **config,
    )
    ban_action = snapshot.put(
        name="fail2ban ban action (nftables, an IPv6 client's /64 whole)",
        src=FILES / "fail2ban-jupyter-ban.conf",
        dest=ACTION_FILE,
        **config,
    )
    jail = snapshot.put(
        name="fail2ban jails for failed logins", src=snapshot.text(jail_config(host.data)), dest=JAIL_FILE, **config
    )
    # Like Apache's configtest: a config fail2ban refuses never reaches the running server,
    # and the run fails with fail2ban's own words. A running fail2ban reloads (jails gone
    # from the file stop, their bans lifted); a stopped one (it could not start with only
    # Debian's sshd jail) starts. Nothing printed lists banned addresses.
    snapshot.service(
        name="fail2ban running and enabled, its jails loaded",
        service=f"{SERVICE}.service",
        reloaded=snapshot.Changes(login_filter, ban_action, jail),
        check_command="fail2ban-client --test >/dev/null",
        ready_command=WAIT_FOR_JAIL,
        state=state,
    )
