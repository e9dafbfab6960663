"""
The deploy's apt never waits forever for a retry (operations/system.py).

Debian 12's apt retries a transient failure after a delay; when the failure is one suite's
InRelease on the connection the host's other suites share, that retry is never sent and
`apt-get update` waits for good. The lab's apt proxy answered such a 503 ("Error with cache
data") when two hosts refreshed one index in the same second, and a deploy was killed after
600 s. Here a proxy on the lab's bridge answers 503 once for a Debian 12 host's main InRelease
(everything else it passes to the lab's apt proxy), and the deploy's own `apt-get update`
must end, having asked again.
"""

from __future__ import annotations

import http.server
import shlex
import threading
import urllib.request

import pytest

from lab.base import index_urls
from lab.config import BRIDGE_IP, PROXY_PORT
from operations import system

HOST = "nb2"  # Debian 12 (bookworm)
FLAKY_PORT = 8771
# apt's own default (a delayed retry), so the deploy's options alone decide: apt takes the last -o.
APT_DEFAULT = "-o Acquire::Retries=3 -o Acquire::Retries::Delay=true"


class FlakyProxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy that answers 503 to the first request for ``failing`` and passes
    everything else (and later requests for it) to the lab's apt proxy."""

    daemon_threads = True

    def __init__(self, failing: str):
        self.failing, self.requests, self.lock = failing, [], threading.Lock()
        upstream = urllib.request.ProxyHandler({"http": f"http://{BRIDGE_IP}:{PROXY_PORT}"})
        self.upstream = urllib.request.build_opener(upstream)
        super().__init__((BRIDGE_IP, FLAKY_PORT), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 -- http.server's name
        with self.server.lock:
            first = self.path == self.server.failing and self.path not in self.server.requests
            self.server.requests.append(self.path)
        if first:
            # As apt-cacher-ng answers when it cannot replace a cached index in time.
            status, body = 503, b"<html>Error with cache data, please consult apt-cacher.err</html>"
        else:
            with self.server.upstream.open(self.path, timeout=60) as answer:
                status, body = 200, answer.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_proxy(lab):
    # The host's first suite (its release's main InRelease), as the lab's sources name it.
    proxy = FlakyProxy(index_urls(lab.hosts[HOST].release)[0])
    serving = threading.Thread(target=proxy.serve_forever, daemon=True)
    serving.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_an_index_answered_503_once_is_asked_again_and_the_update_ends(lab, flaky_proxy):
    host = lab.hosts[HOST]
    # The host's own lists are kept aside and put back: the session's deploy finds them as before.
    update = (
        f"apt-get {APT_DEFAULT} {system.APT_OPTIONS} -o Acquire::http::Proxy=http://{BRIDGE_IP}:{FLAKY_PORT} update -q"
    )
    script = (
        "set -u; cp -a /var/lib/apt/lists /root/lists.before-flaky-test; "
        f"timeout 120 {update} > /root/flaky-update.log 2>&1; rc=$?; "
        "rm -rf /var/lib/apt/lists; mv /root/lists.before-flaky-test /var/lib/apt/lists; "
        "cat /root/flaky-update.log; echo rc=$rc"
    )
    answer = lab.ssh(host, f"bash -c {shlex.quote(script)}", timeout=180).stdout
    # 124: timeout ended an apt-get that was still waiting for its retry.
    assert answer.strip().endswith("rc=0"), answer[-3000:]
    assert flaky_proxy.requests.count(flaky_proxy.failing) >= 2, flaky_proxy.requests
    assert "bookworm InRelease" in answer and "503" not in answer.split("Reading package lists")[-1], answer[-3000:]
