"""
Client traffic for the login-ban tests, run inside a lab client address's network
namespace (``ip netns exec``), one process per client. Prints one JSON document.

    login_traffic.py guess URL CA --count 5          wrong passwords, real form posts with _xsrf
    login_traffic.py basic URL CA --count 5          wrong Basic-auth passwords (user alice)
    login_traffic.py probe URL CA                    can this address reach the login page?
    login_traffic.py user URL CA --seconds 60        log in, run cells, log in again now and then
    login_traffic.py flood URL CA --count 200 --seconds 10

Every loop is bounded in count and time and stops by itself. The password the user logs
in with comes from $JUPYTER_PASSWORD; the checkout must be on PYTHONPATH (smoke.client).
Tests start it with ``command``/``environment`` or ``run`` below.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from smoke.client import Jupyter, LoginFailed

WRONG = "not the password"
ROOT = Path(__file__).resolve().parents[2]


def command(*args: str) -> list[str]:
    """This script with ``args``, as a client address runs it (``ClientAddress.run``/``popen``)."""
    return [sys.executable, str(Path(__file__).resolve()), *args]


def environment(password: str = "") -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), JUPYTER_PASSWORD=password)


def run(client, *args: str, password: str = "", timeout: float = 120) -> dict:
    """Run one mode from ``client`` (a ``ClientAddress``; None: this machine) and return its JSON."""
    runner = client.run if client else subprocess.run
    result = runner(command(*args), capture_output=True, text=True, timeout=timeout, env=environment(password))
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def reachable(client, url: str, ca: str) -> bool:
    """Can ``client`` open the login page (False once its address is banned)?"""
    return run(client, "probe", url, ca, "--timeout", "2")["reached"]


def _outcome(error: Exception) -> str:
    text = str(error)
    if "refused" in text.lower():
        return "refused"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return "timeout"
    return f"error: {type(error).__name__}"


def guess(url: str, ca: str, count: int, interval: float) -> dict:
    """``count`` wrong passwords through the login form; each answer's status and time."""
    client = Jupyter(url, ca_file=ca, timeout=10)
    attempts = []
    try:
        client.get("login").raise_for_status()
    except requests.RequestException as error:
        return {"attempts": [], "first_page": _outcome(error)}
    for _ in range(count):
        started = time.time()
        try:
            response = client.session.post(
                client.base + "login",
                data={"password": WRONG, "_xsrf": client.xsrf()},
                allow_redirects=False,
                timeout=10,
                verify=ca,
            )
            attempts.append({"t": time.time(), "status": response.status_code, "seconds": time.time() - started})
        except requests.RequestException as error:
            attempts.append({"t": time.time(), "status": _outcome(error), "seconds": time.time() - started})
        time.sleep(interval)
    return {"attempts": attempts}


def basic(url: str, ca: str, count: int, interval: float) -> dict:
    """``count`` requests with a wrong Basic-auth password in front of Jupyter."""
    attempts = []
    for _ in range(count):
        try:
            response = requests.get(url + "login", auth=("alice", WRONG), verify=ca, timeout=10)
            attempts.append({"t": time.time(), "status": response.status_code})
        except requests.RequestException as error:
            attempts.append({"t": time.time(), "status": _outcome(error)})
        time.sleep(interval)
    return {"attempts": attempts}


def probe(url: str, ca: str, timeout: float) -> dict:
    try:
        response = requests.get(url + "login", verify=ca, timeout=timeout)
        return {"t": time.time(), "reached": True, "status": response.status_code}
    except requests.RequestException as error:
        return {"t": time.time(), "reached": False, "status": _outcome(error)}


def user(url: str, ca: str, seconds: float, interval: float, relogin_every: int) -> dict:
    """Log in and run small cells for ``seconds``; log in anew every ``relogin_every`` cells."""
    password = os.environ["JUPYTER_PASSWORD"]
    client = Jupyter(url, ca_file=ca, timeout=15)
    logins, cells, errors = [], [], []
    client.login(password)
    logins.append({"t": time.time(), "status": client.login_response.status_code})
    kernel = client.start_kernel()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if relogin_every and len(logins) <= len(cells) // relogin_every:
                fresh = Jupyter(url, ca_file=ca, timeout=15)
                try:
                    fresh.login(password)
                    logins.append({"t": time.time(), "status": fresh.login_response.status_code})
                except (LoginFailed, requests.RequestException) as error:
                    logins.append({"t": time.time(), "status": str(error)})
            started = time.monotonic()
            at = time.time()
            try:
                output = client.execute_in(kernel, "print(6 * 7)")
                cells.append({"t": at, "seconds": time.monotonic() - started, "ok": output.strip() == "42"})
            except Exception as error:  # noqa: BLE001 - every failure is a data point
                cells.append({"t": at, "seconds": time.monotonic() - started, "ok": False})
                errors.append(f"{type(error).__name__}: {error}"[:300])
            time.sleep(interval)
    finally:
        try:
            client.api("DELETE", f"kernels/{kernel}")
        except requests.RequestException:
            pass
    return {"logins": logins, "cells": cells, "errors": errors[:20]}


def flood(url: str, ca: str, count: int, seconds: float, workers: int) -> dict:
    """Up to ``count`` wrong-password posts spread over ``seconds``, from ``workers`` threads."""
    client = Jupyter(url, ca_file=ca, timeout=5)
    client.get("login").raise_for_status()
    xsrf, cookies = client.xsrf(), client.session.cookies.get_dict()
    results: list[dict] = []
    lock = threading.Lock()
    start = time.monotonic()
    gap = seconds / count

    deadline = start + seconds

    def worker(index: int) -> None:
        session = requests.Session()
        session.cookies.update(cookies)
        for n in range(index, count, workers):
            due = start + n * gap
            time.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() >= deadline:
                return
            at = time.time()
            try:
                # A banned client's packets are rejected: a post in flight may only time out.
                response = session.post(
                    client.base + "login",
                    data={"password": WRONG, "_xsrf": xsrf},
                    allow_redirects=False,
                    timeout=min(2.0, deadline + 2 - time.monotonic()),
                    verify=ca,
                )
                outcome = response.status_code
            except requests.RequestException as error:
                outcome = _outcome(error)
            with lock:
                results.append({"t": at, "status": outcome})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"posts": sorted(results, key=lambda r: r["t"])}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["guess", "basic", "probe", "user", "flood"])
    parser.add_argument("url")
    parser.add_argument("ca")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--timeout", type=float, default=3)
    parser.add_argument("--relogin-every", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    if args.mode == "guess":
        result = guess(args.url, args.ca, min(args.count, 100), args.interval)
    elif args.mode == "basic":
        result = basic(args.url, args.ca, min(args.count, 100), args.interval)
    elif args.mode == "probe":
        result = probe(args.url, args.ca, args.timeout)
    elif args.mode == "user":
        result = user(args.url, args.ca, min(args.seconds, 600), args.interval, args.relogin_every)
    else:
        result = flood(args.url, args.ca, min(args.count, 1000), min(args.seconds, 60), args.workers)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
