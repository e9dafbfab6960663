"""
Certificates from Let's Encrypt (or any ACME server) with certbot, HTTP-01 webroot.

certbot only obtains certificates here (``certonly --webroot``): its Apache installer
would rewrite the vhost this deploy owns. The ``:80`` vhost serves ``WEBROOT`` under
``/.well-known/acme-challenge/`` (and redirects everything else), so a fresh host is
served on :80 with a self-signed certificate on :443 first, then certbot runs, then
the vhost switches to ``/etc/letsencrypt/live/NAME/``.

Renewal is certbot's own ``certbot.timer``; the hook in ``renewal-hooks/deploy/``
reloads Apache after every renewal (timer or ``certbot renew`` by hand), only when
``apache2ctl configtest`` passes. A private ACME server's CA (``acme_ca_bundle``) goes
into the system trust store, which Debian's certbot uses for every run, so neither the
timer nor an admin needs extra environment.
"""

from __future__ import annotations

import hashlib
import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, deploy, operation

from . import apache, settings, snapshot, tls
from .render import render

RENEWAL = "/etc/letsencrypt/renewal"
WEBROOT = tls.ACME_WEBROOT
DEPLOY_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/jupyter-apache-reload"
# update-ca-certificates picks up *.crt files here into /etc/ssl/certs/ca-certificates.crt.
TRUSTED_CA = "/usr/local/share/ca-certificates/jupyter-deploy-acme.crt"
PACKAGES = ["certbot", "ca-certificates"]


live_paths = tls.live_paths


class RenewalConfig(snapshot.Probe):
    """
    ``None`` when certbot keeps no renewal configuration named ``cert_name``, else a dict:
    ``server`` (the ACME directory it renews from) and ``authenticator``.
    """

    def __init__(self, cert_name: str):
        self.cert_name = cert_name

    def command(self):
        renewal = shlex.quote(f"{RENEWAL}/{self.cert_name}.conf")
        return f"[ ! -f {renewal} ] || sed -n 's/^\\(server\\|authenticator\\) *= *\\(.*\\)$/\\1=\\2/p' {renewal}"

    def parse(self, output):
        values = dict(line.strip().split("=", 1) for line in output if "=" in line)
        if not values:
            return None
        return {"server": values.get("server"), "authenticator": values.get("authenticator")}


@operation()
def certificate(server_name: str, webroot: str, server: str, state: snapshot.Snapshot, email: str = ""):
    """
    Obtain a certificate for one name with ``certbot certonly --webroot``, when needed.

    + server_name: the DNS name (also certbot's ``--cert-name``)
    + webroot: directory the :80 vhost serves ``/.well-known/acme-challenge/`` from
    + server: ACME directory URL
    + state: the concern's ``certbot_snapshot`` (certbot's certificate and renewal config)
    + email: account contact address; ``""`` registers without one

    A certificate for exactly this name from this server is left to certbot's timer.
    Otherwise certbot runs; a certificate it already has (other server, other names,
    expired) is replaced. When issuance fails, the ACME server's reason is printed with
    one summary line and the operation fails; nothing else is changed, so the next run
    retries.

    **Example:**

    .. code:: python

        letsencrypt.certificate(name="Let's Encrypt certificate", server_name="nb.example.org",
                                webroot="/var/www/acme-challenge",
                                server="https://acme-v02.api.letsencrypt.org/directory",
                                state=certbot_snapshot("nb.example.org"))
    """
    current = state.probe("live")
    renewal = state.probe("renewal")
    if (
        current
        and not current["expiring"]
        and current["names"] == [f"DNS:{server_name}"]
        and renewal == {"server": server, "authenticator": "webroot"}
    ):
        host.noop(f"certbot has a certificate for {server_name} from {server}; certbot.timer renews it")
        return
    q = shlex.quote
    contact = f"--email {q(email)} --no-eff-email" if email else "--register-unsafely-without-email"
    # --force-renewal: certbot would keep a lineage that is merely not yet due even
    # when it is from another server or for other names.
    when = "--force-renewal" if current or renewal else "--keep-until-expiring"
    certbot = (
        f"certbot certonly --non-interactive --agree-tos {contact} --server {q(server)} "
        f"--webroot -w {q(webroot)} -d {q(server_name)} --cert-name {q(server_name)} "
        f"--key-type ecdsa --elliptic-curve secp256r1 {when}"
    )
    failed = (
        f"Let's Encrypt: no certificate for {server_name} from {server} (reason above: most often the "
        "name does not point at this host yet or port 80 is unreachable); the site keeps its "
        "self-signed certificate and the next run tries again"
    )
    # certbot's full output is long; on failure the ACME server's own reason
    # (its Type:/Detail: lines) and one summary line are what the run shows.
    # After a new certificate, the deploy hook (as certbot runs it after a renewal) points
    # Apache at it and reloads Apache, after its configtest.
    lineage = tls.live_dir(server_name)
    yield StringCommand(
        f"out=$({certbot} 2>&1) || {{ printf '%s\\n' \"$out\" | grep -i -E '^ *(Domain|Type|Detail|Hint):|error' >&2 "
        f"|| printf '%s\\n' \"$out\" | tail -n 5 >&2; echo {q(failed)} >&2; exit 1; }}; "
        f"RENEWED_LINEAGE={q(lineage)} {q(DEPLOY_HOOK)}",
    )


