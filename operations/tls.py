"""
The TLS keypair Apache serves (``served_paths``), and the self-signed one it falls back to.

``self-signed`` (the default) makes an ECDSA P-256 certificate for the server name,
valid 365 days (Mozilla's profile rejects lifespans over 366 days). It is created
once and replaced only when missing, within 30 days of expiry, or issued for a
different name, so re-runs change nothing and a renamed host gets a matching one.
With ``letsencrypt`` it is the fallback that keeps the site up until certbot's
certificate exists (``letsencrypt.py``): then the vhost names two links, ``SERVED_CERT``
and ``SERVED_KEY``, which point at certbot's live certificate once it has a valid one for
the server name and at the self-signed pair until then. Which one is decided on the host
when the run gets there, so nothing is read while the run is planned.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, deploy, operation

from . import settings, snapshot

CERT = "/etc/ssl/certs/jupyter-apache.crt"
KEY = "/etc/ssl/private/jupyter-apache.key"
DAYS = 365
RENEW_BEFORE_DAYS = 30
PACKAGES = ["openssl"]
# In letsencrypt mode the vhost names these links (see the module's docstring).
SERVED_CERT = "/etc/ssl/certs/jupyter-apache-served.crt"
SERVED_KEY = "/etc/ssl/private/jupyter-apache-served.key"
# Where certbot keeps each certificate current, and the directory the :80 vhost serves
# /.well-known/acme-challenge/ from (letsencrypt.py fills both).
LIVE = "/etc/letsencrypt/live"
ACME_WEBROOT = "/var/www/acme-challenge"


def packages(data) -> list[str]:
    """What the concern installs (through ``system.install_packages``)."""
    return PACKAGES


def live_dir(name: str) -> str:
    """certbot's lineage directory for ``name`` (its ``--cert-name``)."""
    return f"{LIVE}/{name}"


def live_paths(name: str) -> tuple[str, str]:
    """The certificate (with its chain: Apache must send the intermediate) and key certbot keeps current."""
    return f"{live_dir(name)}/fullchain.pem", f"{live_dir(name)}/privkey.pem"


def served_paths(tls_mode: str) -> tuple[str, str]:
    """The certificate and key the vhost names."""
    return (SERVED_CERT, SERVED_KEY) if tls_mode == "letsencrypt" else (CERT, KEY)


class Certificate(snapshot.Probe):
    """
    ``None`` when the certificate or key is missing, else a dict: ``expiring`` (within
    ``renew_before_days``) and ``names`` (its subjectAltName entries, e.g.
    ``"DNS:nb.example.org"``, ``"IP:203.0.113.7"``).
    """

    def __init__(self, cert: str, key: str, renew_before_days: int = RENEW_BEFORE_DAYS):
        self.cert, self.key, self.renew_before_days = cert, key, renew_before_days

    def command(self):
        seconds = int(self.renew_before_days) * 86400
        q_cert, q_key = shlex.quote(self.cert), shlex.quote(self.key)
        return (
            f"if [ -f {q_cert} ] && [ -f {q_key} ]; then "
            f"openssl x509 -in {q_cert} -noout -checkend {seconds} >/dev/null && echo valid || echo expiring; "
            f"openssl x509 -in {q_cert} -noout -ext subjectAltName 2>/dev/null | tail -n +2; fi"
        )

    def parse(self, output):
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
def self_signed(cert: str, key: str, server_name: str, state: snapshot.Snapshot, days: int = DAYS):
    """
    Make a self-signed certificate (ECDSA P-256) for one name when needed.

    + cert: certificate path (world-readable)
    + key: private key path (root only, mode 600)
    + server_name: DNS name or IP address the certificate is for
    + state: the TLS concern's ``certificate_snapshot`` (its ``self-signed`` probe reads ``cert``)
    + days: validity; keep it at most 366 for Mozilla's profile

    **Example:**

    .. code:: python

        tls.self_signed(name="Self-signed certificate", cert="/etc/ssl/certs/nb.crt",
                        key="/etc/ssl/private/nb.key", server_name="nb.example.org",
                        state=tls.certificate_snapshot("nb.example.org"))
    """
    current = state.probe("self-signed")
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


def certificate_snapshot(server_name: str) -> snapshot.Snapshot:
    """The TLS concern's host state: the self-signed pair, certbot's live one, the links."""
    live_cert, live_key = live_paths(server_name)
    return snapshot.Snapshot(
        paths=[SERVED_CERT, SERVED_KEY],
        probes={
            "self-signed": Certificate(CERT, KEY),
            "live": Certificate(live_cert, live_key, renew_before_days=0),
        },
    )


@snapshot.claiming(lambda arguments: [SERVED_CERT, SERVED_KEY])
@operation()
def served_links(server_name: str, state: snapshot.Snapshot):
    """
    Point ``SERVED_CERT``/``SERVED_KEY`` at certbot's live certificate for ``server_name``
    when it has a valid one, else at the self-signed pair.

    + server_name: the DNS name certbot's certificate is for
    + state: the concern's ``certificate_snapshot``, read when this operation runs

    **Example:**

    .. code:: python

        tls.served_links(name="Serve the issued certificate", server_name="nb.example.org",
                         state=tls.certificate_snapshot("nb.example.org"))
    """
    live = state.probe("live")
    issued = live and not live["expiring"] and live["names"] == [f"DNS:{server_name}"]
    targets = live_paths(server_name) if issued else (CERT, KEY)
    todo = [
        (link, target)
        for link, target in zip((SERVED_CERT, SERVED_KEY), targets, strict=True)
        if state.path(link).detail != target
    ]
    if not todo:
        host.noop(f"Apache serves {targets[0]}")
        return
    for link, target in todo:
        yield StringCommand("ln", "-sfn", QuoteString(target), QuoteString(link))


@deploy("TLS certificate", data_defaults=settings.defaults("tls_mode", "server_name"))
def install_certificate():
    """
    The certificate and key the vhost names (``served_paths``): the self-signed pair (in
    ``letsencrypt`` mode the fallback), and in that mode the links to what is served.
    """
    name = settings.server_name(host)
    state = certificate_snapshot(name)
    self_signed(name="Self-signed certificate for the server name", cert=CERT, key=KEY, server_name=name, state=state)
    if host.data.tls_mode == "letsencrypt":
        served_links(
            name="The served certificate: certbot's when it has one, else the self-signed",
            server_name=name,
            state=state,
        )
    else:
        for link in (SERVED_CERT, SERVED_KEY):
            snapshot.absent(name=f"No {link} (letsencrypt mode only)", path=link, state=state)
