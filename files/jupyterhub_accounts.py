# Managed by pyinfra (jupyter-apache-deploy): local edits are overwritten on the next run.
"""
People's accounts and servers for JupyterHub (per_person_servers), loaded by the deploy's
jupyterhub_config.py.

- ``hub_name_of``: a person's hub name from the provider's user info (their address, through
  jupyter_people.py: one account per address, never a system account);
- ``PersonAuthenticator`` (auth 'password'): NativeAuthenticator, where people sign up with
  their address and a password and hub admins approve them; admins' first passwords come
  from the deploy, a password change or an approval taken back ends the person's sessions;
- ``make_account``: their Unix account, made at their first sign-in (home 0700, their own
  group, no password, no sudo); an account of that name that is not theirs refuses them;
- ``CheckedSystemdSpawner``: systemdspawner's spawner that, before the hub sends anyone to a
  server, proves the port it answers on is held by that server's own main process (another
  person's kernel could take a port the hub picked first), and lets the hub's admins write
  the shared data directory, and starts the check account's server from the distribution an
  upgrade's check names (``check_distribution``) instead of ``conda_prefix``.

The hub runs as root (systemd-run needs it): everything here runs commands by argument list,
never through a shell, and nothing acts as root inside a person's home after it was made.
"""

import asyncio
import grp
import hashlib
import json
import os
import pwd
import re
import ssl
import stat
import sys
import urllib.request

import argon2
import bcrypt
import jupyter_people as people
from jupyterhub import orm
from jupyterhub.handlers.login import LoginHandler
from jupyterhub.utils import new_token
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator import handlers as native_handlers
from nativeauthenticator.orm import UserInfo
from systemdspawner import SystemdSpawner
from tornado import web
from tornado.escape import url_escape

# Set by jupyterhub_config.py from the deploy's settings.
SHARED_DATA_DIR = None
SHARED_LINK = None
ADMINS_GROUP = None
# The check account's hub name, the root's file an upgrade's check names a distribution in
# (files/conda-switch), and conda_prefix (every distribution is in conda_prefix.dists).
CHECK_NAME = None
CHECK_DISTRIBUTION = None
CONDA_PREFIX = None
# auth 'password': the admins' first passwords (root's JSON: address -> hash) and the record
# of which of them the hub has set.
ADMIN_PASSWORDS = None
ADMIN_PASSWORDS_SET = None


ENDPOINTS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint")


def provider_endpoints(issuer: str, ca_bundle: str | None, copy: str) -> dict:
    """The provider's endpoints from its discovery document, kept in ``copy`` (root's): when
    the provider cannot be reached, the last copy (the hub starts; sign-in waits for the
    provider). With neither, the hub does not start, and says why."""
    context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as answer:
            document = json.loads(answer.read(1_000_000))
        endpoints = {name: str(document[name]) for name in ENDPOINTS}
    except (OSError, ValueError, KeyError) as error:
        try:
            with open(copy) as f:
                endpoints = json.load(f)
        except (OSError, ValueError):
            sys.exit(f"the provider's discovery document {url} cannot be read ({error}) and no copy is kept")
        print(
            f"the provider's discovery document cannot be read ({error}): using the copy from {copy}", file=sys.stderr
        )
        return endpoints
    with open(f"{copy}.new", "w") as f:
        json.dump(endpoints, f)
    os.replace(f"{copy}.new", copy)
    return endpoints


def with_memory_limit(environment: dict, limit, meminfo: str = "/proc/meminfo") -> dict:
    """People's servers' environment with ``MEM_LIMIT`` (bytes: what jupyter-resource-usage's
    display shows as the limit) from ``limit``: bytes, ``"N%"`` of the host's memory (as systemd
    reads a ``MemoryMax`` in percent), or ``None`` (no limit shown)."""
    if limit is None:
        return dict(environment)
    if isinstance(limit, str) and limit.endswith("%"):
        with open(meminfo) as f:
            total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
        limit = total * int(limit[:-1]) // 100
    return {**environment, "MEM_LIMIT": str(int(limit))}