@snapshot.claiming("path")
@operation()
def ca_trusted(path: str, pem: str | None, state: snapshot.Snapshot):
    """
    Trust (or stop trusting) a CA system-wide, e.g. a private ACME server's.

    + path: a ``.crt`` file under ``/usr/local/share/ca-certificates``
    + pem: the CA certificate(s), PEM; ``None`` removes the file
    + state: the concern's ``snapshot.Snapshot`` holding ``path``

    ``update-ca-certificates`` rebuilds ``/etc/ssl/certs/ca-certificates.crt``, the bundle
    Debian's certbot (and curl, and Python's requests) verify against.

    **Example:**

    .. code:: python

        letsencrypt.ca_trusted(name="Trust the ACME server", path=TRUSTED_CA, pem=ca_text, state=state)
    """
    current = state.sha256(path)
    if pem is None:
        if current is None:
            host.noop(f"{path} is absent")
            return
        yield f"rm -f {shlex.quote(path)} && update-ca-certificates --fresh >/dev/null"
        return
    if current == hashlib.sha256(pem.encode()).hexdigest():
        host.noop(f"{path} is up to date")
        return
    yield FileUploadCommand(StringIO(pem), path)
    yield f"chmod 644 {shlex.quote(path)} && update-ca-certificates --fresh >/dev/null"


def packages(data) -> list[str]:
    """What the concern installs (through ``system.install_packages``)."""
    return PACKAGES if data.get("tls_mode", settings.DEFAULTS["tls_mode"]) == "letsencrypt" else []


def deploy_hook(server_name: str) -> str:
    """certbot's deploy hook: the served links to the new certificate, configtest, reload."""
    return render(
        "certbot-deploy-hook.sh.j2",
        lineage=tls.live_dir(server_name),
        served_cert=tls.SERVED_CERT,
        served_key=tls.SERVED_KEY,
        reload_stamp=apache.RELOAD_STAMP,
    )


def certbot_snapshot(server_name: str) -> snapshot.Snapshot:
    """The concern's host state in one command: its files, certbot's timer, certificate and renewal config."""
    cert, key = live_paths(server_name)
    return snapshot.Snapshot(
        paths=[TRUSTED_CA, DEPLOY_HOOK, WEBROOT],
        units=["certbot.timer"],
        probes={
            "live": tls.Certificate(cert, key, renew_before_days=0),
            "renewal": RenewalConfig(server_name),
        },
    )


@deploy(
    "Let's Encrypt certificate",
    data_defaults=settings.defaults(
        "tls_mode", "server_name", "letsencrypt_email", "acme_directory_url", "acme_ca_bundle"
    ),
)
def configure_letsencrypt():
    """
    In ``letsencrypt`` mode: obtain the certificate, keep it renewed and have Apache serve
    it (runs after Apache, whose :80 vhost serves ``WEBROOT``). In other modes: no CA
    trusted for a private ACME server any more.
    """
    letsencrypt_mode = host.data.tls_mode == "letsencrypt"
    name = settings.server_name(host)
    state = certbot_snapshot(name) if letsencrypt_mode else snapshot.Snapshot(paths=[TRUSTED_CA])
    bundle = host.data.acme_ca_bundle if letsencrypt_mode else None
    ca_trusted(
        name="Trust the ACME server's CA (acme_ca_bundle)" if bundle else "No private ACME CA trusted",
        path=TRUSTED_CA,
        pem=open(bundle, encoding="ascii").read() if bundle else None,
        state=state,
    )
    if not letsencrypt_mode:
        return
    snapshot.put(
        name="certbot deploy hook: serve the new certificate, configtest, then reload Apache",
        src=snapshot.text(deploy_hook(name)),
        dest=DEPLOY_HOOK,
        user="root",
        group="root",
        mode="755",
        create_remote_dir=True,
        state=state,
    )
    snapshot.service(name="certbot.timer renews certificates", service="certbot.timer", state=state)
    snapshot.directory(name="ACME challenge webroot", path=WEBROOT, user="root", group="root", mode="755", state=state)
    # A new certificate is served at once: the deploy hook points the served links at it and
    # reloads Apache, as it does after each renewal.
    certificate(
        name="Certificate for the server name from the ACME server (certbot, webroot)",
        server_name=name,
        webroot=WEBROOT,
        server=host.data.acme_directory_url,
        email=host.data.letsencrypt_email,
        state=state,
    )
