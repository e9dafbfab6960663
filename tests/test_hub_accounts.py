"""files/jupyterhub_accounts.py, the hub's module for people's accounts and servers (loaded with
JupyterHub's own packages, as on a host): names from the provider's user info, the provider's
endpoints with a kept copy, and the proof that a port is held by a server's own process.

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

import pytest
from tornado import web

from operations import people
from operations.hub import layout

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
