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
And ``pop_global_arguments`` looks each of the 30-odd global arguments up in the host's data,
walking its six layers (merging the host's groups' data anew each time): 2,500 lookups per
host and about a third of planning. ``global_arguments`` reads the four layers the inventory
gives (fixed for the run) once per host, and the two a run changes (the host's override data,
the current ``@deploy``'s data) on every call, in pyinfra's order.

Each replacement is installed only where pyinfra looks the function up, and only when the
function it replaces is exactly pyinfra 3.10's (the sha256 of its source): any other pyinfra
is left alone, said once at debug level. ``docs/upstream/`` holds the change as a patch for
pyinfra itself; this module goes when pyinfra ships it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib
import inspect
import logging
import sys

import pyinfra
import pyinfra.context

# The modules themselves (``pyinfra.api`` hands on a decorator named ``operation``).
arguments = importlib.import_module("pyinfra.api.arguments")
facts = importlib.import_module("pyinfra.api.facts")
pyinfra_deploy = importlib.import_module("pyinfra.api.deploy")
pyinfra_host = importlib.import_module("pyinfra.api.host")
pyinfra_operation = importlib.import_module("pyinfra.api.operation")
util = importlib.import_module("pyinfra.api.util")

log = logging.getLogger(__name__)

# sha256 of the source of each function replaced, as pyinfra 3.10.0 has it.
ORDER_SOURCE_SHA256 = "f4807f61585570e091fd453c7552d9e2b49329555f07f395a8e8f1d2a398a0b2"
ARGUMENTS_SOURCE_SHA256 = "f7afbc472d78c5d2f0bb282994175647651e888543da001968d903cc4a26a5a1"
# pop_global_arguments, and the two functions that make the host data's layers it relies on.
POP_SOURCE_SHA256 = {
    "pop_global_arguments": "a12a311539ff5068152b1c9c4578d77a8a893239a570f912768050a623069faf",
    "HostData.__getattr__": "87152f64f2a65e537473f169b0cfa4e0c39547ee4054d73bad6bbf97af313433",
    "Host.__init__": "bea8499369a36e30666b7f01549bca3dcdcbc2d0e10fbb75c67571157ae9d822",
}


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
_original_pop_global_arguments = arguments.pop_global_arguments
# Where a host keeps its inventory layers' global arguments (made at its first lookup).
_INVENTORY_DEFAULTS = "_jupyter_deploy_global_argument_defaults"


def _inventory_defaults(host) -> dict | None:
    """The global arguments the host's inventory layers set (override, host, groups, global
    data: pyinfra's order, the first that has a key wins), read once; ``None`` when the host's
    data is not laid out as pyinfra 3.10 makes it."""
    if _INVENTORY_DEFAULTS not in host.__dict__:
        datas = host.data.datas
        laid_out = len(datas) == 6 and datas[0] is host.data.override_datas and datas[5] == host.get_deploy_data
        found: dict | None = None
        if laid_out:
            found = {}
            for data in (layer() for layer in datas[1:5]):
                for key, _ in all_global_arguments():
                    if key in data and key not in found:
                        found[key] = data[key]
        host.__dict__[_INVENTORY_DEFAULTS] = found
    return host.__dict__[_INVENTORY_DEFAULTS]


def _host_defaults(host):
    """A function of a key giving ``getattr(host.data, key, default_sentinel)``, from the
    host's layers in pyinfra's order (the two a run changes as they are now)."""
    # pyinfra hands on its context object (one for every host) as often as the host itself.
    host = host._get_module() if isinstance(host, pyinfra.context.ContextObject) else host
    inventory = _inventory_defaults(host)
    if inventory is None:
        return lambda key: getattr(host.data, key, arguments.default_sentinel)
    layers = (host.data.override_datas, inventory, host.get_deploy_data())

    def lookup(key: str):
        for data in layers:
            if key in data:
                return copy.copy(data[key])
        return arguments.default_sentinel

    return lookup


def pop_global_arguments(state, host, kwargs):
    """What ``pyinfra.api.arguments.pop_global_arguments`` returns (and pops), with the host's
    data looked up through ``_host_defaults``."""
    config = state.config
    if arguments.ctx_config.isset():
        config = arguments.ctx_config.get()
        assert config is not None

    meta_kwargs = host.current_deploy_kwargs or {}
    host_default = _host_defaults(host)
    found_arguments: dict = {}
    found_keys: list[str] = []
    for key, type_ in all_global_arguments():
        argument_meta = arguments.all_argument_meta[key]
        handler = argument_meta.handler
        default = argument_meta.default(config)
        from_host = host_default(key)
        if from_host is not arguments.default_sentinel:
            default = from_host
        if key in kwargs:
            found_keys.append(key)
            value = kwargs.pop(key)
        else:
            value = meta_kwargs.get(key, default)
        if handler:
            value = handler(config, value)
        if value != default:
            arguments.raise_if_bad_type(value, type_, arguments.ArgumentTypeError, f"Invalid argument `{key}`:")
        found_arguments[key] = value
    return found_arguments, found_keys


# The modules that call pop_global_arguments by their own name for it.
_POP_CALLERS = (arguments, pyinfra_deploy, pyinfra_operation, facts)


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
    sources = {
        "pop_global_arguments": _original_pop_global_arguments,
        "HostData.__getattr__": pyinfra_host.HostData.__getattr__,
        "Host.__init__": pyinfra_host.Host.__init__,
    }
    if arguments.pop_global_arguments is pop_global_arguments:
        installed.append("pop_global_arguments")
    elif {name: _source_sha256(function) for name, function in sources.items()} == POP_SOURCE_SHA256:
        for module in _POP_CALLERS:
            module.pop_global_arguments = pop_global_arguments
        installed.append("pop_global_arguments")
    else:
        log.debug("pyinfra's pop_global_arguments or host data is not 3.10's: left as it is")
    return installed


def uninstall() -> None:
    """pyinfra's own functions back (the equivalence test compares both)."""
    pyinfra_operation.get_operation_order_from_stack = util.get_operation_order_from_stack
    arguments.all_global_arguments = _original_all_global_arguments
    facts.all_global_arguments = _original_all_global_arguments
    for module in _POP_CALLERS:
        module.pop_global_arguments = _original_pop_global_arguments
