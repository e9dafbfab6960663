"""
A small Jupyter client that talks to a deployed server the way a browser does, through
Apache: log in with the password, then REST calls and websockets with the session cookie,
the `_xsrf` token and a same-origin `Origin` header.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
import uuid
from urllib.parse import urlsplit

import requests
import websocket
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool


class LoginFailed(Exception):
    pass


class _AddressAdapter(HTTPAdapter):
    """HTTPS to one fixed address, whatever the URL's name resolves to; the name is still
    what the request says (Host), what TLS asks for (SNI) and what the certificate must match.
    ``source``: the local address connections come from (a client of several addresses)."""

    def __init__(self, address: str | None, source: str | None = None):
        self.address = address
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        if self.source:
            kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)
        address = self.address
        if address is None:
            return

        class Connection(HTTPSConnection):
            def _new_conn(self):
                # urllib3 opens the TCP connection to `_dns_host`; everything after it
                # (SNI, hostname check, Host header) uses the name from the URL.
                name, self._dns_host = self._dns_host, address
                try:
                    return super()._new_conn()
                finally:
                    self._dns_host = name

        class Pool(HTTPSConnectionPool):
            ConnectionCls = Connection

        self.poolmanager.pool_classes_by_scheme = {**self.poolmanager.pool_classes_by_scheme, "https": Pool}


class Jupyter:
    def __init__(
        self,
        base: str,
        ca_file: str | bool = True,
        timeout: float = 20,
        basic_auth=None,
        connect_to: str | None = None,
        source: str | None = None,
    ):
        """``base``: e.g. ``https://169.254.77.11/jupyter/``; ``ca_file``: CA/cert to trust;
        ``basic_auth``: ``(user, password)`` for an Apache Basic-auth layer in front;
        ``connect_to``: the address to connect to instead of what the URL's name resolves to;
        ``source``: the local address to connect from (HTTP requests only)."""
        self.base = base if base.endswith("/") else base + "/"
        self.origin = "/".join(self.base.split("/")[:3])
        self.connect_to = connect_to
        self.session = requests.Session()
        if connect_to or source:
            self.session.mount("https://", _AddressAdapter(connect_to, source))
        # Passed on every request: a Session-level `verify` loses to REQUESTS_CA_BUNDLE.
        self.verify = ca_file
        self.timeout = timeout
        self.login_response = None
        self.session.auth = basic_auth
        self.ws_headers = []
        if basic_auth:
            token = base64.b64encode(":".join(basic_auth).encode()).decode()
            self.ws_headers.append(f"Authorization: Basic {token}")

    # -- HTTP ------------------------------------------------------------------------
    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.base + path, timeout=self.timeout, verify=self.verify, **kwargs)

    def xsrf(self) -> str:
        return self.session.cookies.get("_xsrf", "")

    def login(self, password: str) -> requests.Response:
        page = self.get("login")
        page.raise_for_status()
        response = self.session.post(
            self.base + "login",
            data={"password": password, "_xsrf": self.xsrf()},
            allow_redirects=False,
            timeout=self.timeout,
            verify=self.verify,
        )
        self.login_response = response
        if response.status_code != 302:
            raise LoginFailed(f"login answered {response.status_code}")
        return response

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-XSRFToken": self.xsrf(), **kwargs.pop("headers", {})}
        response = self.session.request(
            method, self.base + "api/" + path, headers=headers, timeout=self.timeout, verify=self.verify, **kwargs
        )
        response.raise_for_status()
        return response

    # -- websockets ------------------------------------------------------------------
    def websocket(self, path: str, origin: str | None = None) -> websocket.WebSocket:
        scheme, rest = self.base.split("://", 1)
        url = ("wss://" if scheme == "https" else "ws://") + rest + path
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        sslopt = {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": self.verify} if isinstance(self.verify, str) else {}
        sock = self._tls_socket(url) if self.connect_to else None
        return websocket.create_connection(
            url,
            cookie=cookie,
            origin=origin or self.origin,
            header=self.ws_headers,
            sslopt=sslopt,
            timeout=self.timeout,
            socket=sock,
        )

    def _tls_socket(self, url: str) -> ssl.SSLSocket:
        """A TLS connection to ``connect_to`` (else the URL's host), verified for the URL's name
        (as the HTTP requests are)."""
        parts = urlsplit(url)
        context = ssl.create_default_context(cafile=self.verify if isinstance(self.verify, str) else None)
        raw = socket.create_connection((self.connect_to or parts.hostname, parts.port or 443), timeout=self.timeout)
        try:
            return context.wrap_socket(raw, server_hostname=parts.hostname)
        except Exception:
            raw.close()
            raise

    def certificate_expires(self) -> float:
        """When the served certificate expires (a Unix time), read from a verified TLS handshake."""
        with self._tls_socket(self.base) as tls:
            return ssl.cert_time_to_seconds(tls.getpeercert()["notAfter"])

    def execute(self, code: str) -> str:
        """Run ``code`` in a fresh kernel over its websocket channel; returns its stdout."""
        kernel = self.start_kernel()
        try:
            return self.execute_in(kernel, code)
        finally:
            self.api("DELETE", f"kernels/{kernel}")

    def start_kernel(self) -> str:
        return self.api("POST", "kernels", json={"name": "python3"}).json()["id"]

    def execute_in(self, kernel: str, code: str) -> str:
        """Run ``code`` in an existing kernel (its state kept); returns its stdout."""
        ws = self.websocket(f"api/kernels/{kernel}/channels")
        try:
            return _run_cell(ws, code, self.timeout)
        finally:
            ws.close()

    def terminal_echo(self, command: str, expect: str) -> str:
        terminal = self.api("POST", "terminals").json()
        try:
            ws = self.websocket(f"terminals/websocket/{terminal['name']}")
            try:
                ws.send(json.dumps(["stdin", command + "\r"]))
                seen, deadline = "", time.monotonic() + self.timeout
                while expect not in seen and time.monotonic() < deadline:
                    message = json.loads(ws.recv())
                    if message[0] == "stdout":
                        seen += message[1]
                return seen
            finally:
                ws.close()
        finally:
            self.api("DELETE", f"terminals/{terminal['name']}")


def execute_request(code: str) -> tuple[str, str]:
    """(msg_id, the JSON text of a kernel ``execute_request`` for ``code``)."""
    msg_id = uuid.uuid4().hex
    return msg_id, json.dumps(
        {
            "header": {
                "msg_id": msg_id,
                "username": "test",
                "session": uuid.uuid4().hex,
                "msg_type": "execute_request",
                "version": "5.3",
                "date": "",
            },
            "parent_header": {},
            "metadata": {},
            "channel": "shell",
            "buffers": [],
            "content": {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        }
    )


def _run_cell(ws, code: str, timeout: float) -> str:
    msg_id, request = execute_request(code)
    ws.send(request)
    output, replied, idle = "", False, False
    deadline = time.monotonic() + timeout
    # Stream output can arrive after the reply: wait for the reply AND the idle status.
    while not (replied and idle):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no reply to {code!r} within {timeout} s (got {output!r})")
        message = json.loads(ws.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = message["msg_type"]
        if kind == "stream":
            output += message["content"]["text"]
        elif kind == "execute_reply":
            replied = True
        elif kind == "status" and message["content"]["execution_state"] == "idle":
            idle = True
        elif kind == "error":
            raise RuntimeError("\n".join(message["content"]["traceback"]))
    return output
