"""files/jupyter_login_handler.py's fair queue of password checks, without a Jupyter server.

The real-host proof (a flood from 16 addresses while a user logs in, a class logging in at
once) is tests/e2e/test_login_ban.py; here the order in which checks run and who is refused.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def handler():
    """The module, loaded with stand-ins for the two jupyter_server modules it imports."""
    stubs = {
        "jupyter_server": types.ModuleType("jupyter_server"),
        "jupyter_server.auth": types.ModuleType("jupyter_server.auth"),
        "jupyter_server.auth.login": types.ModuleType("jupyter_server.auth.login"),
        "jupyter_server.auth.decorator": types.ModuleType("jupyter_server.auth.decorator"),
    }
    stubs["jupyter_server.auth.login"].LoginFormHandler = object
    stubs["jupyter_server.auth.decorator"].allow_unauthenticated = lambda method: method
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(
            "login_handler_under_test", ROOT / "files/jupyter_login_handler.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return module


def test_a_client_is_an_ipv4_address_or_an_ipv6_64(handler):
    assert handler.client_of("203.0.113.7") == "203.0.113.7"
    assert handler.client_of("2001:db8:1:2::5") == handler.client_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert handler.client_of("2001:db8:1:3::5") != handler.client_of("2001:db8:1:2::5")
    assert handler.client_of("::ffff:203.0.113.7") == "203.0.113.7"


def run_checks(handler, arrivals, limit=None, per_client=None, seconds=0.005):
    """``arrivals``: (address, label) submitted in this order at once. Returns the labels in
    the order their checks ran, and the labels refused."""
    ran, refused = [], []

    async def main():
        executor = ThreadPoolExecutor(max_workers=1)
        queue = handler.FairChecks(
            executor, limit=limit or handler.MAX_PENDING_CHECKS, per_client=per_client or handler.PER_CLIENT
        )

        def check(label):
            def work():
                ran.append(label)
                time.sleep(seconds)
                return label

            return work

        async def one(address, label):
            try:
                assert await queue.run(address, check(label)) == label
            except handler.Refused:
                refused.append(label)

        await asyncio.gather(*(one(address, label) for address, label in arrivals))
        assert queue.pending() == 0 and not queue.waiting
        executor.shutdown()

    asyncio.run(main())
    return ran, refused


def flood(handler, rounds: int = 3):
    """16 flooding clients (4 of them in one IPv6 /64), each posting ``rounds`` times at once."""
    addresses = [f"198.51.100.{n}" for n in range(12)] + [f"2001:db8:7:7::{n}" for n in range(1, 5)]
    return [(address, f"flood {address} #{i}") for i in range(rounds) for address in addresses]


def test_a_user_waits_one_check_per_flooding_client_at_most(handler):
    arrivals = flood(handler, rounds=handler.PER_CLIENT + 1) + [("192.0.2.50", "user")]
    ran, refused = run_checks(handler, arrivals)
    # 12 IPv4 clients and one /64: 13 clients ahead of the user, one turn each, after the
    # check that was already running when the user came.
    assert ran.index("user") <= 1 + 13, ran
    # The queue filled up (64), then each newcomer post of a client over its share was refused
    # at once; the /64's four addresses shared one share; the user was never refused.
    assert "user" not in refused
    assert sum(1 for label in ran if label.startswith("flood 2001:db8:7:7::")) <= handler.PER_CLIENT
    assert len(ran) + len(refused) == len(arrivals)


def test_one_client_holds_its_share_at_most(handler):
    ran, refused = run_checks(handler, [("198.51.100.7", f"guess {i}") for i in range(handler.PER_CLIENT + 5)])
    assert len(ran) == handler.PER_CLIENT and len(refused) == 5
    # A class behind one address (a NAT) of up to a share logs in together.
    ran, refused = run_checks(handler, [("203.0.113.9", f"student {i}") for i in range(handler.PER_CLIENT)])
    assert refused == []


def test_a_class_logging_in_at_once_is_never_refused(handler):
    ran, refused = run_checks(handler, [(f"10.1.{n // 250}.{n % 250}", f"student {n}") for n in range(60)])
    assert refused == [] and len(ran) == 60


def test_a_full_queue_makes_room_for_a_new_client_from_one_holding_more(handler):
    hogs = [(f"198.51.100.{n}", f"hog {n} #{i}") for n in range(4) for i in range(2)]
    ran, refused = run_checks(handler, [*hogs, ("192.0.2.50", "user")], limit=8, per_client=2)
    assert "user" in ran and len(refused) == 1 and refused[0].startswith("hog ") and refused[0].endswith("#1")
    # Full of clients holding one each: a newcomer is refused (nobody holds more than its share).
    ran, refused = run_checks(
        handler, [(f"198.51.100.{n}", f"one {n}") for n in range(8)] + [("192.0.2.50", "late")], limit=8
    )
    assert refused == ["late"]


def test_a_failing_check_fails_only_its_own_request(handler):
    async def main():
        executor = ThreadPoolExecutor(max_workers=1)
        queue = handler.FairChecks(executor)

        def broken():
            raise RuntimeError("no hash")

        results = await asyncio.gather(
            queue.run("192.0.2.1", broken), queue.run("192.0.2.2", lambda: "fine"), return_exceptions=True
        )
        executor.shutdown()
        return results

    first, second = asyncio.run(main())
    assert isinstance(first, RuntimeError) and second == "fine"
