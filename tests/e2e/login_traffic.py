"""
Client traffic for the login-ban tests, run inside a lab client address's network
namespace (``ip netns exec``), one process per client. Prints one JSON document.

    login_traffic.py guess URL CA --count 5          wrong passwords, real form posts with _xsrf
    login_traffic.py guess URL CA --form hub/login --username ADDRESS   the same at the hub's form
    login_traffic.py basic URL CA --count 5          wrong Basic-auth passwords (user alice)
    login_traffic.py probe URL CA                    can this address reach the login page?
    login_traffic.py user URL CA --seconds 60        log in, run cells, log in again now and then
    login_traffic.py flood URL CA --count 200 --seconds 10
    login_traffic.py burst URL CA --count 50         that many wrong passwords at once, each on its own connection
    login_traffic.py class URL CA --sources A,B,...  each source address logs in once (right password), all at once
    login_traffic.py swarm URL CA --sources A,B,... --seconds 15   wrong passwords from every source, without pause
    login_traffic.py logins URL CA --count 20        log in that many times, one after the other

``--connect-to6 ADDRESS``: an IPv6 source connects to this address of the host (the Host
header and the certificate stay the URL's name).

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


def run(client, *args: str, password: str = "", timeout: float = 120, nice: bool = False) -> dict:
    """Run one mode from ``client`` (a ``ClientAddress``; None: this machine) and return its JSON.

    ``nice``: at the lowest CPU priority: an attacker's CPU is not the server's, but in the lab
    both are this machine's."""
    runner = client.run if client else subprocess.run
    argv = ["nice", "-n", "19", *command(*args)] if nice else command(*args)
    result = runner(argv, capture_output=True, text=True, timeout=timeout, env=environment(password))
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
    # The detail says which failure it was (a closed keep-alive connection, a reset, ...).
    return f"error: {type(error).__name__}: {text[-160:]}"


