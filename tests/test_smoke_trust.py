"""The smoke check sends the password only where SSH says the host is, trusting only its certificate.

Two local HTTPS servers stand in for the deployed host and for whatever a stale DNS record
points at: both present a certificate for the same name. The name itself never resolves
(``.test``): the client must not need DNS at all.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import requests

from scripts import ci_deploy
from smoke.client import Jupyter
from tests import apache_local

ROOT = Path(__file__).resolve().parent.parent

NAME = "nb1.stale-dns.test"


class Server(apache_local.LoopbackHTTPS):
    """Records the SNI name and Host header of each request; answers "ok"."""

    def __init__(self, cert: str, key: str):
        self.seen: list[tuple[str | None, str | None]] = []

        def answer(path, headers, sni):
            self.seen.append((sni, headers.get("Host")))
            return 200, {}, b"ok"

        super().__init__(cert, key, answer)


@pytest.fixture
def servers(tmp_path):
    real_cert, real_key = apache_local.keypair(tmp_path, NAME, "real-")
    real, impostor = Server(real_cert, real_key), Server(*apache_local.keypair(tmp_path, NAME, "impostor-"))
    yield real, impostor, real_cert
    real.close()
    impostor.close()


def test_requests_go_to_the_given_address_with_the_name_in_sni_and_host(servers):
    real, _, real_cert = servers
    client = Jupyter(f"https://{NAME}:{real.port}/jupyter/", ca_file=str(real_cert), connect_to="127.0.0.1")
    assert client.get("login").text == "ok"
    assert real.seen == [(NAME, f"{NAME}:{real.port}")]


def test_only_the_host_s_own_certificate_is_trusted(servers):
    _, impostor, real_cert = servers
    client = Jupyter(f"https://{NAME}:{impostor.port}/jupyter/", ca_file=str(real_cert), connect_to="127.0.0.1")
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get("login")
    assert impostor.seen == []


def test_the_websocket_connection_is_pinned_and_verified_the_same_way(servers):
    real, impostor, real_cert = servers
    client = Jupyter(f"https://{NAME}:{real.port}/jupyter/", ca_file=str(real_cert), connect_to="127.0.0.1")
    sock = client._tls_socket(f"wss://{NAME}:{real.port}/jupyter/api/kernels/x/channels")
    assert sock.getpeername()[0] == "127.0.0.1" and sock.server_hostname == NAME
    sock.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        client._tls_socket(f"wss://{NAME}:{impostor.port}/jupyter/")


def test_the_ci_smoke_plan_trusts_each_self_signed_host_alone_at_its_ssh_address(tmp_path, monkeypatch):
    monkeypatch.delenv("SMOKE_CA_FILE", raising=False)
    pem = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----"
    targets = [
        {"host": "203.0.113.7", "server_name": NAME, "base_url": "/jupyter/", "tls_mode": "self-signed"},
        {"host": "nb2", "server_name": "nb2.example.org", "base_url": "/jupyter/", "tls_mode": "letsencrypt"},
        {"host": "nb3", "server_name": "nb3.example.org", "base_url": "/jupyter/", "tls_mode": "self-signed"},
    ]
    probes = {"203.0.113.7": f"198.51.100.9 50022 203.0.113.7 22\n{pem}\n", "nb3": ""}
    first, second, third = ci_deploy.smoke_plan(targets, probes, tmp_path)
    assert first["connect_to"] == "203.0.113.7" and first["target"] == NAME and first["error"] is None
    assert Path(first["ca_file"]).read_text() == pem + "\n"  # that certificate, no system CA
    assert second["connect_to"] is None and second["ca_file"] != first["ca_file"]
    assert third["error"] == "could not read its certificate and address over SSH"
