"""
A memory cap around one lab host, from outside, so it behaves like a small VPS.

This machine's kernel runs cgroups v1 (hybrid) and a lab host sees the memory hierarchy
read-only: a ``MemoryMax`` set inside a host is not enforced. A v1 memory cgroup on this
machine around every process of the host is: past it the kernel's OOM killer ends a
process of the host (chosen by ``oom_score_adj`` and size), never one of this machine.
Processes the host starts later inherit the cap (its systemd cannot move them out).

    with MemoryCap(host, 1 << 30) as cap:
        assert cap.holds(pid)       # check before allocating, never after
        ...
        cap.peak_bytes, cap.oom_kills
"""

from __future__ import annotations

from pathlib import Path

from .hosts import LabHost, _cgroup_pids

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")


class MemoryCap:
    def __init__(self, host: LabHost, limit_bytes: int):
        self.host = host
        self.limit_bytes = limit_bytes
        self.path = MEMORY_ROOT / f"jupyter-deploy-lab-{host.name}"

    def __enter__(self) -> MemoryCap:
        if not (MEMORY_ROOT / "cgroup.procs").exists():
            raise RuntimeError(f"no cgroup v1 memory hierarchy at {MEMORY_ROOT}: cannot cap {self.host.name}")
        self.path.mkdir(exist_ok=True)
        (self.path / "memory.limit_in_bytes").write_text(str(self.limit_bytes))
        if self.limit != self.limit_bytes:
            raise RuntimeError(f"memory cap for {self.host.name} reads {self.limit}, not {self.limit_bytes}")
        # Twice: a process forked by one not yet moved would be missed by a single pass.
        for _ in range(2):
            self.move(self.pids(), self.path)
        return self

    def __exit__(self, *exc) -> None:
        for _ in range(5):
            members = self.members()
            if not members:
                break
            self.move(members, MEMORY_ROOT)
        try:
            self.path.rmdir()
        except OSError:
            pass

    # -- what the test checks --------------------------------------------------------
    @property
    def limit(self) -> int:
        return int((self.path / "memory.limit_in_bytes").read_text())

    @property
    def peak_bytes(self) -> int:
        return int((self.path / "memory.max_usage_in_bytes").read_text())

    @property
    def oom_kills(self) -> int:
        for line in (self.path / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def members(self) -> set[int]:
        return {int(pid) for pid in (self.path / "cgroup.procs").read_text().split()}

    def holds(self, pid: int) -> bool:
        """Whether ``pid`` (as this machine numbers it) is inside the cap right now."""
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return False
        return any(
            line.split(":", 2)[1] == "memory" and line.split(":", 2)[2] == f"/{self.path.name}" for line in lines
        )

    # -- moving processes ------------------------------------------------------------
    def pids(self) -> set[int]:
        """Every process of the host: nspawn and all in the host's own cgroups."""
        pids = _cgroup_pids(self.host.name)
        nspawn = self.host.nspawn_pid()
        if nspawn:
            pids.add(nspawn)
        return pids

    def find(self, text: str) -> list[int]:
        """PIDs (as this machine numbers them) of the host's processes whose command line has ``text``."""
        found = []
        for pid in sorted(self.pids()):
            try:
                if text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(pid)
            except OSError:
                pass
        return found

    @staticmethod
    def move(pids, target: Path) -> None:
        for pid in pids:
            try:
                (target / "cgroup.procs").write_text(str(pid))
            except OSError:
                pass  # the process ended meanwhile