def guess(url: str, ca: str, count: int, interval: float, form: str = "login", username: str = "") -> dict:
    """``count`` wrong passwords through the login form (``form``, under ``url``; with
    ``username``, a field of the form, as the hub's has); each answer's status and time."""
    client = Jupyter(url, ca_file=ca, timeout=10)
    attempts = []
    try:
        client.get(form).raise_for_status()
    except requests.RequestException as error:
        return {"attempts": [], "first_page": _outcome(error)}
    fields = {"username": username} if username else {}
    for _ in range(count):
        started = time.time()
        try:
            response = client.session.post(
                client.base + form,
                data={**fields, "password": WRONG, "_xsrf": client.xsrf()},
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


def probe(url: str, ca: str, timeout: float, source: str | None = None, connect_to6: str | None = None) -> dict:
    try:
        response = _client_for(url, ca, source, connect_to6, timeout).get("login")
        return {"t": time.time(), "reached": True, "status": response.status_code}
    except requests.RequestException as error:
        return {"t": time.time(), "reached": False, "status": _outcome(error)}


def closed_unanswered(error: Exception) -> bool:
    """The server closed the connection as the request went out, without an answer."""
    return "RemoteDisconnected" in repr(error) or "Connection reset by peer" in repr(error)


def poll_status(client: Jupyter, until: float, interval: float, seen: list) -> None:
    """GET api/status every ``interval`` s until ``until`` (monotonic): each answer's time and status.

    Like a browser, a GET sent on a kept-alive connection that the server closed without an
    answer is sent once more, on a new connection (``retried``). Apache's event MPM closes its
    kept-alive connections when every worker of its process is busy, as a burst of TLS
    handshakes makes them for a moment (its error log at trace1: "All workers are busy or
    dying, will shutdown N keep-alive connections"); a request already on its way over one of
    them gets no answer (RFC 9112 9.3.1: a client retries an idempotent request then). Any
    other failure, or a second one, is recorded as it is."""
    reused = False
    while time.monotonic() < until:
        started, at = time.monotonic(), time.time()
        retried = False
        try:
            try:
                status = client.session.get(client.base + "api/status", timeout=10, verify=client.verify).status_code
            except requests.ConnectionError as error:
                if not (reused and closed_unanswered(error)):
                    raise
                retried = True
                status = client.session.get(client.base + "api/status", timeout=10, verify=client.verify).status_code
            reused = True
        except requests.RequestException as error:
            status, reused = _outcome(error), False
        seen.append({"t": at, "seconds": time.monotonic() - started, "status": status, "retried": retried})
        time.sleep(interval)


def user(url: str, ca: str, seconds: float, interval: float, relogin_every: int, status_every: float = 0) -> dict:
    """Log in and run small cells for ``seconds``; log in anew every ``relogin_every`` cells;
    with ``status_every``, also ask api/status that often (another connection, a thread)."""
    password = os.environ["JUPYTER_PASSWORD"]
    client = Jupyter(url, ca_file=ca, timeout=15)
    logins, cells, errors, statuses = [], [], [], []
    client.login(password)
    logins.append({"t": time.time(), "status": client.login_response.status_code})
    kernel = client.start_kernel()
    deadline = time.monotonic() + seconds
    if status_every:
        poller = Jupyter(url, ca_file=ca, timeout=15)
        poller.session.cookies.update(client.session.cookies)
        threading.Thread(target=poll_status, args=(poller, deadline, status_every, statuses), daemon=True).start()
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
    return {"logins": logins, "cells": cells, "errors": errors[:20], "statuses": statuses}


def _login_form(url: str, ca: str) -> tuple[Jupyter, str, dict]:
    """A client that opened the login page: (it, its _xsrf token, its cookies)."""
    client = Jupyter(url, ca_file=ca, timeout=5)
    client.get("login").raise_for_status()
    return client, client.xsrf(), client.session.cookies.get_dict()


def _wrong_post(client: Jupyter, cookies: dict, xsrf: str, ca: str, timeout: float) -> tuple:
    """One wrong password on a connection of its own: (status or what went wrong, Retry-After)."""
    session = requests.Session()
    session.cookies.update(cookies)
    try:
        response = session.post(
            client.base + "login",
            data={"password": WRONG, "_xsrf": xsrf},
            allow_redirects=False,
            timeout=timeout,
            verify=ca,
        )
        return response.status_code, response.headers.get("Retry-After")
    except requests.RequestException as error:
        return _outcome(error), None


def flood(url: str, ca: str, count: int, seconds: float, workers: int) -> dict:
    """Up to ``count`` wrong-password posts spread over ``seconds``, from ``workers`` threads."""
    client, xsrf, cookies = _login_form(url, ca)
    results: list[dict] = []
    lock = threading.Lock()
    start = time.monotonic()
    gap = seconds / count
    deadline = start + seconds

    def worker(index: int) -> None:
        for n in range(index, count, workers):
            due = start + n * gap
            time.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() >= deadline:
                return
            at = time.time()
            # A banned client's packets are rejected: a post in flight may only time out.
            outcome, _ = _wrong_post(client, cookies, xsrf, ca, timeout=min(2.0, deadline + 2 - time.monotonic()))
            with lock:
                results.append({"t": at, "status": outcome})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"posts": sorted(results, key=lambda r: r["t"])}


def burst(url: str, ca: str, count: int) -> dict:
    """``count`` wrong-password posts sent at the same moment, each on a connection of its own."""
    client, xsrf, cookies = _login_form(url, ca)
    results: list[dict] = []
    lock = threading.Lock()
    ready = threading.Barrier(count)

    def post() -> None:
        ready.wait()
        started = time.time()
        outcome, retry_after = _wrong_post(client, cookies, xsrf, ca, timeout=30)
        with lock:
            results.append(
                {"t": started, "status": outcome, "seconds": time.time() - started, "retry_after": retry_after}
            )

    threads = [threading.Thread(target=post) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"posts": sorted(results, key=lambda r: r["t"])}


def _client_for(url: str, ca: str, source: str | None, connect_to6: str | None, timeout: float) -> Jupyter:
    """A client connecting from ``source`` (to ``connect_to6`` when ``source`` is IPv6)."""
    ipv6 = source is not None and ":" in source
    return Jupyter(url, ca_file=ca, timeout=timeout, source=source, connect_to=connect_to6 if ipv6 else None)


