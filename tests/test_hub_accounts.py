"""files/jupyterhub_accounts.py, the hub's module for people's accounts and servers (loaded with
JupyterHub's own packages, as on a host): names from the provider's user info, the provider's
endpoints with a kept copy, the proof that a port is held by a server's own process, and the
sign-up and sign-in with per-person passwords (against JupyterHub's own database, in memory).

Making accounts (useradd as root) is checked on a real host: tests/e2e/test_per_person.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado import web

from operations import people
from operations.hub import config, layout

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def accounts():
    sys.modules[layout.PEOPLE_MODULE] = people
    spec = importlib.util.spec_from_file_location(layout.ACCOUNTS_MODULE, ROOT / "files" / "jupyterhub_accounts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    del sys.modules[layout.PEOPLE_MODULE]


def test_a_persons_hub_name_comes_from_their_address(accounts):
    assert accounts.hub_name_of({"email": " Ann.Smith@Example.ORG"}) == people.hub_name("ann.smith@example.org")


@pytest.mark.parametrize(
    "user_info",
    [{}, {"email": ""}, {"email": "ann smith@example.org"}, {"email": "ann@example.org", "email_verified": False}],
)
def test_no_usable_address_is_refused_with_403(accounts, user_info):
    with pytest.raises(web.HTTPError) as refused:
        accounts.hub_name_of(user_info)
    assert refused.value.status_code == 403


class _Discovery(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 -- http.server's name
        body = json.dumps(
            {
                "issuer": "http://sso",
                "authorization_endpoint": "https://sso.example.org/auth",
                "token_endpoint": "https://sso.example.org/token",
                "userinfo_endpoint": "https://sso.example.org/userinfo",
            }
        ).encode()
        self.send_response(200 if self.path == "/realm/.well-known/openid-configuration" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_providers_endpoints_are_kept_and_used_while_it_is_unreachable(accounts, tmp_path, capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    issuer = f"http://127.0.0.1:{server.server_port}/realm/"
    copy = tmp_path / "provider-discovery.json"
    try:
        found = accounts.provider_endpoints(issuer, None, str(copy))
    finally:
        server.shutdown()
        server.server_close()
    assert found["token_endpoint"] == "https://sso.example.org/token"
    assert json.loads(copy.read_text()) == found
    # The provider down: the hub still starts, with the copy, and says so.
    assert accounts.provider_endpoints(issuer, None, str(copy)) == found
    assert "using the copy" in capsys.readouterr().err
    # Neither: the hub does not start, and the reason names the document.
    copy.unlink()
    with pytest.raises(SystemExit) as stopped:
        accounts.provider_endpoints(issuer, None, str(copy))
    assert "/realm/.well-known/openid-configuration cannot be read" in str(stopped.value)


def test_a_listening_port_is_traced_to_the_process_that_holds_it(accounts):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        inode = str(os.fstat(listener.fileno()).st_ino)
        assert accounts._listening_inodes(port) == {inode}
        assert inode in accounts._sockets_of(os.getpid())
        # A port bound but not listening, or one nobody holds: no listener.
        assert accounts._listening_inodes(other.getsockname()[1]) == set()
        assert inode not in accounts._sockets_of(1)
    finally:
        listener.close()
        other.close()


def test_people_sign_up_admins_approve_and_a_password_change_ends_every_session(accounts, tmp_path, monkeypatch):
    """PersonAuthenticator against JupyterHub's own database (SQLite in memory): the admin's
    first password (argon2) is theirs and their name cannot be signed up for; a sign-up with
    an address waits for approval; a name claimed before it became an admin's is taken back;
    a password changed by an admin survives a restart of the hub until the deploy gives
    another; a password change ends the person's sessions (cookie id, tokens)."""
    import asyncio

    from jupyterhub import orm
    from passlib.hash import argon2

    def sign_in(authenticator, username, password):
        return asyncio.run(authenticator.authenticate(None, {"username": username, "password": password}))

    ann_password = "ann's first password 1"
    first_passwords = tmp_path / "admin-passwords.json"
    host_data = SimpleNamespace(hub_admin_password_hashes={"Ann@example.org": argon2.hash(ann_password)})
    first_passwords.write_text(config.admin_passwords(host_data))
    monkeypatch.setattr(accounts, "ADMIN_PASSWORDS", str(first_passwords))
    monkeypatch.setattr(accounts, "ADMIN_PASSWORDS_SET", str(tmp_path / "admin-passwords-set.json"))
    db = orm.new_session_factory("sqlite://")()
    # As the hub makes it at its start: the client its own tokens belong to.
    db.add(orm.OAuthClient(identifier="jupyterhub"))
    db.commit()
    ann, dora = people.hub_name("ann@example.org"), people.hub_name("dora@example.org")
    hub = accounts.PersonAuthenticator(db=db, admin_users={ann})
    assert sign_in(hub, "Ann@Example.org", ann_password) == ann
    assert sign_in(hub, "ann@example.org", "a guess") is None
    # Nobody signs up as the admin: the name is taken, and a sign-up is never approved by itself.
    assert hub.user_exists("ann@example.org")
    assert hub.create_user("root", "a long password 2") is None
    # dora signs up with her address, and waits for an admin.
    row = hub.create_user(" Dora@Example.org", "dora's password 3")
    assert (row.username, row.email, row.is_authorized) == (dora, "dora@example.org", False)
    assert sign_in(hub, "dora@example.org", "dora's password 3") is None
    row.is_authorized = True
    db.commit()
    assert sign_in(hub, "dora@example.org", "dora's password 3") == dora
    assert hub.address_of(dora) == "dora@example.org" and hub.address_of(ann) == "ann@example.org"

    # dora is signed in twice (a browser, a server's token); she changes her password.
    person = orm.User(name=dora)
    db.add(person)
    db.commit()
    person.new_api_token()
    cookie_id = person.cookie_id
    assert hub.change_password("dora@example.org", "dora's new password 4")
    assert person.cookie_id != cookie_id and list(person.api_tokens) == []
    assert sign_in(hub, "dora@example.org", "dora's password 3") is None
    assert sign_in(hub, "dora@example.org", "dora's new password 4") == dora

    # ann changes her password; the hub restarts with the same deploy: hers is kept.
    assert hub.change_password(ann, "ann's own password 5")
    hub = accounts.PersonAuthenticator(db=db, admin_users={ann})
    assert sign_in(hub, "ann@example.org", "ann's own password 5") == ann
    # bea signed up before she became an admin; the deploy gives her a first password.
    hub.create_user("bea@example.org", "a claimant's password 6")
    hashes = json.loads(first_passwords.read_text())
    hashes["bea@example.org"] = argon2.hash("bea's first password 7")
    first_passwords.write_text(json.dumps(hashes))
    hub = accounts.PersonAuthenticator(db=db, admin_users={ann})
    assert sign_in(hub, "bea@example.org", "a claimant's password 6") is None
    assert sign_in(hub, "bea@example.org", "bea's first password 7") == people.hub_name("bea@example.org")
    assert sign_in(hub, "ann@example.org", "ann's own password 5") == ann
    # An admin's row gone (taken away on the admin page) until the hub's next start: a sign-up
    # under the name waits for approval like anyone's.
    db.delete(hub.get_user(ann))
    db.commit()
    assert hub.create_user("ann@example.org", "a claimant's password 8").is_authorized is False
