"""
A conda distribution is not installed onto a filesystem without room for it: the run fails
for that host before anything is downloaded or installed there, with one line giving the
filesystem, what is free and what is needed. On nb2, with conda_prefix on a 16 MiB tmpfs
(the stand-in installer alone is larger); nb2 is as before afterwards.
"""

from __future__ import annotations

import re

import pytest

NAME = "nb2"
SMALL = "/srv/small-disk"


@pytest.fixture(scope="module")
def short_of_space(deployment):
    one = deployment.only(NAME)
    deployment.ssh(NAME, f"mkdir -p {SMALL} && mount -t tmpfs -o size=16m tmpfs {SMALL}")
    try:
        run = one.pyinfra(overrides={NAME: {"conda_prefix": f"{SMALL}/conda"}})
        left = deployment.ssh(NAME, f"ls -A {SMALL}").stdout.split()
    finally:
        deployment.ssh(NAME, f"umount {SMALL} && rmdir {SMALL}")
    converged = one.pyinfra()
    return run, left, converged


def test_too_little_room_fails_the_host_before_installing_with_one_clear_line(short_of_space):
    run, left, _ = short_of_space
    assert run.returncode != 0
    lines = [line for line in run.output.splitlines() if "not enough free space" in line]
    assert lines, run.output[-3000:]
    found = re.search(
        rf"conda-install: not enough free space on {SMALL} for {SMALL}/conda\.dists/[0-9a-f]{{16}} "
        r"\(5 x the (\d+) MiB installer\): 16 MiB free, about (\d+) MiB needed; "
        r"free some space or choose another conda_prefix",
        lines[0],
    )
    assert found, lines[0]
    installer, needed = int(found.group(1)), int(found.group(2))
    assert installer > 16 and 5 * installer <= needed < 5 * (installer + 1), lines[0]
    assert left == []  # not even the prefix directory


def test_the_host_is_as_before(short_of_space):
    _, _, converged = short_of_space
    assert converged.returncode == 0 and converged.changed() == {}, converged.output[-3000:]
