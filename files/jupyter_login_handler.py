# Managed by pyinfra (jupyter-apache-deploy): local edits are overwritten on the next run.
"""
Jupyter's login form, with the password check moved off the server's event loop.

Jupyter checks a posted password (argon2: about 0.1 s of CPU, on purpose) inside the
request handler, on the one thread that also carries every kernel message, save and page
of the server. A burst of wrong passwords then queues the real user's work behind it
until fail2ban bans the sender. Here the check runs on a worker thread instead
(argon2-cffi releases the GIL while it hashes): the event loop keeps serving, guesses are
checked one after another, and a few at most wait their turn (the rest get 503 at once).

Loaded by the deploy's jupyter_server_config.py (``login_handler_class``).
"""

import inspect
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from jupyter_server.auth.login import LoginFormHandler
from tornado.ioloop import IOLoop

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


# One check at a time: queued guesses wait here, not on the event loop.
PASSWORD_CHECKS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-check", initializer=_lower_priority)
# At most this many checks waiting or running (about a second of argon2): each one holds a
# connection through Apache, and a burst from many addresses would otherwise hold all of
# Apache's workers until the last guess is answered. Above it: 503, checked nothing.
MAX_PENDING_CHECKS = 8
RETRY_AFTER_SECONDS = 5


class LoginHandler(LoginFormHandler):
    """``LoginFormHandler`` whose ``post`` awaits the identity provider's check in a thread."""

    # Only the event loop's thread reads and changes it.
    pending = 0

    def _busy(self) -> bool:
        """Answer 503 when too many checks wait (plain text, no page rendered, no cookie or
        _xsrf read: a burst must cost the event loop next to nothing)."""
        if self.request.method != "POST" or LoginHandler.pending < MAX_PENDING_CHECKS:
            return False
        self.refused = True
        self.set_status(503)
        self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("Too many logins at once: try again in a few seconds.\n")
        return True

    def _log(self):
        # Jupyter logs a 5xx answer with a dump of request headers: not for each refused
        # guess of a burst. Apache's log of the login form has them all (status 503).
        if not getattr(self, "refused", False):
            super()._log()

    async def prepare(self):
        if self._busy():
            return
        prepared = super().prepare()
        if inspect.isawaitable(prepared):
            await prepared

    @allow_unauthenticated
    async def post(self):
        if self._busy():
            return
        LoginHandler.pending += 1
        try:
            # process_login_form only reads the request and the stored hash: safe off the loop.
            user = await IOLoop.current().run_in_executor(
                PASSWORD_CHECKS, self.identity_provider.process_login_form, self
            )
        finally:
            LoginHandler.pending -= 1
        # From here on as LoginFormHandler.post, back on the event loop.
        self.current_user = user
        if user is None:
            self.set_status(401)
            self._render(message={"error": "Invalid credentials"})
            return
        self.log.info(f"User {user.username} logged in.")
        self.identity_provider.set_login_cookie(self, user)
        self._redirect_safe(self.get_argument("next", default=self.base_url))
