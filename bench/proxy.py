"""
What the Apache proxy costs: the same Jupyter measured through Apache (HTTPS, the way
users reach it) and directly on the host's loopback through an SSH tunnel, interleaved
in one run so both see the same machine load.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time

import requests

from lab.hosts import ssh_args
from lab.network import wait_for_port
from smoke.client import Jupyter, _run_cell

TUNNEL_PORT = 18888
CELLS = 300
HTTP_SECONDS = 5
HTTP_CLIENTS = 8


class _TunnelSession(requests.Session):
    """Jupyter marks its cookies Secure (it sits behind HTTPS); the tunnel is plain HTTP to
    loopback, so the direct client clears the flag on every cookie it has received."""

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        for cookie in self.cookies:
            cookie.secure = False
        return response


def _percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _http_rate(client: Jupyter, path: str) -> float:
    """Requests per second with HTTP_CLIENTS keep-alive clients for HTTP_SECONDS."""
    counts = []
    deadline = time.monotonic() + HTTP_SECONDS

    def worker():
        session = type(client.session)()
        session.cookies.update(client.session.cookies)
        done = 0
        while time.monotonic() < deadline:
            if session.get(client.base + path, verify=client.verify, timeout=10).status_code == 200:
                done += 1
        counts.append(done)

    threads = [threading.Thread(target=worker) for _ in range(HTTP_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / HTTP_SECONDS


def measure(lab, host, password: str) -> dict:
    cert = lab.ssh(host, "cat /etc/ssl/certs/jupyter-apache.crt").stdout
    ca = lab.key.parent / "bench-ca.pem"
    ca.write_text(cert)
    tunnel = subprocess.Popen(
        [
            "ssh",
            *ssh_args(lab.key, lab.known_hosts),
            "-N",
            "-L",
            f"127.0.0.1:{TUNNEL_PORT}:127.0.0.1:8888",
            f"root@{host.ip}",
        ]
    )
    try:
        wait_for_port("127.0.0.1", TUNNEL_PORT, 15)
        apache = Jupyter(f"https://{host.ip}/jupyter/", ca_file=str(ca))
        direct = Jupyter(f"http://127.0.0.1:{TUNNEL_PORT}/jupyter/", ca_file=False)
        direct.session = _TunnelSession()
        clients = {"apache": apache, "direct": direct}
        sockets = {}
        for name, client in clients.items():
            client.login(password)
            kernel = client.start_kernel()
            sockets[name] = (client, kernel, client.websocket(f"api/kernels/{kernel}/channels"))
        times = {name: [] for name in clients}
        for name in clients:  # warm-up
            _run_cell(sockets[name][2], "1", 30)
        for _ in range(CELLS):
            for name in clients:
                started = time.perf_counter()
                _run_cell(sockets[name][2], "6 * 7", 30)
                times[name].append((time.perf_counter() - started) * 1000)
        for client, kernel, ws in sockets.values():
            ws.close()
            client.api("DELETE", f"kernels/{kernel}")
        static = next(
            path
            for path in ("static/favicons/favicon.ico", "static/favicon.ico", "static/style/bootstrap.min.css")
            if apache.get(path).status_code == 200
        )
        rates = {}
        for what, path in (("static asset", static), ("/api/status", "api/status")):
            for name in ("direct", "apache", "direct", "apache"):  # interleaved, best of two each
                rates.setdefault((what, name), []).append(_http_rate(clients[name], path))
    finally:
        tunnel.terminate()
        tunnel.wait()
    raw = {
        "kernel_ms": {
            name: {"p50": statistics.median(t), "p99": _percentile(t, 0.99), "n": len(t)} for name, t in times.items()
        },
        "http_rps": {f"{what} via {name}": max(r) for (what, name), r in rates.items()},
        "static_path": static,
    }
    k = raw["kernel_ms"]
    figures = {
        "kernel round trip p50 / p99, via Apache": f"{k['apache']['p50']:.1f} / {k['apache']['p99']:.1f} ms",
        "kernel round trip p50 / p99, direct (SSH tunnel)": f"{k['direct']['p50']:.1f} / {k['direct']['p99']:.1f} ms",
        "kernel p50 ratio Apache / direct": f"{k['apache']['p50'] / k['direct']['p50']:.2f}",
    }
    for what in ("static asset", "/api/status"):
        via, direct_rps = raw["http_rps"][f"{what} via apache"], raw["http_rps"][f"{what} via direct"]
        figures[f"HTTP {what}: req/s via Apache / direct"] = f"{via:.0f} / {direct_rps:.0f} = {via / direct_rps:.2f}"
    return {"figures": figures, "raw": raw}
