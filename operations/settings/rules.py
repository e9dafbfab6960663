"""
The rules between settings (and between a setting and the control machine's environment):
each is one function of what it needs, returning the lines of refusal it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import layout, people
from .addresses import is_dns_name, is_hostname_or_ip
from .checks import check_basic_auth_user
from .environ import (
    BACKUP_PASSWORD_ENV,
    BASIC_AUTH_PASSWORD_ENV,
    OIDC_CLIENT_SECRET_ENV,
    PASSWORD_ENV,
    S3_CREDENTIAL_ENVS,
)
from .paths import check_abs_path, check_backup_repository, check_restore_to, home_of, overlap, shown_repository
from .registry import BY_NAME, DEFAULTS


@dataclass(frozen=True)
class Run:
    """What the rules see: one host's settings (defaults filled in), the environment, which
    script runs (``deploy``, ``restore`` or ``uninstall``) and the host's inventory name."""

    values: dict[str, Any]
    environ: Any
    script: str = "deploy"
    host_name: str | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values.get(name, DEFAULTS[name])

    @property
    def secrets(self) -> bool:
        """A deploy needs the passwords and keys from the environment; restore.py and
        uninstall.py use what the host already has."""
        return self.script == "deploy"


def password_given(run: Run) -> list[str]:
    # With auth 'oidc' Jupyter has no password: people sign in at the provider. With
    # per_person_servers each person has their own (hub_admin_password_hashes for the admins).
    needed = run["auth"] == "password" and not run["per_person_servers"] and run.secrets
    if needed and run["jupyter_password_hash"] is None and not run.environ.get(PASSWORD_ENV):
        return [
            f"setting jupyter_password_hash is not set and {PASSWORD_ENV} is empty: "
            f"give an argon2 hash or export {PASSWORD_ENV} on the control machine"
        ]
    return []


def basic_auth_password_given(run: Run) -> list[str]:
    user = run["basic_auth_user"]
    if run.secrets and user and not check_basic_auth_user(user) and not run.environ.get(BASIC_AUTH_PASSWORD_ENV):
        return [
            f"setting basic_auth_user = {user!r} needs a password: "
            f"export {BASIC_AUTH_PASSWORD_ENV} on the control machine (or set basic_auth_user to None)"
        ]
    return []


def oidc_complete(run: Run) -> list[str]:
    if run["auth"] != "oidc":
        return []
    errors = [
        f"setting auth = 'oidc' needs setting {name} ({what})"
        for name, what in (
            ("oidc_issuer", "the provider's https:// issuer URL"),
            ("oidc_client_id", "the client ID registered at the provider"),
            ("oidc_allowed", "a non-empty list of e-mail addresses and 'group:NAME' values"),
        )
        if not run[name]
    ]
    if run.secrets and not run.environ.get(OIDC_CLIENT_SECRET_ENV):
        errors.append(
            f"setting auth = 'oidc' needs the client secret: export {OIDC_CLIENT_SECRET_ENV} on the control machine"
        )
    if run["basic_auth_user"]:
        # Apache takes one AuthType per path: Basic auth and OpenID Connect cannot both guard it.
        errors.append(
            f"setting basic_auth_user = {run['basic_auth_user']!r} is not allowed with auth = 'oidc': "
            "set it to None (the provider does the sign-in)"
        )
    return errors


def notebooks_apart_from_the_prefix(run: Run) -> list[str]:
    # The notebook directory is writable by notebook code; the prefix holds what the server imports.
    notebook_dir, prefix = run["notebook_dir"], run["conda_prefix"]
    if not check_abs_path(notebook_dir) and not check_abs_path(prefix) and overlap(notebook_dir, prefix):
        return [
            f"setting notebook_dir = {notebook_dir!r} is not allowed: must not be conda_prefix ({prefix!r}), "
            "inside it, or contain it"
        ]
    return []


