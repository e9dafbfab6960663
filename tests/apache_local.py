"""
A throwaway Apache on this machine, from the deploy's own templates: `apache2 -t` for the
rendered configuration, and (for negative controls) a real server on loopback.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import ssl
import subprocess
import threading
import time
from pathlib import Path

from operations import apache, settings, tls

APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = "/usr/lib/apache2/modules"
# The modules the deploy's vhost uses (without Basic auth).
VHOST_MODULES = apache.needed_modules(basic_auth=False)


def available() -> bool:
    return bool(shutil.which("openssl")) and Path(APACHE).exists()


def keypair(directory: Path, name: str = "127.0.0.1", prefix: str = "") -> tuple[str, str]:
    """A one-day self-signed certificate for ``name`` (an IP or DNS name): ``(cert, key)`` paths."""
    san = ("IP:" if name.replace(".", "").isdigit() else "DNS:") + name
    cert, key = directory / f"{prefix}cert.pem", directory / f"{prefix}key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName={san}",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def vhost(server_name: str, cert: str = tls.CERT, key: str = tls.KEY, **data) -> str:
    """The deploy's vhost for ``server_name`` with the settings' defaults but ``data``, serving
    ``cert`` and ``key`` (files of this machine) instead of the host's."""
    text = apache.vhost({**settings.DEFAULTS, **data}, server_name)
    served_cert, served_key = tls.served_paths(data.get("tls_mode", settings.DEFAULTS["tls_mode"]))
    return text.replace(served_cert, cert).replace(served_key, key)


def server_config(directory: Path, vhost: str, modules, listen=("80", "443")) -> Path:
    """A self-contained httpd.conf holding the hardening conf and ``vhost``."""
    (directory / "vhost.conf").write_text(vhost)
    (directory / "hardening.conf").write_text((apache.FILES / "apache-hardening.conf").read_text())
    loads = "\n".join(
        f"LoadModule {m}_module {MODULES}/mod_{m}.so"
        for m in dict.fromkeys(["mpm_event", "authz_core", "alias", "socache_shmcb", *modules])
    )
    listens = "\n".join(f"Listen {port}" for port in listen)
    config = directory / "httpd.conf"
    config.write_text(
        f"Define APACHE_LOG_DIR {directory}\nServerRoot {directory}\nPidFile {directory}/pid\n"
        f"DefaultRuntimeDir {directory}\nErrorLog {directory}/error.log\nUser nobody\nGroup nogroup\n{loads}\n"
        'LogFormat "%h %l %u %t \\"%r\\" %>s %b" combined\n'
        f"{listens}\nInclude {directory}/hardening.conf\nInclude {directory}/vhost.conf\n",
    )
    return config


def configtest(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([APACHE, "-t", "-f", str(config)], capture_output=True, text=True)


class LoopbackApache:
    """``apache2 -k start`` on a config; stopped by the PID it wrote (and only that)."""

    def __init__(self, config: Path):
        self.config = config
        self.pid_file = config.parent / "pid"

    def __enter__(self):
        subprocess.run([APACHE, "-f", str(self.config), "-k", "start"], check=True, capture_output=True)
        for _ in range(50):
            if self.pid_file.exists():
                break
            time.sleep(0.1)
        return self

    def pid(self) -> int:
        return int(self.pid_file.read_text())

    def __exit__(self, *exc):
        pid = self.pid()
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)


class Backend:
    """A stand-in for Jupyter on loopback: answers each method with its status from
    ``statuses`` (POST and PUT 200 by default) and records (method, path, body size)."""

    def __init__(self, statuses: dict[str, int] | None = None):
        statuses = statuses or {"POST": 200, "PUT": 200}
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self):
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                seen.append((self.command, self.path, length))
                self.send_response(statuses.get(self.command, 405))
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"backend")

            do_GET = do_POST = do_PUT = answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class LoopbackHTTPS:
    """An HTTPS server on 127.0.0.1 (a free port) with ``cert``/``key``, for a client under test:
    each GET is answered by ``answer(path, headers, sni)`` -> (status, headers, body), where
    ``sni`` is the name the client's TLS asked for."""

    def __init__(self, cert: str, key: str, answer):
        sni: dict[str, str | None] = {"name": None}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                status, headers, body = answer(self.path, self.headers, sni["name"])
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda sock, name, ctx: sni.__setitem__("name", name)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
