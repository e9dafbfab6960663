"""
The Jupyter login password: hashed on the control machine, stored in its own file.

The plaintext never leaves the control machine, and nothing of the stored hash appears
in pyinfra's output, not even with ``-vvv`` or ``--diff``. The only fact read about the
file is its owner and mode; its one line is *downloaded* (``host.get_file``, which
prints nothing of the content) into the control machine's memory, never printed: its
parameters, salt or checksum would be as good as the hash itself for guessing the
password offline. With the stored parameters and salt the control machine recomputes
the hash of the password it has; when the line is the same, nothing changes. A re-run
with the same password is therefore a no-op, and a new password gets a fresh random salt.

argon2 costs the control machine 35-75 ms of CPU per hash, and pyinfra's hosts share one
thread: per host, that would stall every other host's run. So within a run each password
is hashed once for all the hosts that need a new line (they get the same line: the same
password, so nothing more to learn from several copies), and each stored line is checked
once however many hosts hold it. A fleet deployed by this version holds one line: a rerun
costs one hash, whatever the number of hosts.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import shlex
from io import BytesIO, StringIO

from passlib.hash import argon2, bcrypt
from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation

from . import settings, snapshot

# The parameters of Jupyter's own `jupyter_server.auth.passwd()`.
ARGON2_PARAMS = dict(type="ID", memory_cost=10240, time_cost=10, parallelism=8)
_ARGON2_PARAMS_SALT = re.compile(
    r"^argon2:\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$[A-Za-z0-9+/]+$"
)
# bcrypt for Apache's htpasswd ("$2y$"); Apache caches checked logins (mod_authn_socache),
# so the cost is paid once per login, not on every request.
BCRYPT_ROUNDS = 10
_BCRYPT_PARAMS_SALT = re.compile(r"^([^:]+):\$2y\$(\d\d)\$([./A-Za-z0-9]{22})[./A-Za-z0-9]{31}$")


def hash_password(password: str, salt: bytes | None = None, params: dict | None = None) -> str:
    """An ``argon2:`` hash that ``jupyter_server.auth.passwd_check`` accepts."""
    options = dict(params or ARGON2_PARAMS)
    if salt is not None:
        options["salt"] = salt
    return "argon2:" + argon2.using(**options).hash(password)


def htpasswd_line(user: str, password: str, salt: str | None = None, rounds: int = BCRYPT_ROUNDS) -> str:
    """``user:$2y$...``, a line of an Apache htpasswd file."""
    options = dict(rounds=rounds, ident="2y")
    if salt is not None:
        options["salt"] = salt
    return f"{user}:" + bcrypt.using(**options).hash(password)


def file_content(line: str) -> str:
    return line + "\n"


@functools.lru_cache(maxsize=64)
def rehash_with(stored: str, password: str) -> str | None:
    """The line ``password`` would give with the parameters and salt of the ``stored`` line."""
    match = _ARGON2_PARAMS_SALT.match(stored or "")
    if match:
        memory, time, parallel, salt_b64 = match.groups()
        # argon2's PHC strings use standard base64 without padding.
        salt = base64.b64decode(salt_b64 + "=" * (-len(salt_b64) % 4))
        params = dict(type="ID", memory_cost=int(memory), time_cost=int(time), parallelism=int(parallel))
        return hash_password(password, salt=salt, params=params)
    match = _BCRYPT_PARAMS_SALT.match(stored or "")
    if match:
        user, rounds, salt = match.groups()
        return htpasswd_line(user, password, salt=salt, rounds=int(rounds))
    return None


def stored_owner(path: str, state) -> str | None:
    """The stored file's ``user:group:mode`` (``None``: no file), from the concern's snapshot
    (``state``, holding ``path`` among its ``secret_paths``): nothing read from its content."""
    current = state.path(path)
    return f"{current.user}:{current.group}:{current.mode}" if current.kind == "file" else None


def stored_content(path: str) -> str:
    """The whole file, downloaded into memory ('' when it cannot be read)."""
    buffer = BytesIO()
    try:
        if not host.get_file(path, buffer):
            return ""
    except OSError:
        return ""
    return buffer.getvalue().decode("utf-8", "replace")


def desired_line(
    password_hash: str | None, password: str | None, current: str | None, htpasswd_user: str | None = None
) -> str | None:
    """
    The line to store, or ``None`` when the stored one already verifies the password.

    + password_hash: a ready hash (host data ``jupyter_password_hash``); wins over ``password``
    + password: the plaintext from the control machine's environment
    + current: the stored file's content (``None`` when there is no file)
    + htpasswd_user: make an htpasswd line for this user instead of a Jupyter hash

    The whole file must be the one line: anything else in it (a second htpasswd user
    added by hand) is replaced.
    """
    if password_hash:
        return None if current == file_content(password_hash) else password_hash
    first_line = current.split("\n", 1)[0] if current else ""
    same_salt = rehash_with(first_line, password) if first_line else None
    same_user = not htpasswd_user or first_line.startswith(f"{htpasswd_user}:")
    if same_salt and file_content(same_salt) == current and same_user:
        return None
    # A new password (or user, or a file in another format) gets a fresh random salt, once
    # per run: every host that needs a new line gets this one.
    return new_line(password, htpasswd_user)


@functools.lru_cache(maxsize=16)
def new_line(password: str, htpasswd_user: str | None = None) -> str:
    """A freshly salted line for ``password``, the same for every host of this run."""
    if htpasswd_user:
        return htpasswd_line(htpasswd_user, password)
    return hash_password(password)


@snapshot.claiming("path")
@operation()
def password_file(
    path: str,
    state: snapshot.Snapshot,
    password_hash: str | None = None,
    password: str | None = None,
    group: str = "root",
    htpasswd_user: str | None = None,
):
    """
    Store a password hash in its own file, readable by root and ``group``.

    + path: remote file to write
    + password_hash: an ``argon2:`` hash to store as it is
    + password: a plaintext password, hashed here; the stored hash is kept when it
      already verifies this password (so re-runs change nothing)
    + group: group allowed to read the file (the Jupyter user's, or Apache's)
    + htpasswd_user: write an Apache htpasswd line (bcrypt) for this user instead of
      a Jupyter ``argon2:`` hash
    + state: the concern's ``snapshot.Snapshot`` holding ``path`` among its ``secret_paths``
      (its owner and mode are read from it)

    The content is uploaded, never passed on a command line, and no diff is shown.
    Always give this operation a ``name=`` so pyinfra does not log its arguments.

    **Example:**

    .. code:: python

        passwords.password_file(
            name="Store the Jupyter password hash",
            path="/etc/jupyter/password_hash",
            password=os.environ["JUPYTER_PASSWORD"],
            group="jupyter",
            state=state,
        )
    """
    owner = stored_owner(path, state)
    current = stored_content(path) if owner else None
    wanted = desired_line(password_hash, password, current, htpasswd_user)
    yield from store_secret(
        path,
        None if wanted is None else file_content(wanted),
        owner,
        group,
        "640",
        unchanged=f"{path} already holds the hash of this password",
    )


def store_secret(path: str, content: str | None, owner: str | None, group: str, mode: str, unchanged: str):
    """
    The commands that leave a secret file ``path`` as root:``group`` ``mode``: ``content``
    (None: the stored content is right) uploaded into a temporary file created with that
    owner and mode, then moved into place (never on a command line, never diffed); else only
    the owner and mode mended; else a no-op saying ``unchanged``. ``owner`` is what
    ``stored_owner`` says.
    """
    q_path, q_temp, q_owner = shlex.quote(path), shlex.quote(f"{path}.pyinfra-tmp"), shlex.quote(f"root:{group}")
    if content is not None:
        yield StringCommand(f"install -m {mode} -o root -g {shlex.quote(group)} /dev/null {q_temp}")
        yield FileUploadCommand(StringIO(content), f"{path}.pyinfra-tmp")
        yield StringCommand(f"chown {q_owner} {q_temp} && chmod {mode} {q_temp} && mv {q_temp} {q_path}")
    elif owner != f"root:{group}:{mode}":
        yield StringCommand(f"chown {q_owner} {q_path} && chmod {mode} {q_path}")
    else:
        host.noop(unchanged)


@snapshot.claiming("path")
@operation()
def secret_file(path: str, content: str, state: snapshot.Snapshot):
    """
    A file only root can read, holding a secret (a password, a key, credentials).

    + path: remote file to write (its directory must exist)
    + content: what the file holds
    + state: the concern's ``snapshot.Snapshot`` holding ``path`` among its ``secret_paths``
      (its owner and mode are read from it)

    The content is compared with the stored file in memory (downloaded, never printed),
    uploaded to a root-only temporary file and moved into place: never on a command line,
    never diffed. Always give this operation a ``name=`` so pyinfra does not log its arguments.

    **Example:**

    .. code:: python

        passwords.secret_file(name="Backup password (never shown)", path=backups.PASSWORD_FILE,
                              content=os.environ["JUPYTER_BACKUP_PASSWORD"], state=state)
    """
    owner = stored_owner(path, state)
    current = stored_content(path) if owner else None
    yield from store_secret(
        path, None if current == content else content, owner, "root", "600", unchanged=f"{path} is up to date"
    )


def password_from_environment(variable: str = settings.PASSWORD_ENV) -> str | None:
    return os.environ.get(variable) or None
