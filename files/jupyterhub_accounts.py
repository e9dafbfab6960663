# Managed by pyinfra (jupyter-apache-deploy): local edits are overwritten on the next run.
"""
People's accounts and servers for JupyterHub (per_person_servers), loaded by the deploy's
jupyterhub_config.py.

- ``hub_name_of``: a person's hub name from the provider's user info (their address, through
  jupyter_people.py: one account per address, never a system account);
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
import json
import os
import pwd
import re
import ssl
import stat
import sys
import urllib.request

import jupyter_people as people
from systemdspawner import SystemdSpawner
from tornado import web

# Set by jupyterhub_config.py from the deploy's settings.
SHARED_DATA_DIR = None
SHARED_LINK = None
ADMINS_GROUP = None
# The check account's hub name, the root's file an upgrade's check names a distribution in
# (files/conda-switch), and conda_prefix (every distribution is in conda_prefix.dists).
CHECK_NAME = None
CHECK_DISTRIBUTION = None
CONDA_PREFIX = None


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
