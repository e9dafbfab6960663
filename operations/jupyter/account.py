"""
The notebook account: a system user with no login shell, made by the deploy and recognised
as its own by a later run (its GECOS comment), and the host check that refuses an account
that exists and is not the deploy's (www-data, a person's login).
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import StringCommand, operation

from .. import settings, snapshot
from . import layout

NOLOGIN = "/usr/sbin/nologin"
# The GECOS comment of the account this deploy creates: how a later run knows it is ours.
ACCOUNT_COMMENT = "Jupyter Notebook (jupyter-apache-deploy)"


class Account(snapshot.Probe):
    """``user``'s passwd entry as its seven fields (``None``: no such account)."""

    def __init__(self, user: str):
        self.user = user

    def command(self):
        return f"getent passwd {shlex.quote(self.user)}"

    def parse(self, lines):
        return next((line.split(":") for line in lines if line.count(":") == 6), None)


@operation()
def account(user: str, comment: str, home: str, state: snapshot.Snapshot):
    """
    A system account with no login shell, decided from the snapshot's ``account`` probe
    (``getent passwd USER``).

    + user: the account name
    + comment: its GECOS comment (how later runs know the deploy made it)
    + home: its home directory, created with the account

    **Example:**

    .. code:: python

        account(name="System user", user="jupyter", comment=ACCOUNT_COMMENT,
                        home="/var/lib/jupyter", state=state)
    """
    q = shlex.quote
    entry = state.probe("account")
    if entry is None:
        yield StringCommand(
            f"useradd --system --comment {q(comment)} --home-dir {q(home)} --create-home --shell {NOLOGIN} {q(user)}"
        )
        return
    if (entry[4], entry[5], entry[6]) == (comment, home, NOLOGIN):
        host.noop(f"account {user} exists")
        return
    yield StringCommand(f"usermod --comment {q(comment)} --home {q(home)} --shell {NOLOGIN} {q(user)}")


class AccountOrigin(snapshot.Probe):
    """
    ``None`` when ``user`` does not exist, else a dict: ``comment`` and ``home`` from passwd,
    and ``config_group``, the group owning the deploy's config directory (how hosts deployed
    before the comment existed are recognised).
    """

    def __init__(self, user: str):
        self.user = user

    def command(self):
        q = shlex.quote
        config_group = f"stat -c 'config-group=%G' {q(layout.CONFIG_DIR)} 2>/dev/null || true"
        return f"getent passwd {q(self.user)} || true; {config_group}"

    def parse(self, output):
        account, config_group = None, None
        for line in output:
            if line.startswith("config-group="):
                config_group = line.split("=", 1)[1].strip()
            elif line.count(":") == 6:
                fields = line.rstrip("\n").split(":")
                account = {"comment": fields[4], "home": fields[5]}
        return None if account is None else {**account, "config_group": config_group}


def made_by_deploy(user: str, origin: dict) -> bool:
    """Whether the existing account ``AccountOrigin`` describes is this deploy's own."""
    # Made by a version of this deploy that set no comment: its home and the config's group.
    earlier_version = origin["home"] == settings.home_of(user) and origin["config_group"] == user
    return origin["comment"] == ACCOUNT_COMMENT or earlier_version


def check_account(host_name: str, user: str, origin: dict | None) -> None:
    """Refuse to run Jupyter as an account that exists and was not made by this deploy."""
    if origin is None or made_by_deploy(user, origin):
        return
    raise settings.SettingsError(
        f"{host_name}: setting jupyter_user = {user!r} is not allowed: must be an account this deploy creates; "
        f"{user!r} already exists on this host (home {origin['home']}) and was not created by it. "
        "Choose another name, e.g. 'jupyter'",
    )


def install_account(state: snapshot.Snapshot, user: str, notebook_dir: str, home: str) -> None:
    """The account, its notebook directory and its home (the account's own, 0750)."""
    account(name=f"System user {user} (no login shell)", user=user, comment=ACCOUNT_COMMENT, home=home, state=state)
    owned_by_user = {"user": user, "group": user, "mode": "750", "state": state}
    snapshot.directory(name="Notebook directory", path=notebook_dir, record_as="notebook_dir", **owned_by_user)
    snapshot.directory(name="Jupyter's home", path=home, **owned_by_user)