def hub_name_of(user_info: dict) -> str:
    """The hub's name for the person (GenericOAuthenticator's ``username_claim``)."""
    address = user_info.get("email")
    if user_info.get("email_verified") is False:
        raise web.HTTPError(403, "the provider has not verified this e-mail address")
    try:
        return people.hub_name(address or "")
    except people.NotAnAddress:
        raise web.HTTPError(403, "this sign-in has no e-mail address the hub can name an account after") from None


def password_matches(stored: bytes, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` is a hash of: bcrypt (what NativeAuthenticator
    writes) or argon2 (an admin's first password may be given as one)."""
    try:
        if stored.startswith(b"$argon2"):
            return argon2.PasswordHasher().verify(stored.decode(), password)
        return bcrypt.checkpw(password.encode(), stored)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError, ValueError):
        return False


# NativeAuthenticator's own handlers (sign-in, change of password) call this method of its
# table's rows directly: the check of both kinds of hash has to be here.
UserInfo.is_valid_password = lambda self, password: password_matches(self.password, password)


class PasswordLoginHandler(LoginHandler, native_handlers.LocalBase):
    """The sign-in form: JupyterHub's own handler with NativeAuthenticator's page (its link to
    the sign-up page; its own handler uses what JupyterHub 6 no longer has). A wrong password
    is answered 401, as the single server's is (Apache's login log keeps the status: the login
    ban counts these); the right password of someone not approved yet 403, not counted."""

    def _render(self, login_error=None, username=None, **kwargs):
        return self.render_template(
            "native-login.html",
            **{
                **kwargs,
                "next": url_escape(self.get_argument("next", default="")),
                "username": username,
                "login_error": login_error,
                "login_url": self.settings["login_url"],
                "enable_signup": self.authenticator.enable_signup,
                "two_factor_auth": self.authenticator.allow_2fa,
                "xsrf": self.xsrf_token.decode("ascii"),
            },
        )

    async def post(self):
        data = {
            name: self.get_argument(name, strip=name == "username")
            for name in self.request.body_arguments
            if name != "_xsrf"
        }
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        username, password = data.get("username", ""), data.get("password", "")
        row = self.authenticator.get_user(username)
        if row is not None and not row.is_authorized and password_matches(row.password, password):
            self.set_status(403)
            error = "An admin has not approved this account yet."
        else:
            self.set_status(401)
            error = "Invalid username or password."
        self.finish(await self._render(login_error=error, username=username[:254]))


class ApprovalHandler(native_handlers.ToggleAuthorizationHandler):
    """An admin's approval switched on or off; off also ends the person's sessions."""

    async def get(self, slug):
        await super().get(slug)
        row = self.authenticator.get_user(slug)
        if row is not None and not row.is_authorized:
            self.authenticator.end_sessions(row.username)


class PersonAuthenticator(NativeAuthenticator):
    """People sign up with their e-mail address (their account is named from it, as with the
    provider) and a password; a hub admin approves them. Names in the hub are the accounts'."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Read once: the file changes only with a deploy, which restarts the hub.
        with open(ADMIN_PASSWORDS) as f:
            first_passwords = json.load(f)
        self.admin_addresses = {people.hub_name(address): address for address in first_passwords}
        self.set_admin_passwords(first_passwords)

    def normalize_username(self, username):
        name = username.strip().lower()
        if "@" in name:
            try:
                return people.hub_name(name)
            except people.NotAnAddress:
                pass  # kept as it is: no account has such a name
        return name

    def create_user(self, username, password, **kwargs):
        """A sign-up: the address is the person's (their account's comment names it)."""
        try:
            address = people.normalized(username)
        except people.NotAnAddress:
            return None
        return super().create_user(address, password, **{**kwargs, "email": address})

    def get_authed_users(self):
        # Only approved rows: an admin's name is never approved at sign-up (its row is the
        # deploy's, from hub_admin_password_hashes).
        return {row.username for row in UserInfo.all_users(self.db) if row.is_authorized}

    def address_of(self, name: str) -> str:
        if name in self.admin_addresses:
            return self.admin_addresses[name]
        row = self.get_user(name)
        if row is None or not row.email:
            raise web.HTTPError(403, "this account has no address the hub can name an account after")
        return row.email

    def set_admin_passwords(self, first_passwords: dict) -> None:
        """Each admin's first password (``first_passwords``: address -> hash, from the deploy):
        set when the deploy gives one the hub has not set yet (a name someone signed up under
        first is taken back); a password the admin changed since is kept."""
        try:
            with open(ADMIN_PASSWORDS_SET) as f:
                done = json.load(f)
        except (OSError, ValueError):
            done = {}
        for address, given in first_passwords.items():
            name = people.hub_name(address)
            stored = given.removeprefix("argon2:")
            digest = hashlib.sha256(stored.encode()).hexdigest()
            row = self.get_user(name)
            if row is not None and done.get(name) == digest:
                continue
            if row is None:
                row = UserInfo(username=name, password=stored.encode(), is_authorized=True)
                self.db.add(row)
            else:
                self.log.warning("the admin %s gets the first password the deploy gives", name)
                row.password, row.is_authorized = stored.encode(), True
                self.end_sessions(name)
            done[name] = digest
        self.db.commit()
        with open(f"{ADMIN_PASSWORDS_SET}.new", "w") as f:
            json.dump(done, f)
        os.replace(f"{ADMIN_PASSWORDS_SET}.new", ADMIN_PASSWORDS_SET)

    def change_password(self, username, new_password):
        changed = super().change_password(username, new_password)
        if changed:
            self.end_sessions(self.normalize_username(username))
        return changed

    def end_sessions(self, name: str) -> None:
        """Every session of ``name`` ends: the hub's login cookies (their cookie id changes) and
        every token (their servers' sign-ins, and tokens they made). A server's own cache of a
        token lasts ``HubOAuth.cache_max_age`` (the deploy's people's server config)."""
        user = orm.User.find(self.db, name)
        if user is None:
            return
        user.cookie_id = new_token()
        for token in list(user.api_tokens):
            self.db.delete(token)
        self.db.commit()
        self.log.info("ended every session of %s", name)

    def get_handlers(self, app):
        replaced = {r"/login": PasswordLoginHandler, r"/authorize/([^/]*)": ApprovalHandler}
        return [(path, replaced.get(path, handler)) for path, handler in super().get_handlers(app)]


async def _run(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    if process.returncode:
        message = re.sub(r"[^\x20-\x7e]", "?", err.decode(errors="replace"))[:300]
        raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {message}")


async def make_account(authenticator, handler, authentication):
    """The person's account (JupyterHub's ``post_auth_hook``): made at the first sign-in."""
    if isinstance(authenticator, PersonAuthenticator):
        address = people.normalized(authenticator.address_of(authentication["name"]))
    else:
        address = people.normalized(authentication["auth_state"]["oauth_user"]["email"])
    name, home = people.unix_name(address), people.home(address)
    try:
        existing = pwd.getpwnam(name)
    except KeyError:
        existing = None
    if existing is not None and not people.owned_by(existing.pw_gecos, address):
        authenticator.log.error("account %s exists and is not the one made for this person: refused", name)
        raise web.HTTPError(403, "this person's account name is taken on the host; ask the administrator")
    if existing is None:
        # A fresh home (from /etc/skel), the person's alone; a login shell is not needed
        # (servers and terminals are started with bash), so none.
        await _run(
            "useradd",
            "--create-home",
            "--home-dir",
            home,
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            people.comment(address),
            name,
        )
        await _run("chmod", "0700", home)
        authenticator.log.info("made the account %s for a new person", name)
    # hub_admins write the shared data (as members of its group); someone no longer an admin
    # is taken out at their next sign-in.
    admin = authentication["name"] in authenticator.admin_users
    members = grp.getgrnam(ADMINS_GROUP).gr_mem if ADMINS_GROUP else []
    if ADMINS_GROUP and admin != (name in members):
        await _run("gpasswd", "--add" if admin else "--delete", name, ADMINS_GROUP)
    if SHARED_DATA_DIR and not os.path.lexists(os.path.join(home, SHARED_LINK)):
        # As the person: root never acts inside a home its owner can change.
        await _run("runuser", "-u", name, "--", "ln", "-sn", SHARED_DATA_DIR, os.path.join(home, SHARED_LINK))
    return authentication


def _listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on ``port`` on loopback (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            continue
    return inodes


def _sockets_of(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        pass
    return inodes


async def _main_pid(unit: str) -> int:
    process = await asyncio.create_subprocess_exec(
        "systemctl", "show", "--property=MainPID", "--value", unit, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    try:
        return int(out.strip() or 0)
    except ValueError:
        return 0


def check_distribution(path: str, prefix: str) -> str | None:
    """The distribution an upgrade's check starts the check account's server from: what
    ``path`` names, when it is root's alone and names a directory of ``prefix.dists``; None
    when there is no such file (no check runs)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise web.HTTPError(500, f"{path} is not root's alone: no server starts from what it names")
    with open(path) as f:
        distribution = f.read(4096).strip()
    dists = prefix.rstrip("/") + ".dists"
    name = distribution.removeprefix(dists + "/")
    if name == distribution or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name == "previous":
        raise web.HTTPError(500, f"{path} names no distribution of {dists}: no server starts from it")
    return distribution


def from_distribution(cmd: list, environment: dict, prefix: str, distribution: str) -> tuple[list, dict]:
    """A server's command and environment with ``prefix`` (its path, and in PATH) replaced by
    ``distribution``: the same server, from another distribution."""
    prefix = prefix.rstrip("/")

    def moved(value: str) -> str:
        return distribution + value[len(prefix) :] if value == prefix or value.startswith(prefix + "/") else value

    environment = dict(environment)
    if "PATH" in environment:
        environment["PATH"] = ":".join(moved(part) for part in environment["PATH"].split(":"))
    return [moved(part) for part in cmd], environment


class CheckedSystemdSpawner(SystemdSpawner):
    async def start(self):
        if CHECK_NAME and self.user.name == CHECK_NAME:
            # The check account only: started as anyone's server is, from the distribution an
            # upgrade checks while its file is there, else as configured.
            if not hasattr(self, "configured"):
                self.configured = (list(self.cmd), dict(self.environment))
            cmd, environment = self.configured
            distribution = check_distribution(CHECK_DISTRIBUTION, CONDA_PREFIX)
            if distribution:
                cmd, environment = from_distribution(cmd, environment, CONDA_PREFIX, distribution)
                self.log.info("the check account's server starts from %s (an upgrade's check)", distribution)
            self.cmd, self.environment = cmd, environment
        # Admins write the shared data directory; everyone else reads it (ProtectSystem=strict).
        if SHARED_DATA_DIR and self.user.admin:
            self.readwrite_paths = [SHARED_DATA_DIR]
        result = await super().start()
        if result is None:
            return result
        ip, port = result
        for _ in range(self.start_timeout * 4):
            listening = _listening_inodes(port)
            if listening:
                pid = await _main_pid(self.unit_name)
                if pid and listening & _sockets_of(pid):
                    return result
                await self.stop()
                raise web.HTTPError(
                    500, f"port {port} was taken by another process before this server listened: start it again"
                )
            status = await self.poll()
            if status is not None:
                # Said now: the hub would otherwise wait its http_timeout for a server that is gone.
                raise web.HTTPError(
                    500, f"the server exited at its start (status {status}): journalctl -u {self.unit_name}"
                )
            await asyncio.sleep(0.25)
        return None
