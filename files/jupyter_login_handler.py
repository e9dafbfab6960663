# Managed by pyinfra (jupyter-apache-deploy): local edits are overwritten on the next run.
"""
Jupyter's login form, with the password check moved off the server's event loop and shared
fairly between the clients that wait for one.

Jupyter checks a posted password (argon2: about 0.1 s of CPU, on purpose) inside the
request handler, on the one thread that also carries every kernel message, save and page
of the server. A burst of wrong passwords then queues the real user's work behind it
until fail2ban bans the sender. Here the check runs on a worker thread instead
(argon2-cffi releases the GIL while it hashes): the event loop keeps serving, and checks
run one after another.

Who waits is fair per client (``FairChecks``): each client (an IPv4 address, or an IPv6
/64, which one subscriber usually holds whole) has at most ``PER_CLIENT`` checks waiting or
running (a quarter of the queue), and clients take turns, one check each. A flood from a few addresses then costs a
real user one check per flooding client at most, not a place at the end of the flood; a
class logging in at once (one check each) all wait their turn. Beyond ``PER_CLIENT``, or
when ``MAX_PENDING_CHECKS`` wait and the newcomer's client holds none of them while another
holds more than one, a check is refused with 503 at once (the other's newest waiter makes
room). The client is the request's ``remote_ip``: with ``trust_xheaders`` that is the last
address of ``X-Forwarded-For``, the one Apache appends (its TCP peer); the vhost drops the
``X-Real-IP`` a client could send.

Loaded by the deploy's jupyter_server_config.py (``login_handler_class``).
"""

import asyncio
import inspect
import ipaddress
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from jupyter_server.auth.login import LoginFormHandler

try:
    from jupyter_server.auth.decorator import allow_unauthenticated
except ImportError:  # jupyter_server < 2.13: every login handler is public anyway

    def allow_unauthenticated(method):
        return method


# argon2 starts a thread per lane (8) from the checking thread, and these inherit its CPU
# affinity and niceness: on one core of the host (the last), below the event loop and the
# kernels, a burst of guesses leaves the other cores to the user's cells. (A login takes a
# little longer for it: tens of milliseconds.)
CHECK_NICENESS = 10


def _lower_priority() -> None:
    # Linux keeps both per thread: this one's, and that of the threads it starts.
    thread = threading.get_native_id()
    try:
        os.sched_setaffinity(thread, {max(os.sched_getaffinity(0))})
    except OSError:
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, thread, CHECK_NICENESS)
    except OSError:
        pass


# At most this many checks waiting or running (a few seconds of argon2): each one holds a
# connection and an Apache worker, so a burst from many addresses must not hold them all
# (the deploy gives Apache 250). Enough for a class that logs in at once.
MAX_PENDING_CHECKS = 64
# At most this many of them for one client: its share (a class behind one NAT address still
# gets in together; one flooding address holds a quarter of the queue at most, and, taking
# turns with everyone else, delays nobody by more than one check per turn).
PER_CLIENT = MAX_PENDING_CHECKS // 4
RETRY_AFTER_SECONDS = 5


def client_of(address: str) -> str:
    """Whose turn a request takes: an IPv4 address itself, an IPv6 address's /64 (an IPv4
    address mapped into IPv6 is that IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Refused(Exception):
    """A check that was not run (its client's share is used up, or it made room for another)."""


class FairChecks:
    """
    Checks run one at a time in ``executor``, taken in turn from each waiting client's queue.
    Used from the event loop's thread only.
    """

    def __init__(self, executor, limit: int = MAX_PENDING_CHECKS, per_client: int = PER_CLIENT):
        self.executor, self.limit, self.per_client = executor, limit, per_client
        # client -> its waiting checks (future of the result, the check); order: whose turn next.
        self.waiting: dict[str, deque] = {}
        # client -> its checks waiting or running.
        self.held: dict[str, int] = {}
        self.running = False

    def pending(self) -> int:
        return sum(self.held.values())

    def _make_room_for(self, client: str) -> bool:
        """A full queue and a client holding none of it: the newest waiter of whoever holds the
        most (more than one) is refused. False when nobody holds more than one."""
        holder = max(self.waiting, key=lambda c: (self.held[c], c), default=None)
        if self.held.get(client) or holder is None or self.held[holder] < 2:
            return False
        result, _ = self.waiting[holder].pop()
        if not self.waiting[holder]:
            del self.waiting[holder]
        result.set_exception(Refused())
        return True

    async def run(self, address: str, check):
        """``check()`` on the executor when ``address``'s client's turn comes; its result.
        Raises ``Refused`` when the client's share is used up or the queue is full."""
        client = client_of(address)
        if self.held.get(client, 0) >= self.per_client:
            raise Refused()
        if self.pending() >= self.limit and not self._make_room_for(client):
            raise Refused()
        result = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(client, deque()).append((result, check))
        self.held[client] = self.held.get(client, 0) + 1
        self._next()
        try:
            return await result
        finally:
            self.held[client] -= 1
            if not self.held[client]:
                del self.held[client]

    def _next(self) -> None:
        if self.running or not self.waiting:
            return
        client = next(iter(self.waiting))
        queue = self.waiting.pop(client)
        result, check = queue.popleft()
        if queue:
            # Its next check waits until every other waiting client had a turn.
            self.waiting[client] = queue
        self.running = True
        done = asyncio.get_running_loop().run_in_executor(self.executor, check)
        done.add_done_callback(lambda finished: self._finished(finished, result))

    def _finished(self, finished, result) -> None:
        self.running = False
        if not result.done():
            if finished.exception() is not None:
                result.set_exception(finished.exception())
            else:
                result.set_result(finished.result())
        self._next()


# One check at a time: queued guesses wait in CHECKS, not on the event loop.
PASSWORD_CHECKS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-check", initializer=_lower_priority)
CHECKS = FairChecks(PASSWORD_CHECKS)


class LoginHandler(LoginFormHandler):
    """``LoginFormHandler`` whose ``post`` awaits the identity provider's check in a thread,
    in its client's turn."""

    def _refuse(self) -> None:
        """Answer 503 (plain text, no page rendered, no cookie or _xsrf read: a burst must cost
        the event loop next to nothing)."""
        self.refused = True
        self.set_status(503)
        self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("Too many logins at once: try again in a few seconds.\n")

    def _log(self):
        # Jupyter logs a 5xx answer with a dump of request headers: not for each refused
        # guess of a burst. Apache's log of the login form has them all (status 503).
        if not getattr(self, "refused", False):
            super()._log()

    def _share_used(self) -> bool:
        client = client_of(self.request.remote_ip)
        return self.request.method == "POST" and CHECKS.held.get(client, 0) >= CHECKS.per_client

    async def prepare(self):
        # A client over its share is refused before its form is even read.
        if self._share_used():
            self._refuse()
            return
        prepared = super().prepare()
        if inspect.isawaitable(prepared):
            await prepared

    @allow_unauthenticated
    async def post(self):
        try:
            # process_login_form only reads the request and the stored hash: safe off the loop.
            user = await CHECKS.run(self.request.remote_ip, lambda: self.identity_provider.process_login_form(self))
        except Refused:
            self._refuse()
            return
        # From here on as LoginFormHandler.post, back on the event loop.
        self.current_user = user
        if user is None:
            self.set_status(401)
            self._render(message={"error": "Invalid credentials"})
            return
        self.log.info(f"User {user.username} logged in.")
        self.identity_provider.set_login_cookie(self, user)
        self._redirect_safe(self.get_argument("next", default=self.base_url))
