# Managed by pyinfra (jupyter-apache-deploy): local edits are overwritten on the next run.
"""
Jupyter's login form, with the password check moved off the server's event loop.

Jupyter checks a posted password (argon2: about 0.1 s of CPU, on purpose) inside the
request handler, on the one thread that also carries every kernel message, save and page
of the server. A burst of wrong passwords then queues the real user's work behind it
until fail2ban bans the sender. Here the check runs on a worker thread instead
(argon2-cffi releases the GIL while it hashes): the event loop keeps serving, and however
many guesses arrive at once, they are checked one after another.

Loaded by the deploy's jupyter_server_config.py (``login_handler_class``).
"""

from concurrent.futures import ThreadPoolExecutor

from jupyter_server.auth.login import LoginFormHandler
from tornado.ioloop import IOLoop

try:
    from jupyter_server.auth.decorator import allow_unauthenticated
except ImportError:  # jupyter_server < 2.13: every login handler is public anyway

    def allow_unauthenticated(method):
        return method


# One check at a time: queued guesses wait here, not on the event loop.
PASSWORD_CHECKS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="password-check")


class LoginHandler(LoginFormHandler):
    """``LoginFormHandler`` whose ``post`` awaits the identity provider's check in a thread."""

    @allow_unauthenticated
    async def post(self):
        # process_login_form only reads the request and the stored hash: safe off the loop.
        user = await IOLoop.current().run_in_executor(PASSWORD_CHECKS, self.identity_provider.process_login_form, self)
        # From here on as LoginFormHandler.post, back on the event loop.
        self.current_user = user
        if user is None:
            self.set_status(401)
            self._render(message={"error": "Invalid credentials"})
            return
        self.log.info(f"User {user.username} logged in.")
        self.identity_provider.set_login_cookie(self, user)
        self._redirect_safe(self.get_argument("next", default=self.base_url))
