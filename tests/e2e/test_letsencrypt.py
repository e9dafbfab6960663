"""
tls_mode letsencrypt against a real ACME server: Debian's pebble on the lab bridge, with a
dnsmasq answering for the test names. Two fresh hosts (Debian 12 and 13) in one run: nb4's
name resolves and gets its certificate in that first run; nb5's does not resolve yet, so
its run fails with the ACME server's reason while its site stays up on a self-signed
certificate; once its name resolves, the next run gets it. Then renewals: by hand, from
certbot's timer, and one that a broken Apache config must not make live.

Clients here trust only pebble's issuing root, check the hostname and never skip
verification: the certificate chain Apache sends must be complete.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import threading
import time

import pytest

from lab import standin
from lab.acme import TEST_DOMAIN, AcmeServer
from smoke.client import Jupyter
from tests.e2e.scenario import FIGURES, PASSWORD, TIMINGS, Deployment

NAMES = {"nb4": f"nb4.{TEST_DOMAIN}", "nb5": f"nb5.{TEST_DOMAIN}"}
LIVE = "/etc/letsencrypt/live/{}/fullchain.pem"
CERTBOT_STEP = "Let's Encrypt certificate | Certificate for the server name from the ACME server (certbot, webroot)"


@pytest.fixture(scope="module")
def acme(lab):
    with AcmeServer() as server:
        yield server


@pytest.fixture(scope="module")
def resolve_test_names(lab):
    """This process resolves the test names to the lab hosts (as the hosts' public DNS would)."""
    addresses = {NAMES[name]: lab.hosts[name].ip for name in NAMES}
    original = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return original(addresses.get(host, host), *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    yield addresses
    socket.getaddrinfo = original


@pytest.fixture(scope="module")
def root_file(acme, tmp_path_factory):
    path = tmp_path_factory.mktemp("pebble") / "issuing-root.pem"
    path.write_text(acme.issuing_root())
    return path


@pytest.fixture(scope="module")
def le(lab, acme, standin_installer, tmp_path_factory, resolve_test_names, root_file):
    """
    First run: nb4 resolves, nb5 does not. Then nb5 is pointed at its host, second run;
    third run changes nothing. What each host served after the first run is recorded.
    """
    path, digest = standin_installer
    deployment = Deployment(
        lab,
        tmp_path_factory.mktemp("letsencrypt"),
        lab.url(standin.url_path(path)),
        digest,
        names=list(NAMES),
        data={
            name: {
                "server_name": NAMES[name],
                "tls_mode": "letsencrypt",
                "letsencrypt_email": f"admin@{TEST_DOMAIN}",
                "acme_directory_url": acme.directory_url,
                "acme_ca_bundle": str(acme.api_ca),
            }
            for name in NAMES
        },
    )
    acme.point(NAMES["nb4"], lab.hosts["nb4"].ip)
    deployment.runs["first"] = deployment.pyinfra()
    # nb5 as a visitor sees it now: its self-signed certificate, trusted here explicitly.
    deployment.served_after_first = served_certificate(deployment, "nb5")
    fallback = deployment.workdir / "nb5-fallback.pem"
    fallback.write_text(deployment.ssh("nb5", "cat /etc/ssl/certs/jupyter-apache.crt").stdout)
    deployment.login_page_after_first = Jupyter(f"https://{NAMES['nb5']}/jupyter/", ca_file=str(fallback)).get("login")
    acme.point(NAMES["nb5"], lab.hosts["nb5"].ip)
    deployment.runs["second"] = deployment.pyinfra()
    deployment.runs["third"] = deployment.pyinfra()
    for run_name, run in deployment.runs.items():
        TIMINGS[f"letsencrypt: {run_name} run, 2 hosts"] = run.seconds
    return deployment


def served_certificate(deployment, name, ca_file=None) -> dict:
    """The certificate Apache presents for the host's name: subject, issuer and serial."""
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else ssl._create_unverified_context()
    with socket.create_connection((deployment.address(name), 443), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=NAMES[name]) as tls:
            der = tls.getpeercert(binary_form=True)
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-issuer", "-serial"],
        input=ssl.DER_cert_to_PEM_cert(der),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fields = {k: v.strip() for k, v in (line.split("=", 1) for line in text.splitlines())}
    fields["serial"] = int(fields["serial"], 16)
    return fields


def live_serial(deployment, name) -> int:
    out = deployment.ssh(name, f"openssl x509 -in {LIVE.format(NAMES[name])} -noout -serial").stdout
    return int(out.split("=")[1], 16)


class TlsPoller(threading.Thread):
    """Every 50 ms: a verified TLS connection (pebble root only) and GET of the login page."""

    def __init__(self, deployment, name, root):
        super().__init__(daemon=True)
        self.args = (deployment, name, root)
        self.done = threading.Event()
        self.serials: list[int] = []
        self.failures: list[str] = []

    def run(self):
        deployment, name, root = self.args
        context = ssl.create_default_context(cafile=str(root))
        while not self.done.is_set():
            try:
                with socket.create_connection((deployment.address(name), 443), timeout=5) as raw:
                    with context.wrap_socket(raw, server_hostname=NAMES[name]) as tls:
                        serial = int(tls.getpeercert()["serialNumber"], 16)
                        tls.sendall(
                            f"GET /jupyter/login HTTP/1.1\r\nHost: {NAMES[name]}\r\nConnection: close\r\n\r\n".encode()
                        )
                        status = tls.recv(64).decode(errors="replace").split(" ")[1]
                if status == "200":
                    self.serials.append(serial)
                else:
                    self.failures.append(status)
            except (OSError, IndexError) as error:
                self.failures.append(repr(error))
            time.sleep(0.05)


def renewed_without_downtime(deployment, name, root, command) -> tuple[int, int, TlsPoller, str]:
    before = live_serial(deployment, name)
    poller = TlsPoller(deployment, name, root)
    poller.start()
    try:
        time.sleep(0.5)
        output = deployment.ssh(name, command, timeout=180).stdout
        time.sleep(1)
    finally:
        poller.done.set()
        poller.join()
    return before, live_serial(deployment, name), poller, output


# -- first run ------------------------------------------------------------------------


def test_fresh_host_ends_its_first_run_with_the_issued_certificate(le, root_file):
    # certbot's step serves what it got: it runs the deploy hook (links, configtest, reload).
    assert CERTBOT_STEP in le.runs["first"].changed()[le.address("nb4")]
    served = served_certificate(le, "nb4", ca_file=root_file)  # raises unless chain + name verify
    assert served["subject"] == f"CN = {NAMES['nb4']}" and "Pebble Intermediate CA" in served["issuer"]


def test_failed_issuance_says_why_and_the_site_stays_up_on_a_self_signed_certificate(le):
    first = le.runs["first"]
    assert first.returncode != 0
    nb5 = le.address("nb5")
    assert re.search(rf"\[{re.escape(nb5)}\].*Detail:.*could not resolve", first.output)
    assert f"Let's Encrypt: no certificate for {NAMES['nb5']} from" in first.output
    assert "the site keeps its self-signed certificate and the next run tries again" in first.output
    served = le.served_after_first
    assert served["subject"] == served["issuer"] == f"CN = {NAMES['nb5']}"
    assert le.login_page_after_first.status_code == 200 and 'type="password"' in le.login_page_after_first.text
    # Everything before the certificate step was done on nb5 (the firewall is the last of it).
    assert "Firewall | Allow SSH, HTTP, HTTPS only" in first.changed()[nb5]


def test_next_run_retries_and_switches_to_the_issued_certificate(le, root_file):
    second = le.runs["second"]
    assert second.returncode == 0, second.output[-4000:]
    assert second.changed() == {le.address("nb5"): [CERTBOT_STEP]}
    served = served_certificate(le, "nb5", ca_file=root_file)
    assert served["subject"] == f"CN = {NAMES['nb5']}" and "Pebble Intermediate CA" in served["issuer"]


def test_a_converged_host_requests_nothing_new(le):
    third = le.runs["third"]
    assert third.returncode == 0, third.output[-4000:]
    assert third.changed() == {}
    assert third.totals["no_change"] >= 2 * 20


@pytest.mark.parametrize("name", list(NAMES))
def test_notebook_works_through_the_issued_certificate(le, root_file, name):
    jupyter = Jupyter(f"https://{NAMES[name]}/jupyter/", ca_file=str(root_file))
    jupyter.login(PASSWORD)
    assert jupyter.execute("print(6 * 7)").strip() == "42"


@pytest.mark.parametrize("name", list(NAMES))
def test_vhost_serves_certbots_live_files_and_renewal_is_set_up(le, name):
    vhost = le.ssh(name, "cat /etc/apache2/sites-available/jupyter.conf").stdout
    # The vhost names the served links (operations/tls.py); they point at certbot's live files.
    assert "SSLCertificateFile /etc/ssl/certs/jupyter-apache-served.crt" in vhost
    assert "SSLCertificateKeyFile /etc/ssl/private/jupyter-apache-served.key" in vhost
    targets = le.ssh(
        name, "readlink /etc/ssl/certs/jupyter-apache-served.crt /etc/ssl/private/jupyter-apache-served.key"
    ).stdout.split()
    assert targets == [
        f"/etc/letsencrypt/live/{NAMES[name]}/fullchain.pem",
        f"/etc/letsencrypt/live/{NAMES[name]}/privkey.pem",
    ]
    renewal = le.ssh(name, f"cat /etc/letsencrypt/renewal/{NAMES[name]}.conf").stdout
    assert "authenticator = webroot" in renewal and f"server = {le.data[name]['acme_directory_url']}" in renewal
    assert le.ssh(name, "systemctl is-enabled certbot.timer; systemctl is-active certbot.timer").stdout.split() == [
        "enabled",
        "active",
    ]
    # certbot's Apache installer never ran: no vhost of its own, no edits to ours.
    assert le.ssh(name, "ls /etc/apache2/sites-enabled/").stdout.split() == ["jupyter.conf"]


# -- renewals -------------------------------------------------------------------------


def test_renewal_by_hand_replaces_the_certificate_without_downtime(le, root_file):
    """An admin's `certbot renew` in a plain SSH session: no extra environment."""
    before, after, poller, output = renewed_without_downtime(
        le,
        "nb4",
        root_file,
        "env | grep -c -i -E 'ca_bundle|ssl_cert' ; certbot renew --force-renewal --no-random-sleep-on-renew 2>&1",
    )
    FIGURES["letsencrypt: site answers during a renewal"] = f"{len(poller.serials)} OK, {len(poller.failures)} failed"
    assert output.startswith("0\n"), output  # no CA variables in the admin's environment
    assert "all renewals succeeded" in output, output
    assert after != before
    assert poller.failures == []
    assert poller.serials[0] == before and poller.serials[-1] == after


def test_renewal_from_certbots_timer_unit(le, root_file):
    """certbot.service as the timer starts it; made due by asking for renewal 90 days early."""
    name, conf = "nb5", f"/etc/letsencrypt/renewal/{NAMES['nb5']}.conf"
    le.ssh(name, f"sed -i '1i renew_before_expiry = 90 days' {conf}")
    try:
        before, after, poller, output = renewed_without_downtime(
            le, name, root_file, "systemctl start certbot.service && systemctl show -p Result certbot.service"
        )
    finally:
        le.ssh(name, f"sed -i '/^renew_before_expiry = 90 days$/d' {conf}")
    assert "Result=success" in output
    assert after != before
    assert poller.failures == []
    assert poller.serials[-1] == after


def test_a_renewal_never_makes_a_broken_apache_config_live(le, root_file):
    broken = "/etc/apache2/conf-enabled/zz-broken-by-test.conf"
    le.ssh("nb4", f"echo 'NotADirective on' > {broken}")
    try:
        before, after, poller, output = renewed_without_downtime(
            le, "nb4", root_file, "certbot renew --force-renewal --no-random-sleep-on-renew 2>&1"
        )
        assert after != before
        assert "apache2ctl configtest fails; Apache NOT reloaded" in output
        assert "Invalid command 'NotADirective'" in output
        assert poller.failures == []
        # Still the old certificate: Apache was not reloaded into the broken config.
        assert served_certificate(le, "nb4", ca_file=root_file)["serial"] == before
    finally:
        le.ssh("nb4", f"rm -f {broken}")
    # The next deploy notices the certificate Apache does not serve yet, and reloads.
    run = le.pyinfra()
    assert run.returncode == 0, run.output[-4000:]
    assert run.changed() == {le.address("nb4"): ["Apache reverse proxy | Reload Apache (after configtest)"]}
    assert served_certificate(le, "nb4", ca_file=root_file)["serial"] == live_serial(le, "nb4")


def test_after_renewals_a_deploy_changes_nothing(le):
    run = le.pyinfra()
    assert run.returncode == 0, run.output[-4000:]
    assert run.changed() == {}
