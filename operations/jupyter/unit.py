"""
The server's systemd unit, its sandbox and its limits: what runs the server and what confines
it, its kernels and its terminals (rendered from ``templates/``).
"""

from __future__ import annotations

from .. import settings, sign_in
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