def backup_repository_usable(run: Run) -> list[str]:
    repository, notebook_dir = run["backup_repository"], run["notebook_dir"]
    if not repository or check_backup_repository(repository):
        return []
    shown, home, errors = shown_repository(repository), home_of(run["jupyter_user"]), []
    if run.secrets and not run.environ.get(BACKUP_PASSWORD_ENV):
        errors.append(
            f"setting backup_repository = {shown!r} needs a password: export {BACKUP_PASSWORD_ENV} "
            "on the control machine (the repository's key; keep it somewhere safe, the backups are "
            "unreadable without it)"
        )
    if run.secrets and repository.startswith("s3:") and not all(run.environ.get(n) for n in S3_CREDENTIAL_ENVS):
        errors.append(
            f"setting backup_repository = {shown!r} needs {' and '.join(S3_CREDENTIAL_ENVS)} "
            "exported on the control machine"
        )
    if (
        repository.startswith("/")
        and not check_abs_path(notebook_dir)
        and (overlap(repository, notebook_dir) or overlap(repository, home))
    ):
        errors.append(
            f"setting backup_repository = {shown!r} is not allowed: must not be inside or contain "
            f"what it backs up (notebook_dir {notebook_dir!r}, the Jupyter home {home!r})"
        )
    return errors


def restore_has_a_repository(run: Run) -> list[str]:
    if run.script == "restore" and not run["backup_repository"]:
        return [
            "setting backup_repository is None: this host has no backups to restore from "
            "(set it as for the deploy that made them)"
        ]
    return []


def restore_outside_the_users_tree(run: Run) -> list[str]:
    # The notebook user (or a person) can change anything there while root restores into it.
    target, notebook_dir, home = run["restore_to"], run["notebook_dir"], home_of(run["jupyter_user"])
    if not target or check_restore_to(target) or check_abs_path(notebook_dir):
        return []
    if overlap(target, notebook_dir) or overlap(target, home):
        return [
            f"setting restore_to = {target!r} is not allowed: must not be inside or contain notebook_dir "
            f"({notebook_dir!r}) or the Jupyter home ({home!r}), which the notebook user can write: restore "
            "in place (restore_to = None, done as the notebook user) or into a directory of its own"
        ]
    shared = run["shared_data_dir"]
    if run["per_person_servers"]:
        for other, what in ((people.HOMES, "the people's homes"), (shared, "shared_data_dir")):
            if other and (other == people.HOMES or not check_abs_path(other)) and overlap(target, other):
                return [
                    f"setting restore_to = {target!r} is not allowed: must not be inside or contain {what} "
                    f"({other!r}), which people can write: restore into a directory of its own"
                ]
    return []


def restore_person_fits_the_mode(run: Run) -> list[str]:
    """With per_person_servers, restore.py restores one person's home in place, or anything
    beside; without it there is nobody to name."""
    if run.script != "restore":
        return []
    person = run["restore_person"]
    if person is not None and not run["per_person_servers"]:
        return [
            f"setting restore_person = {person!r} needs per_person_servers = True: this host has one "
            "notebook user (set restore_person to None)"
        ]
    if person is None and run["per_person_servers"] and not run["restore_to"]:
        return [
            "setting restore_person is None: with per_person_servers, restore.py restores one person's home in "
            "place (restore_person = their address) or the whole snapshot beside (restore_to = a new directory)"
        ]
    if person is not None and not BY_NAME["restore_person"].check(person):
        try:
            people.normalized(person)
        except people.NotAnAddress:
            return [
                f"setting restore_person = {person!r} cannot name a person's account: an address of ASCII "
                "letters, digits and ._%+'- before the '@'"
            ]
    return []


def server_name_known(run: Run) -> list[str]:
    if run.host_name is not None and run["server_name"] is None and not is_hostname_or_ip(run.host_name):
        return [
            f"setting server_name is not set and the inventory name {run.host_name!r} is not a "
            "hostname or IPv4 address: set server_name to the host's public DNS name"
        ]
    return []


