"""
Slices of a fleet, for runs past one control machine's core: ``I/K`` is the I-th of K slices
(1 <= I <= K). A host's slice comes from a hash of its name, so the same host is in the same
slice on every run, whatever the other hosts are. inventory.py keeps one slice when
``JUPYTER_SHARD=I/K`` is set; ``scripts/ci-deploy --shards K`` and ``--shard I/K`` cut any
inventory the same way.
"""

from __future__ import annotations

import hashlib
import re


def parse(spec: str) -> tuple[int, int]:
    """``"I/K"`` -> ``(I, K)``; ``ValueError`` naming what is allowed."""
    match = re.fullmatch(r"([1-9][0-9]*)/([1-9][0-9]*)", spec)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValueError(f"{spec!r} is not allowed: must be I/K with 1 <= I <= K, e.g. 1/4")
    return int(match.group(1)), int(match.group(2))


def slice_of(name: str, count: int) -> int:
    """Which of ``count`` slices (1 to count) the host ``name`` is in."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % count + 1


def in_slice(names: list[str], index: int, count: int) -> list[str]:
    return [name for name in names if slice_of(name, count) == index]
