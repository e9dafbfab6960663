# Managed by pyinfra (jupyter-apache-deploy): local edits are overwritten on the next run.
"""
One cell in a fresh kernel of the running server, asked on loopback as Apache asks for a
signed-in person (single sign-on): the smoke check of a host nobody can log in to with a
password. Run by files/jupyter-cell-check, as root, with the server's own Python (-I).

    python -I jupyter_cell_check.py PORT BASE_URL SECRET_FILE SECRET_HEADER USER_HEADER CODE

CODE is base64-encoded (one word on any command line).

Prints one JSON line: ``{"ok": true, "output": ..., "seconds": {"kernel": ..., "cell": ...}}``
or ``{"ok": false, "error": ...}``. What the kernel prints is the notebook user's to shape:
at most ``OUTPUT_CHARS`` of it, printable characters and newlines only, escaped in the JSON.
The proxy secret is read from its root-only file and sent on loopback only, never printed.
"""

import base64
import http.cookies
import json
import re
import sys
import time
import urllib.request
import uuid

import websocket  # websocket-client, which jupyter_server requires

TIMEOUT = 30
OUTPUT_CHARS = 2000
# Who the check is, to the server (a name no provider gives: not an address).
CHECKER = "jupyter-deploy smoke check"


def printable(text: str, limit: int) -> str:
    return "".join(ch for ch in text if ch.isprintable() or ch == "\n")[:limit]


class Server:
    def __init__(self, port: str, base_url: str, headers: dict[str, str]):
        self.root = f"http://127.0.0.1:{int(port)}{base_url}"
        self.ws_root = f"ws://127.0.0.1:{int(port)}{base_url}"
        self.headers = headers
        # The server's _xsrf cookie is marked Secure (it is served over HTTPS through Apache),
        # which a cookie jar keeps off plain loopback HTTP: it is sent back by hand, as Apache
        # passes a browser's on.
        self.xsrf = ""
        # Loopback only: never through a proxy the environment names.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, body: dict | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        headers = {**self.headers, "Content-Type": "application/json"}
        if self.xsrf:
            headers.update({"Cookie": f"_xsrf={self.xsrf}", "X-XSRFToken": self.xsrf})
        request = urllib.request.Request(self.root + path, data=data, headers=headers, method=method)
        with self.opener.open(request, timeout=TIMEOUT) as answer:
            for value in answer.headers.get_all("Set-Cookie") or ():
                cookie = http.cookies.SimpleCookie()
                cookie.load(value)
                if "_xsrf" in cookie:
                    self.xsrf = cookie["_xsrf"].value
            return answer.read(1 << 20)

    def run_cell(self, kernel: str, code: str) -> str:
        header = [f"{k}: {v}" for k, v in self.headers.items()]
        url = f"{self.ws_root}api/kernels/{kernel}/channels"
        ws = websocket.create_connection(url, header=header, suppress_origin=True, timeout=TIMEOUT)
        try:
            msg_id = uuid.uuid4().hex
            ws.send(
                json.dumps(
                    {
                        "header": {
                            "msg_id": msg_id,
                            "username": CHECKER,
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
            )
            output, replied, idle = "", False, False
            deadline = time.monotonic() + TIMEOUT
            # Stream output can arrive after the reply: wait for the reply and the idle status.
            while not (replied and idle):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no reply to the cell within {TIMEOUT} s")
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
                    raise RuntimeError(f"the cell failed: {message['content'].get('ename', 'error')}")
            return output
        finally:
            ws.close()


def main() -> int:
    port, base_url, secret_file, secret_header, user_header, encoded = sys.argv[1:7]
    code = base64.b64decode(encoded).decode()
    with open(secret_file) as stored:
        secret = stored.read().strip()
    # What files/sign-in-secrets makes: hex digits. Anything else is not sent (nor shown).
    if not re.fullmatch(r"[0-9A-Za-z]{16,256}", secret):
        print(json.dumps({"ok": False, "error": f"{secret_file} holds no proxy secret the deploy made"}))
        return 0
    server = Server(port, base_url, {secret_header: secret, user_header: CHECKER})
    seconds = {}
    try:
        # A page first, as a browser loads one: it sets the _xsrf cookie the API asks for.
        server.request("GET", "tree")
        started = time.monotonic()
        kernel = json.loads(server.request("POST", "api/kernels", {"name": "python3"}))["id"]
        seconds["kernel"] = time.monotonic() - started
        try:
            started = time.monotonic()
            output = server.run_cell(kernel, code)
            seconds["cell"] = time.monotonic() - started
        finally:
            server.request("DELETE", f"api/kernels/{kernel}")
    except Exception as error:  # one line, whatever went wrong
        said = f"{type(error).__name__}: {error}".replace(secret, "(secret)")
        print(json.dumps({"ok": False, "error": printable(said, 300), "seconds": seconds}))
        return 0
    print(json.dumps({"ok": True, "output": printable(output, OUTPUT_CHARS), "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
