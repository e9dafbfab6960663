"""
The Jupyter login password: hashed on the control machine, stored in its own file.

The plaintext never leaves the control machine, and the hash itself never appears
in pyinfra's output, not even with ``-vvv`` or ``--diff``: the fact below reads only
the hash's *parameters and salt* plus the file's sha256. With those the control
machine recomputes the hash of the password it has; when the sha256 matches, the
stored hash already verifies the password and nothing changes. A re-run with the
same password is therefore a no-op, and a new password gets a fresh random salt.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from io import StringIO

from passlib.hash import argon2, bcrypt
from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation

from . import settings

# The parameters of Jupyter's own `jupyter_server.auth.passwd()`.
ARGON2_PARAMS = dict(type="ID", memory_cost=10240, time_cost=10, parallelism=8)
_ARGON2_PARAMS_SALT = re.compile(r"^argon2:\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)$")
# bcrypt for Apache's htpasswd ("$2y$"); Apache caches checked logins (mod_authn_socache),
# so the cost is paid once per login, not on every request.
BCRYPT_ROUNDS = 10
_BCRYPT_PARAMS_SALT = re.compile(r"^([^:]+):\$2y\$(\d\d)\$([./A-Za-z0-9]{22})$")

# sed patterns whose one group is a stored line *without its digest*: what the fact reads.
ARGON2_PATTERN = r"^\(argon2:\$argon2id\$[^$]*\$[^$]*\$[^$]*\)\$.*$"
HTPASSWD_PATTERN = r"^\([^:]*:\$2y\$[0-9][0-9]\$.\{22\}\).\{31\}$"


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


def rehash_with(params_salt: str, password: str) -> str | None:
    """The stored line ``password`` would give with the parameters and salt already stored."""
    match = _ARGON2_PARAMS_SALT.match(params_salt or "")
    if match:
        memory, time, parallel, salt_b64 = match.groups()
        # argon2's PHC strings use standard base64 without padding.
        salt = base64.b64decode(salt_b64 + "=" * (-len(salt_b64) % 4))
        params = dict(type="ID", memory_cost=int(memory), time_cost=int(time), parallelism=int(parallel))
        return hash_password(password, salt=salt, params=params)
    match = _BCRYPT_PARAMS_SALT.match(params_salt or "")
    if match:
        user, rounds, salt = match.groups()
        return htpasswd_line(user, password, salt=salt, rounds=int(rounds))
    return None


class PasswordHashFile(FactBase):
    """
    Returns ``None`` when the file does not exist, else a dict: ``sha256`` of the file,
    ``owner`` (``user:group:mode``) and ``params_salt``: what ``pattern`` (a sed regex
    with one group) keeps of the stored line, which is everything but the digest
    (empty when the line does not match). The digest is never read.
    """

    def command(self, path, pattern=ARGON2_PATTERN):
        return (
            f"if [ -f {path} ]; then echo sha256=$(sha256sum {path} | cut -d' ' -f1); "
            f"echo owner=$(stat -c '%U:%G:%a' {path}); "
            f"sed -n -e 's/{pattern}/params=\\1/p' {path} | head -n 1; fi"
        )

    def process(self, output):
        values = dict(line.strip().split("=", 1) for line in output if "=" in line)
        if "sha256" not in values:
            return None
        return {"sha256": values["sha256"], "owner": values.get("owner", ""), "params_salt": values.get("params", "")}


def desired_line(password_hash: str | None, password: str | None, current: dict | None,
                 htpasswd_user: str | None = None) -> str | None:
    """
    The line to store, or ``None`` when the stored one already verifies the password.

    + password_hash: a ready hash (host data ``jupyter_password_hash``); wins over ``password``
    + password: the plaintext from the control machine's environment
    + current: the ``PasswordHashFile`` fact of the remote file
    + htpasswd_user: make an htpasswd line for this user instead of a Jupyter hash
    """
    def matches(candidate):
        return bool(current) and hashlib.sha256(file_content(candidate).encode()).hexdigest() == current["sha256"]

    if password_hash:
        return None if matches(password_hash) else password_hash
    same_salt = rehash_with(current["params_salt"], password) if current else None
    if same_salt and matches(same_salt):
        return None
    # A new password (or user, or a file in another format) gets a fresh random salt.
    if htpasswd_user:
        return htpasswd_line(htpasswd_user, password)
    return hash_password(password)


@operation()
def password_file(path: str, password_hash: str | None = None, password: str | None = None, group: str = "root",
                  htpasswd_user: str | None = None):
    """
    Store a password hash in its own file, readable by root and ``group``.

    + path: remote file to write
    + password_hash: an ``argon2:`` hash to store as it is
    + password: a plaintext password, hashed here; the stored hash is kept when it
      already verifies this password (so re-runs change nothing)
    + group: group allowed to read the file (the Jupyter user's, or Apache's)
    + htpasswd_user: write an Apache htpasswd line (bcrypt) for this user instead of
      a Jupyter ``argon2:`` hash

    The content is uploaded, never passed on a command line, and no diff is shown.
    Always give this operation a ``name=`` so pyinfra does not log its arguments.

    **Example:**

    .. code:: python

        passwords.password_file(
            name="Store the Jupyter password hash",
            path="/etc/jupyter/password_hash",
            password=os.environ["JUPYTER_PASSWORD"],
            group="jupyter",
        )
    """
    pattern = HTPASSWD_PATTERN if htpasswd_user else ARGON2_PATTERN
    current = host.get_fact(PasswordHashFile, path=path, pattern=pattern)
    wanted = desired_line(password_hash, password, current, htpasswd_user)
    if wanted is not None:
        temp = f"{path}.pyinfra-tmp"
        yield StringCommand(f"install -m 640 -o root -g {group} /dev/null {temp}")
        yield FileUploadCommand(StringIO(file_content(wanted)), temp)
        yield StringCommand(f"chown root:{group} {temp} && chmod 640 {temp} && mv {temp} {path}")
    elif current["owner"] != f"root:{group}:640":
        yield StringCommand(f"chown root:{group} {path} && chmod 640 {path}")
    else:
        host.noop(f"{path} already holds the hash of this password")


def password_from_environment(variable: str = settings.PASSWORD_ENV) -> str | None:
    return os.environ.get(variable) or None
