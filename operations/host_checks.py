"""
What must be true of a host before the deploy changes anything on it, checked by the run's
first operation in one command (so planning, with ``-y``, sends nothing to the host):

- the notebook account does not exist, or this deploy made it (``jupyter.check_account``):
  an existing account (www-data, a person's login) would own the notebooks;
- Apache, installed or about to be (apt's candidate), is 2.4.47 or newer
  (``apache.check_version``): older ones need the CVE-2023-25690 proxy pattern.

A host that fails a check stops there, with the reason, and nothing on it has changed;
the other hosts of the run go on.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy, operation

from . import apache, jupyter, settings, snapshot


def checks_snapshot(user: str) -> snapshot.Snapshot:
    """What the checks read, in one command: the account (``jupyter.AccountOrigin``) and
    Apache's version (``apache.ApacheVersion``), as two probes."""
    return snapshot.Snapshot(probes={"account": jupyter.AccountOrigin(user), "apache": apache.ApacheVersion()})


@operation()
def suitable(user: str, state: snapshot.Snapshot):
    """
    Fail the host, before anything changes on it, when the notebook account or Apache rule
    the deploy out.

    + user: the notebook account (setting ``jupyter_user``)
    + state: ``checks_snapshot(user)``

    **Example:**

    .. code:: python

        host_checks.suitable(name="Host checks", user="jupyter", state=host_checks.checks_snapshot("jupyter"))
    """
    account = state.probe("account")
    version = state.probe("apache")
    problems = []
    for check in (
        lambda: jupyter.check_account(host.name, user, account),
        lambda: apache.check_version(host.name, version),
    ):
        try:
            check()
        except settings.SettingsError as error:
            problems.append(str(error))
    if not problems:
        host.noop(f"account {user} is free or the deploy's own; Apache is new enough")
        return
    yield StringCommand("printf", QuoteString("%s\\n"), *(QuoteString(p) for p in problems), ">&2;", "exit", "1")


@deploy("Host checks", data_defaults=settings.defaults("jupyter_user"))
def check_host():
    """Stop this host, before any change, when it cannot take the deploy (see the module's docstring)."""
    user = host.data.jupyter_user
    suitable(name="The notebook account and Apache's version allow the deploy", user=user, state=checks_snapshot(user))
