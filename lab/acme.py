"""
A private ACME server for the lab: Debian's ``pebble`` (Let's Encrypt's RFC 8555 test
server) and a ``dnsmasq`` that answers for test names, both on the bridge.

    with AcmeServer() as acme:
        acme.point("nb4.lab.test", "169.254.77.14")
        # deploy with acme_directory_url=acme.directory_url, acme_ca_bundle=acme.api_ca
        acme.issuing_root()   # PEM of the root the issued certificates chain to

Debian's pebble ships no certificate for its own HTTPS listener, so a throwaway CA is
made here (``api_ca``): hosts must trust it to talk to the ACME API. Certificates pebble
issues chain to another root, made by pebble at start (``issuing_root``). Restarting
pebble forgets every account and makes a new root, so one instance serves a session.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from .config import BRIDGE_IP, STATE
from .network import _stop_pid_file, wait_for_port

ACME_PORT = 14000
MANAGEMENT_PORT = 15000
DNS_PORT = 10053
# Names under this domain that are not pointed anywhere get NXDOMAIN, like a name
# whose DNS record does not exist yet.
TEST_DOMAIN = "lab.test"
# 90 days, like Let's Encrypt (pebble's own default is 5 years).
VALIDITY_SECONDS = 90 * 86400


class AcmeServer:
    def __init__(self, state: Path = STATE / "acme"):
        self.dir = state
        self.hosts_file = state / "hosts"
        self.api_ca = state / "api-ca.pem"
        self.directory_url = f"https://{BRIDGE_IP}:{ACME_PORT}/dir"
        self._pid_files = {"pebble": state / "pebble.pid", "dnsmasq": state / "dnsmasq.pid"}
        self._names: dict[str, str] = {}

    def __enter__(self) -> AcmeServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.stop()
        self.dir.mkdir(parents=True, exist_ok=True)
        # dnsmasq drops to nobody and re-reads this file on SIGHUP.
        self.dir.chmod(0o755)
        self.hosts_file.write_text("")
        self.hosts_file.chmod(0o644)
        self._make_api_certificate()
        self._start(
            "dnsmasq",
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                f"--listen-address={BRIDGE_IP}",
                f"--port={DNS_PORT}",
                f"--local=/{TEST_DOMAIN}/",
                f"--addn-hosts={self.hosts_file}",
                "--pid-file=",
            ],
        )
        config = {
            "pebble": {
                "listenAddress": f"{BRIDGE_IP}:{ACME_PORT}",
                "managementListenAddress": f"{BRIDGE_IP}:{MANAGEMENT_PORT}",
                "certificate": str(self.dir / "api.pem"),
                "privateKey": str(self.dir / "api.key"),
                "httpPort": 80,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "certificateValidityPeriod": VALIDITY_SECONDS,
            }
        }
        (self.dir / "pebble.json").write_text(json.dumps(config, indent=2))
        # NOSLEEP: no random 0-15 s wait before each validation; NONCEREJECT=0: no
        # deliberately rejected nonces (certbot retries them, but slowly).
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
        self._start(
            "pebble",
            [
                "pebble",
                "-config",
                str(self.dir / "pebble.json"),
                "-dnsserver",
                f"{BRIDGE_IP}:{DNS_PORT}",
                "-strict=false",
            ],
            env=env,
        )
        wait_for_port(BRIDGE_IP, ACME_PORT, 20)
        wait_for_port(BRIDGE_IP, MANAGEMENT_PORT, 20)

    def _start(self, what: str, argv: list[str], env=None) -> None:
        log = open(self.dir / f"{what}.log", "w")
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self._pid_files[what].write_text(str(process.pid))
        time.sleep(0.3)
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start: {(self.dir / f'{what}.log').read_text()[-2000:]}")

    def _make_api_certificate(self) -> None:
        d = self.dir

        def openssl(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

        openssl(
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=jupyter-deploy lab ACME API CA",
            "-keyout",
            "api-ca.key",
            "-out",
            "api-ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        )
        openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            f"/CN={BRIDGE_IP}",
            "-keyout",
            "api.key",
            "-out",
            "api.csr",
        )
        (d / "api.ext").write_text(f"subjectAltName=IP:{BRIDGE_IP}\nextendedKeyUsage=serverAuth\n")
        openssl(
            "x509",
            "-req",
            "-in",
            "api.csr",
            "-CA",
            "api-ca.pem",
            "-CAkey",
            "api-ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "api.ext",
            "-out",
            "api.pem",
        )

    def point(self, name: str, address: str) -> None:
        """Make ``name`` resolve to ``address`` for pebble's validation (takes effect at once)."""
        self._names[name] = address
        self.hosts_file.write_text("".join(f"{ip} {n}\n" for n, ip in self._names.items()))
        pid = int(self._pid_files["dnsmasq"].read_text())
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.2)

    def issuing_root(self) -> str:
        """PEM of the root pebble's certificates chain to (a client trusting only it verifies them)."""
        context = ssl.create_default_context(cafile=str(self.api_ca))
        with urllib.request.urlopen(f"https://{BRIDGE_IP}:{MANAGEMENT_PORT}/roots/0", context=context) as answer:
            return answer.read().decode()

    def stop(self) -> None:
        for pid_file in self._pid_files.values():
            _stop_pid_file(pid_file)