def login_once(url: str, ca: str, source: str | None, connect_to6: str | None, password: str) -> dict:
    """One login (the form, then the password): its status (or what went wrong) and time."""
    client = _client_for(url, ca, source, connect_to6, 15)
    started, at = time.monotonic(), time.time()
    try:
        client.login(password)
        status = client.login_response.status_code
    except LoginFailed:
        status = client.login_response.status_code
    except requests.RequestException as error:
        status = _outcome(error)
    return {"t": at, "source": source, "status": status, "seconds": time.monotonic() - started}


def class_logins(url: str, ca: str, sources: list[str], connect_to6: str | None) -> dict:
    """Every source logs in with the right password at the same moment."""
    password = os.environ["JUPYTER_PASSWORD"]
    results: list[dict] = []
    ready = threading.Barrier(len(sources))

    def one(source: str) -> None:
        ready.wait()
        results.append(login_once(url, ca, source, connect_to6, password))

    threads = [threading.Thread(target=one, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"logins": sorted(results, key=lambda r: r["t"])}


def swarm(url: str, ca: str, sources: list[str], seconds: float, workers: int, connect_to6: str | None) -> dict:
    """Wrong passwords from every source (``workers`` at a time each), each on a connection of
    its own, for ``seconds``; a source whose connection is refused or times out (banned) pauses."""
    deadline = time.monotonic() + seconds
    results: list[dict] = []
    lock = threading.Lock()

    def worker(source: str) -> None:
        try:
            form = _client_for(url, ca, source, connect_to6, 5)
            form.get("login").raise_for_status()
        except requests.RequestException as error:
            with lock:
                results.append({"t": time.time(), "source": source, "status": _outcome(error)})
            return
        xsrf, cookies = form.xsrf(), form.session.cookies.get_dict()
        while time.monotonic() < deadline:
            client = _client_for(url, ca, source, connect_to6, 5)
            client.session.cookies.update(cookies)
            at = time.time()
            try:
                response = client.session.post(
                    client.base + "login",
                    data={"password": WRONG, "_xsrf": xsrf},
                    allow_redirects=False,
                    timeout=min(5.0, max(0.5, deadline + 2 - time.monotonic())),
                    verify=ca,
                )
                status = response.status_code
            except requests.RequestException as error:
                status = _outcome(error)
            with lock:
                results.append({"t": at, "source": source, "status": status})
            if not isinstance(status, int):
                time.sleep(0.5)

    threads = [threading.Thread(target=worker, args=(source,)) for source in sources for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"posts": sorted(results, key=lambda r: r["t"])}


def logins(url: str, ca: str, count: int, interval: float) -> dict:
    """``count`` logins with the right password, one after the other."""
    password = os.environ["JUPYTER_PASSWORD"]
    done = []
    for _ in range(count):
        done.append(login_once(url, ca, None, None, password))
        time.sleep(interval)
    return {"logins": done}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "mode", choices=["guess", "basic", "probe", "user", "flood", "burst", "class", "swarm", "logins"]
    )
    parser.add_argument("url")
    parser.add_argument("ca")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--timeout", type=float, default=3)
    parser.add_argument("--relogin-every", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--status-every", type=float, default=0)
    parser.add_argument("--sources", default="")
    parser.add_argument("--connect-to6")
    parser.add_argument("--form", default="login")
    parser.add_argument("--username", default="")
    args = parser.parse_args()
    sources = [source for source in args.sources.split(",") if source][:64]
    if args.mode == "guess":
        result = guess(args.url, args.ca, min(args.count, 100), args.interval, args.form, args.username)
    elif args.mode == "basic":
        result = basic(args.url, args.ca, min(args.count, 100), args.interval)
    elif args.mode == "probe":
        result = probe(args.url, args.ca, args.timeout, (sources or [None])[0], args.connect_to6)
    elif args.mode == "user":
        result = user(args.url, args.ca, min(args.seconds, 600), args.interval, args.relogin_every, args.status_every)
    elif args.mode == "burst":
        result = burst(args.url, args.ca, min(args.count, 100))
    elif args.mode == "class":
        result = class_logins(args.url, args.ca, sources, args.connect_to6)
    elif args.mode == "swarm":
        result = swarm(args.url, args.ca, sources, min(args.seconds, 60), min(args.workers, 4), args.connect_to6)
    elif args.mode == "logins":
        result = logins(args.url, args.ca, min(args.count, 100), args.interval)
    else:
        result = flood(args.url, args.ca, min(args.count, 1000), min(args.seconds, 60), args.workers)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
