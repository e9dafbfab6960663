"""
The deploy's settings: the one definition of each (``registry``: default, meaning, check),
the checks of single values (``checks``, ``addresses``, ``paths``), the rules between them
(``rules``), and here the engine that applies them all to a host.

``validate(host)`` runs in ``deploy.py`` (and ``restore.py``, ``uninstall.py``) before any
operation is added, so a bad value stops the whole run during pyinfra's prepare phase: no
host is changed, and the run prints one line naming the host, each setting, its value and
what is allowed.
"""

from __future__ import annotations

import difflib
import functools
import os
from typing import Any

import click
from pyinfra import logger
from pyinfra.api.exceptions import PyinfraError
from pyinfra_cli.exceptions import CliError

from . import rules
from .addresses import is_hostname_or_ip, is_ip, is_ipv6, is_network
from .checks import KEEP_KINDS, size_bytes
from .environ import (
    BACKUP_PASSWORD_ENV,
    BASIC_AUTH_PASSWORD_ENV,
    OIDC_CLIENT_SECRET_ENV,
    PASSWORD_ENV,
    S3_CREDENTIAL_ENVS,
)
from .paths import check_abs_path, home_of, sftp_parts, shown_repository
from .registry import (
    ANACONDA_SHA256,
    ANACONDA_URL,
    BY_NAME,
    DEFAULTS,
    GROUPS,
    LETSENCRYPT_DIRECTORY,
    SETTINGS,
    Setting,
    defaults,
)

__all__ = [
    "ANACONDA_SHA256",
    "ANACONDA_URL",
    "BACKUP_PASSWORD_ENV",
    "BASIC_AUTH_PASSWORD_ENV",
    "BY_NAME",
    "DEFAULTS",
    "GROUPS",
    "KEEP_KINDS",
    "LETSENCRYPT_DIRECTORY",
    "OIDC_CLIENT_SECRET_ENV",
    "PASSWORD_ENV",
    "S3_CREDENTIAL_ENVS",
    "SETTINGS",
    "Setting",
    "SettingsError",
    "check_abs_path",
    "check_values",
    "defaults",
    "home_of",
    "is_hostname_or_ip",
    "is_ip",
    "is_ipv6",
    "is_network",
    "server_name",
    "sftp_parts",
    "shown_repository",
    "size_bytes",
    "unknown_names",
    "validate",
]


class SettingsError(PyinfraError, CliError):
    """A host's settings are refused; the message names the host, setting, value and what is allowed.

    A ``CliError`` too: pyinfra's command line then prints the one line as it is, not as an
    error at a line of this package."""

    def show(self, file=None):
        logger.warning(f"--> {click.style('Refused', 'red', bold=True)}: {self}")


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
        f"unknown setting {key!r} given with --data: this version has no such setting (see docs/settings.md)"
        for key in unknown_names(command_line_keys)
        if not _close_match(key)
    ]


_warned: set[str] = set()


def _warn_unknown(keys) -> None:
    # Inventory and group data may hold the user's own values (helpers, other tools'
    # settings): a warning, once per name and run, not an error.
    for key in unknown_names(keys):
        if key not in _warned and not _close_match(key):
            _warned.add(key)
            logger.warning(f"host data {key!r} is not a setting of this deploy and is ignored (see docs/settings.md)")


def check_values(
    values: dict[str, Any], environ=None, script: str = "deploy", host_name: str | None = None
) -> list[str]:
    """Every problem with one host's data, as one line each (empty when all is well).

    + script: ``deploy`` needs the passwords and keys from the environment; ``restore`` and
      ``uninstall`` use what the host has (``restore`` needs a backup repository)
    + host_name: the inventory name, for the rules that need it (``server_name``'s default)
    """
    run = rules.Run(values, os.environ if environ is None else environ, script, host_name)
    return _typo_errors(values.keys()) + _errors_for(values) + rules.broken(run)


def validate(host, script: str = "deploy") -> None:
    """Raise ``SettingsError`` naming the host and every bad setting (``script``: as in ``check_values``)."""
    values = host.data.dict()
    inventory = getattr(host, "inventory", None)
    command_line = set(inventory.get_override_data()) if inventory is not None else set()
    errors = _unknown_errors(command_line) + check_values(values, script=script, host_name=host.name)
    _warn_unknown(set(values) - command_line)
    if errors:
        raise SettingsError(f"{host.name}: " + "; ".join(errors))


def server_name(host) -> str:
    return host.data.get("server_name") or host.name
