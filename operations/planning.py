"""
pyinfra's planning cost, cut at its cause (pyinfra 3.10).

Planning a run, pyinfra orders each operation of each host by where it was called: the line
numbers of the deploy file and of every frame below it. ``get_operation_order_from_stack`` gets
them with ``inspect.stack()``, which reads every frame's source context and, through
``inspect.getmodule``, scans ``sys.modules`` for each frame of the exec'd deploy file: 57 % of a
run over 50 simulated hosts went there. ``operation_order`` walks the same frames
(``sys._getframe``/``f_back``) and gives the same list, with every quirk of the original: the
frames from the first one of the deploy file on (all of them when the deploy file is not on the
stack), frames under pyinfra's own install directory skipped, and pyinfra's
``current_op_file_number`` first when it runs from its command line. The same goes for
``all_global_arguments``, which evaluates ``typing.get_type_hints`` of a fixed type on every
call of ``pop_global_arguments`` (once per operation and fact per host): its answer is kept.

Each replacement is installed only where pyinfra looks the function up, and only when the
function it replaces is exactly pyinfra 3.10's (the sha256 of its source): any other pyinfra
is left alone, said once at debug level. ``docs/upstream/`` holds the change as a patch for
pyinfra itself; this module goes when pyinfra ships it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import logging
import sys

import pyinfra

# The modules themselves (``pyinfra.api`` hands on a decorator named ``operation``).
arguments = importlib.import_module("pyinfra.api.arguments")
facts = importlib.import_module("pyinfra.api.facts")
pyinfra_operation = importlib.import_module("pyinfra.api.operation")
util = importlib.import_module("pyinfra.api.util")

log = logging.getLogger(__name__)

# sha256 of the source of each function replaced, as pyinfra 3.10.0 has it.
ORDER_SOURCE_SHA256 = "f4807f61585570e091fd453c7552d9e2b49329555f07f395a8e8f1d2a398a0b2"
ARGUMENTS_SOURCE_SHA256 = "f7afbc472d78c5d2f0bb282994175647651e888543da001968d903cc4a26a5a1"


def operation_order(state) -> list[int]:
    """What ``pyinfra.api.util.get_operation_order_from_stack`` returns, from a frame walk."""
    # (file, line) of each frame from the outermost; the walk starts at the caller, as this
    # function's own frame is not under pyinfra's install dir (the original's is, and is skipped).
    frames = []
    frame = sys._getframe(1)
    while frame is not None:
        frames.append((frame.f_code.co_filename, frame.f_lineno))
        frame = frame.f_back
    frames.reverse()

    first = 0
    if state.current_deploy_filename:
        # The first frame of the deploy file, else (where the original's loop ends) the last one.
        files = [filename for filename, _ in frames]
        deploy_file = state.current_deploy_filename
        first = files.index(deploy_file) if deploy_file in files else len(frames) - 1

    line_numbers = [state.current_op_file_number] if pyinfra.is_cli else []
    for filename, line in frames[first:]:
        if filename.startswith(util.PYINFRA_INSTALL_DIR):
            continue
        line_numbers.append(line)
    return line_numbers


@functools.cache
def _global_arguments() -> tuple[tuple[str, type], ...]:
    return tuple(_original_all_global_arguments())


def all_global_arguments() -> list[tuple[str, type]]:
    """What ``pyinfra.api.arguments.all_global_arguments`` returns, worked out once."""
    return list(_global_arguments())


_original_all_global_arguments = arguments.all_global_arguments


def _source_sha256(function) -> str | None:
    try:
        return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()
    except (OSError, TypeError):
        return None


def install() -> list[str]:
    """Put the replacements where pyinfra looks the functions up; returns what was installed."""
    installed = []
    if pyinfra_operation.get_operation_order_from_stack is operation_order:
        installed.append("operation_order")
    elif _source_sha256(util.get_operation_order_from_stack) == ORDER_SOURCE_SHA256:
        pyinfra_operation.get_operation_order_from_stack = operation_order
        installed.append("operation_order")
    else:
        log.debug("pyinfra's get_operation_order_from_stack is not 3.10's: left as it is")
    if arguments.all_global_arguments is all_global_arguments:
        installed.append("all_global_arguments")
    elif _source_sha256(_original_all_global_arguments) == ARGUMENTS_SOURCE_SHA256:
        arguments.all_global_arguments = all_global_arguments
        facts.all_global_arguments = all_global_arguments
        installed.append("all_global_arguments")
    else:
        log.debug("pyinfra's all_global_arguments is not 3.10's: left as it is")
    return installed


def uninstall() -> None:
    """pyinfra's own functions back (the equivalence test compares both)."""
    pyinfra_operation.get_operation_order_from_stack = util.get_operation_order_from_stack
    arguments.all_global_arguments = _original_all_global_arguments
    facts.all_global_arguments = _original_all_global_arguments
