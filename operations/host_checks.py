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

import shlex

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand, deploy, operation

from . import apache, jupyter, settings

APACHE_MARK = "--- apache version ---"


class HostChecks(FactBase):
    """
    Returns ``{"account": AccountOrigin, "apache": ApacheVersion}`` for ``user``, read in one command.
    """

    @staticmethod
    def default():
        return {"account": None, "apache": None}

    def command(self, user):
        return (
            f"{jupyter.AccountOrigin().command(user)}; echo {shlex.quote(APACHE_MARK)}; "
            f"{apache.ApacheVersion().command()}"
        )

    def process(self, output):
        lines = list(output)
        mark = lines.index(APACHE_MARK) if APACHE_MARK in lines else len(lines)
        return {
            "account": jupyter.AccountOrigin().process(lines[:mark]),
            "apache": apache.ApacheVersion().process(lines[mark + 1 :]),
        }


@operation()
def suitable(user: str):
    """
    Fail the host, before anything changes on it, when the notebook account or Apache rule
    the deploy out.

    + user: the notebook account (setting ``jupyter_user``)

    **Example:**

    .. code:: python

        host_checks.suitable(name="Host checks", user="jupyter")
    """
    state = host.get_fact(HostChecks, user=user)
    problems = []
    for check in (
        lambda: jupyter.check_account(host.name, user, state["account"]),
        lambda: apache.check_version(host.name, state["apache"]),
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
    suitable(name="The notebook account and Apache's version allow the deploy", user=host.data.jupyter_user)
