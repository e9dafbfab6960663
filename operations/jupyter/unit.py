"""
The server's systemd unit, its sandbox and its limits: what runs the server and what confines
it, its kernels and its terminals (rendered from ``templates/``).
"""

from __future__ import annotations

from pyinfra.api import QuoteString, StringCommand

from .. import settings, sign_in, snapshot
from ..render import render
from . import layout

# Ceilings of the unit whatever the settings: see the unit template.
TASKS_MAX = 2048
OOM_SCORE_ADJUST = 800
# The cloud metadata service (Linode, AWS, GCP, Azure...): denied to the unit. Linode's
# (Akamai's Metadata API) answers on all three.
METADATA_ADDRESSES = ("169.254.169.254", "fd00:a9fe:a9fe::1", "fe80::a9fe:a9fe")


def memory_limits(memory_limit: str | None) -> tuple[str | None, str | None]:
    """(MemoryMax, MemoryHigh) for the unit: high is 90 % of max, so reclaim starts first."""
    if memory_limit is None:
        return None, None
    if memory_limit.endswith("%"):
        percent = int(memory_limit[:-1])
        return f"{percent}%", f"{percent * 9 // 10}%"
    return memory_limit, str(settings.size_bytes(memory_limit) * 9 // 10)


def cpu_quota(cores: float | None) -> str | None:
    return None if cores is None else f"{round(cores * 100)}%"


def unit_file(user, prefix, notebook_dir, base_url, port, single_sign_on: bool = False) -> str:
    return render(
        "jupyter.service.j2",
        user=user,
        port=port,
        home=settings.home_of(user),
        prefix=prefix,
        notebook_dir=notebook_dir,
        base_url=base_url,
        config_dir=layout.CONFIG_DIR,
        data_dir=layout.DATA_DIR,
        guard_dir=layout.GUARD_DIR,
        user_kernels=layout.USER_KERNELS,
        limits_dropin=layout.LIMITS_DROPIN,
        sandbox_dropin=layout.SANDBOX_DROPIN,
        proxy_secret=sign_in.PROXY_SECRET if single_sign_on else None,
        credential=sign_in.CREDENTIAL,
    )


def sandbox_dropin(user: str, notebook_dir: str) -> str:
    """The unit's sandbox (a drop-in): what the server, its kernels and terminals, and the
    check of a new distribution (files/conda-switch) run under."""
    return render(
        "jupyter-sandbox.conf.j2",
        user=user,
        home=settings.home_of(user),
        notebook_dir=notebook_dir,
        oom_score_adjust=OOM_SCORE_ADJUST,
        metadata_addresses=METADATA_ADDRESSES,
    )


def limits_values(memory_limit: str | None, cpu_limit: float | None) -> dict[str, str]:
    """The drop-in's properties, as `systemctl set-property` takes them."""
    memory_max, memory_high = memory_limits(memory_limit)
    return {
        "MemoryHigh": memory_high or "infinity",
        "MemoryMax": memory_max or "infinity",
        "MemorySwapMax": "0" if memory_max else "infinity",
        "CPUQuota": cpu_quota(cpu_limit) or "",
        "TasksMax": str(TASKS_MAX),
    }


def limits_dropin(memory_limit: str | None, cpu_limit: float | None) -> str:
    """The drop-in file: the very values `limits_values` hands to `systemctl set-property`."""
    return render("jupyter-limits.conf.j2", limits=limits_values(memory_limit, cpu_limit))


def install_unit(state: snapshot.Snapshot, data, user: str, prefix: str, notebook_dir: str):
    """The unit, its sandbox and its limits (root's, 0644); returns their three operations."""
    system_file = {"user": "root", "group": "root", "mode": "644", "state": state, "create_remote_dir": True}
    unit = snapshot.put(
        name="systemd unit",
        src=snapshot.text(
            unit_file(
                user,
                prefix,
                notebook_dir,
                data.jupyter_base_url,
                data.jupyter_port,
                single_sign_on=sign_in.enabled(data),
            )
        ),
        dest=layout.UNIT_FILE,
        **system_file,
    )
    sandbox = snapshot.put(
        name="Sandbox of the server, its kernels and terminals (systemd drop-in)",
        src=snapshot.text(sandbox_dropin(user, notebook_dir)),
        dest=layout.SANDBOX_DROPIN,
        **system_file,
    )
    limits = snapshot.put(
        name="Memory, CPU and task limits (systemd drop-in)",
        src=snapshot.text(limits_dropin(data.memory_limit, data.cpu_limit)),
        dest=layout.LIMITS_DROPIN,
        **system_file,
    )
    return unit, sandbox, limits


def apply_limits(data, limits) -> None:
    """New limits (the ``limits`` drop-in's operation changed) reach the running unit's cgroup
    at once; no restart, kernels keep running. (Before the unit's daemon-reload: on systemd
    252 a set-property after it left the unit flagged as changed on disk.)"""
    values = limits_values(data.memory_limit, data.cpu_limit)
    snapshot.shell(
        name="Apply the new limits to the running server",
        commands=[
            StringCommand(
                "systemctl",
                "set-property",
                "--runtime",
                layout.UNIT,
                *(QuoteString(f"{k}={v}") for k, v in values.items()),
            )
        ],
        when=snapshot.Changes(limits),
    )
