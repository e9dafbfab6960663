"""
Each person's Unix account when every person gets a server of their own
(``per_person_servers``): its name, derived from the address they sign in with.

Plain Python, imported by the deploy (to check and map ``oidc_allowed`` and ``hub_admins``)
and uploaded as it is next to the hub's config, whose sign-in names people with it: one
definition on both sides.

The name is ``jupyter-`` + a readable part of the address's local part + ``-`` + the first 8
hex digits of the sha256 of the whole (lower-cased) address, at most 32 characters (useradd's
limit) and only what Debian's ``adduser`` accepts without ``--allow-bad-names``. The digest
keeps two addresses that read alike (``a.b@x.org`` and ``a-b@x.org``, ``ann@x.org`` and
``ann@y.org``) apart; the account's comment holds the address itself, and an account of that
name with another address in its comment is refused, never shared (``owned_by``). The prefix
keeps every name away from system accounts (``root``, ``www-data``, the single server's
``jupyter``).
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "jupyter-"
# Where their homes are (adduser's default): each 0700, the person's alone.
HOMES = "/home"
# useradd refuses longer names; ps and ls cut at 32 too.
MAX_LENGTH = 32
DIGEST_LENGTH = 8
READABLE_LENGTH = MAX_LENGTH - len(PREFIX) - 1 - DIGEST_LENGTH
# What the comment of a person's account says, before their address.
COMMENT_PREFIX = "Jupyter person (jupyter-apache-deploy) "
# An address as the provider gives it, in the characters institutions use: nothing the
# account's comment cannot hold (':' and ',' separate passwd fields), no space or control.
_ADDRESS = re.compile(r"[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)+")
# Debian's adduser default NAME_REGEX.
VALID_NAME = re.compile(r"[a-z][-a-z0-9_]*")


class NotAnAddress(ValueError):
    """The provider's value for a person is not an e-mail address."""


def normalized(address: str) -> str:
    """The address as the deploy compares it: without surrounding space, lower-case."""
    address = address.strip().lower()
    if not _ADDRESS.fullmatch(address):
        raise NotAnAddress(f"not an e-mail address the deploy takes (ASCII letters, digits, ._%+'-): {address!r}")
    return address


def unix_name(address: str) -> str:
    """The account name of the person who signs in with ``address``."""
    address = normalized(address)
    local = address.rsplit("@", 1)[0]
    readable = re.sub(r"[^a-z0-9]+", "-", local).strip("-")[:READABLE_LENGTH].rstrip("-") or "person"
    digest = hashlib.sha256(address.encode()).hexdigest()[:DIGEST_LENGTH]
    name = f"{PREFIX}{readable}-{digest}"
    assert len(name) <= MAX_LENGTH and VALID_NAME.fullmatch(name), name
    return name


def hub_name(address: str) -> str:
    """The person's name in JupyterHub (its URLs, its admin page): the account name without
    the prefix, which the spawner adds back (``username_template``)."""
    return unix_name(address).removeprefix(PREFIX)


def home(address: str) -> str:
    return f"{HOMES}/{unix_name(address)}"


def comment(address: str) -> str:
    """The comment (GECOS) of the person's account: who it belongs to."""
    return f"{COMMENT_PREFIX}{normalized(address)}"


def owned_by(existing_comment: str, address: str) -> bool:
    """Whether an existing account with the person's name is theirs (its comment names their
    address); anything else (another person, an account the deploy did not make) is refused."""
    return existing_comment == comment(address)