def letsencrypt_has_a_dns_name(run: Run) -> list[str]:
    name = run["server_name"] or run.host_name
    if run.host_name is not None and run["tls_mode"] == "letsencrypt" and not is_dns_name(name):
        return [
            f"setting tls_mode = 'letsencrypt' needs a DNS name, not {name!r}: "
            "set server_name to the public name that points at this host"
        ]
    return []


def hub_admins_can_sign_in(run: Run) -> list[str]:
    """With per-person passwords, hub_admins approve everyone else: each needs a first password
    (a hash), so nobody can sign up under an admin's name first."""
    hashes, admins = run["hub_admin_password_hashes"], run["hub_admins"]
    if BY_NAME["hub_admin_password_hashes"].check(hashes) or BY_NAME["hub_admins"].check(admins):
        return []  # refused as a value already
    if not (run["per_person_servers"] and run["auth"] == "password"):
        if hashes:
            return [
                "setting hub_admin_password_hashes is only used with per_person_servers = True and "
                "auth = 'password': set it to {}"
            ]
        return []
    if not admins:
        return [
            "setting hub_admins = [] is not allowed with per_person_servers = True and auth = 'password': "
            "name at least one address; hub admins approve the people who sign up"
        ]
    wanted = {a.strip().lower() for a in admins}
    given = {a.strip().lower() for a in hashes}
    errors = [
        f"setting hub_admin_password_hashes has no hash for hub_admins address {a!r}: give each admin's "
        "first password as a hash (see docs/per-person.md, 'Passwords')"
        for a in sorted(wanted - given)
    ]
    errors += [
        f"setting hub_admin_password_hashes: {a!r} is not in hub_admins: only admins get a first password"
        for a in sorted(given - wanted)
    ]
    return errors


def per_person_servers_usable(run: Run) -> list[str]:
    """per_person_servers: who signs in, where homes and shared data go, what ports are free."""
    if not run["per_person_servers"]:
        return []
    errors = []
    if run["collaboration"]:
        errors.append(
            "setting collaboration = True is not allowed with per_person_servers = True: each person has a "
            "server of their own (set collaboration to False)"
        )
    for name in ("oidc_allowed", "hub_admins"):
        if BY_NAME[name].check(run[name]):
            continue  # refused as a value already
        for entry in run[name]:
            if isinstance(entry, str) and not entry.startswith("group:"):
                try:
                    people.normalized(entry)
                except people.NotAnAddress:
                    errors.append(
                        f"setting {name}: {entry!r} cannot name a person's account with per_person_servers = "
                        "True: an address of ASCII letters, digits and ._%+'- before the '@'"
                    )
    shared, port = run["shared_data_dir"], run["jupyter_port"]
    if shared and not check_abs_path(shared):
        for other, what in (
            (run["notebook_dir"], "notebook_dir"),
            (run["conda_prefix"], "conda_prefix"),
            (people.HOMES, "the people's homes"),
        ):
            if (other == people.HOMES or not check_abs_path(other)) and overlap(shared, other):
                errors.append(
                    f"setting shared_data_dir = {shared!r} is not allowed: must not be inside or contain "
                    f"{what} ({other!r})"
                )
    if port in (layout.HUB_PORT, layout.PROXY_API_PORT):
        errors.append(
            f"setting jupyter_port = {port!r} is not allowed with per_person_servers = True: "
            f"{layout.HUB_PORT} and {layout.PROXY_API_PORT} are the hub's and its proxy's own ports"
        )
    return errors


RULES = (
    basic_auth_password_given,
    oidc_complete,
    notebooks_apart_from_the_prefix,
    backup_repository_usable,
    restore_has_a_repository,
    restore_outside_the_users_tree,
    restore_person_fits_the_mode,
    password_given,
    server_name_known,
    letsencrypt_has_a_dns_name,
    per_person_servers_usable,
    hub_admins_can_sign_in,
)


def broken(run: Run) -> list[str]:
    """Every rule ``run`` breaks, one line each."""
    return [line for rule in RULES for line in rule(run)]
