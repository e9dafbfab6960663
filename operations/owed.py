"""
Work an interrupted earlier run left owed (a restart, a reload): when to look for it.

A run killed between writing a file and restarting (or reloading) what reads it leaves
that file unapplied; the next run must still restart. Finding out is a read of the host
(the Jupyter concern computes it from its snapshot). With ``-y`` (how users and CI run) it
is read when the run executes, and only when no change of this run already calls for the
restart: nothing reaches the host while planning. A run without ``-y`` (``--dry``, or one
that asks first) reads facts while planning anyway; there it is read then, so that the owed
restart is listed as a certain change, not a conditional one.
"""

from __future__ import annotations

from collections.abc import Callable

from pyinfra import host
from pyinfra.operations.util import any_changed


def gate(read: Callable[[], object], changes) -> dict:
    """
    The global arguments for an operation owed when any of ``changes`` changed or ``read()``
    (something the host was asked: a fact, or the concern's snapshot) says so: ``{}`` (certainly owed),
    ``{"_if": ...}`` (owed if, decided when the run executes).

    + read: returns something true when the operation is owed whatever this run changes
    + changes: the operations of this run that call for it
    """
    changed = any_changed(*[op for op in changes if op is not None])
    if host.state.should_check_for_changes():
        return {} if read() else {"_if": changed}
    return {"_if": lambda: changed() or bool(read())}
