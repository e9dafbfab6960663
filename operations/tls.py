"""
The TLS keypair Apache serves.

``self-signed`` (the default) makes an ECDSA P-256 certificate for the server name,
valid 365 days (Mozilla's profile rejects lifespans over 366 days). It is created
once and replaced only when missing, within 30 days of expiry, or issued for a
different name, so re-runs change nothing and a renamed host gets a matching one.
With ``letsencrypt`` it is the fallback that keeps the site up until certbot's
certificate exists (``letsencrypt.py``).
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, deploy, operation

from . import settings

CERT = "/etc/ssl/certs/jupyter-apache.crt"
KEY = "/etc/ssl/private/jupyter-apache.key"
DAYS = 365
RENEW_BEFORE_DAYS = 30
PACKAGES = ["openssl"]


class Certificate(FactBase):
    """
    Returns ``None`` when the certificate or key is missing, else a dict: ``expiring``
    (within ``renew_before_days``) and ``names`` (its subjectAltName entries, e.g.
    ``"DNS:nb.example.org"``, ``"IP:203.0.113.7"``).
    """

    def command(self, cert, key, renew_before_days=RENEW_BEFORE_DAYS):
        seconds = renew_before_days * 86400
        return (
            f"if [ -f {cert} ] && [ -f {key} ]; then "
            f"openssl x509 -in {cert} -noout -checkend {seconds} >/dev/null && echo valid || echo expiring; "
            f"openssl x509 -in {cert} -noout -ext subjectAltName 2>/dev/null | tail -n +2; fi"
        )

    def process(self, output):
        lines = [line.strip() for line in output if line.strip()]
        if not lines:
            return None
        names = set()
        for line in lines[1:]:
            for entry in line.split(","):
                kind, _, value = entry.strip().partition(":")
                names.add(("IP" if kind == "IP Address" else kind) + ":" + value.strip())
        return {"expiring": lines[0] != "valid", "names": sorted(names)}


def san_for(name: str) -> str:
    """The subjectAltName entry for a server name, as openssl prints it."""
    return ("IP:" if settings.is_ip(name) else "DNS:") + name


@operation()
def self_signed(cert: str, key: str, server_name: str, days: int = DAYS):
    """
    Make a self-signed certificate (ECDSA P-256) for one name when needed.

    + cert: certificate path (world-readable)
    + key: private key path (root only, mode 600)
    + server_name: DNS name or IP address the certificate is for
    + days: validity; keep it at most 366 for Mozilla's profile

    **Example:**

    .. code:: python

        tls.self_signed(name="Self-signed certificate", cert="/etc/ssl/certs/nb.crt",
                        key="/etc/ssl/private/nb.key", server_name="nb.example.org")
    """
    current = host.get_fact(Certificate, cert=cert, key=key)
    san = san_for(server_name)
    if current and not current["expiring"] and current["names"] == [san]:
        host.noop(f"certificate for {san} is valid for more than {RENEW_BEFORE_DAYS} days")
        return
    q = shlex.quote
    subject = q(f"/CN={server_name}")
    yield StringCommand(
        # umask 077: the new key is never readable by anyone but root, not even briefly.
        f"umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 "
        f"-days {int(days)} -subj {subject} -addext {q('subjectAltName=' + san)} "
        f"-addext extendedKeyUsage=serverAuth -keyout {q(key)}.new -out {q(cert)}.new 2>&1 "
        f"&& chmod 600 {q(key)}.new && chmod 644 {q(cert)}.new "
        f"&& mv -f {q(key)}.new {q(key)} && mv -f {q(cert)}.new {q(cert)}",
    )


@deploy("TLS certificate", data_defaults=settings.defaults("tls_mode", "server_name"))
def install_certificate():
    """Make sure the certificate and key the vhost names exist; returns (cert, key, operation)."""
    op = self_signed(
        name="Self-signed certificate for the server name",
        cert=CERT,
        key=KEY,
        server_name=settings.server_name(host),
    )
    return CERT, KEY, op
