# Managed by pyinfra (jupyter-apache-deploy): local edits are overwritten on the next run.
"""
Who is signed in, as Apache tells Jupyter (setting auth = 'oidc').

Apache (mod_auth_openidc) signs each person in at the OpenID Connect provider, lets in only
the allowed ones, and adds to every request it proxies here the person (``USER_HEADER``, the
e-mail address; ``NAME_HEADER``, the name) and a per-host secret (``SECRET_HEADER``). It sets
all three itself, replacing whatever a client sent. The secret reaches this server as a
systemd credential (``$CREDENTIALS_DIRECTORY``, readable by the service's user alone), so a
request that did not come through Apache, from any other process or user of the host, names
nobody and is refused. Jupyter's own password and login form are off.

Loaded by the deploy's jupyter_server_config.py (``identity_provider_class``).
"""

import hmac
import os
from pathlib import Path

from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.base.handlers import JupyterHandler
from traitlets import Unicode

try:
    from jupyter_server.auth.decorator import allow_unauthenticated
except ImportError:  # jupyter_server < 2.13: every login handler is public anyway

    def allow_unauthenticated(method):
        return method


USER_HEADER = "X-Jupyter-User"
NAME_HEADER = "X-Jupyter-User-Name"
SECRET_HEADER = "X-Jupyter-Proxy-Secret"


def header_text(value: str) -> str:
    # Tornado decodes header bytes as Latin-1; Apache passes the claim's UTF-8 bytes as they are.
    try:
        return value.encode("latin-1").decode("utf-8").strip()
    except (UnicodeEncodeError, UnicodeDecodeError):
        return ""


def initials(name: str) -> str:
    words = [w for w in name.replace("@", " ").replace(".", " ").split() if w]
    return "".join(w[0] for w in words[:2]).upper() or "?"


class SignInHereHandler(JupyterHandler):
    """``/login``: there is nothing to sign in to here; the site's own address signs in."""

    @allow_unauthenticated
    def get(self):
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("Sign in through this site's address: Apache sends you to your organisation's sign-in.\n")

    post = get


class SignOutHandler(JupyterHandler):
    """``/logout``: ends the session at Apache (and at the provider), not just in Jupyter."""

    @allow_unauthenticated
    def get(self):
        self.redirect(self.identity_provider.logout_url)


class ApacheIdentityProvider(IdentityProvider):
    """The person is whoever Apache says, on requests that carry Apache's secret."""

    credential = Unicode("", config=True, help="The systemd credential holding the secret.")
    logout_url = Unicode("", config=True, help="Where /logout sends the browser (Apache's logout).")

    _secret: bytes | None = None

    def secret(self) -> bytes:
        if self._secret is None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY", "")
            try:
                found = directory and self.credential
                self._secret = Path(directory, self.credential).read_bytes().strip() if found else b""
            except OSError:
                self._secret = b""
            if not self._secret:
                self.log.error("No proxy secret (credential %s): every request is refused", self.credential)
        return self._secret

    def get_user(self, handler):
        expected = self.secret()
        sent = handler.request.headers.get(SECRET_HEADER, "").encode("latin-1", "replace")
        if not expected or not hmac.compare_digest(sent, expected):
            return None
        username = header_text(handler.request.headers.get(USER_HEADER, ""))
        if not username:
            return None
        name = header_text(handler.request.headers.get(NAME_HEADER, "")) or username
        return User(username=username, name=name, display_name=name, initials=initials(name))

    @property
    def login_available(self):
        return True

    def get_handlers(self):
        return [(r"/login", SignInHereHandler), (r"/logout", SignOutHandler)]

    def validate_security(self, app, ssl_options=None):
        app.log.info("Sign-in: Apache's single sign-on; requests without its secret are refused")
