"""
Every security property of the default deploy, checked against the deployed lab hosts
from outside (and from inside over SSH where only the host can tell).
"""

import asyncio
import re
import time
import warnings

import pytest
import requests
import websocket

from lab.config import BRIDGE_IP, METADATA_IP, METADATA_IPV6, PROXY_PORT
from lab.network import MetadataService
from operations import tls
from smoke.client import Jupyter, _run_cell
from tests import apache_local
from tests.e2e.scenario import MACHINES, PASSWORD

NAMES = [name for name, _ in MACHINES]


def client(deployment, ca_files, name):
    return Jupyter(f"https://{deployment.address(name)}/jupyter/", ca_file=str(ca_files[name]))


# -- TLS ------------------------------------------------------------------------------


def mozilla_intermediate_issues(address: str, port: int = 443) -> dict:
    """Grade a TLS server against Mozilla's intermediate profile with sslyze's Python API.

    Raises unless the scan COMPLETED (sslyze's CLI exits 0 even when it cannot connect).
    """
    from sslyze import Scanner, ServerNetworkLocation, ServerScanRequest, ServerScanStatusEnum
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )

    location = ServerNetworkLocation(hostname=address, port=port, ip_address=address)
    scanner = Scanner()
    scanner.queue_scans(
        [ServerScanRequest(server_location=location, scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the system trust store has certificates cryptography frowns at
        [result] = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, f"sslyze could not scan {address}:{port}"
    try:
        check_server_against_tls_configuration(
            result, MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
        )
    except ServerNotCompliantWithTlsConfiguration as error:
        return error.issues
    return {}


@pytest.mark.parametrize("name", NAMES)
def test_tls_meets_mozilla_intermediate(deployment, name):
    issues = mozilla_intermediate_issues(deployment.address(name))
    # A self-signed certificate cannot chain to a public root: the only issue excused.
    assert set(issues) <= {"certificate_path_validation"}, issues


@pytest.mark.skipif(not apache_local.available(), reason="apache2-bin is installed by .ci/run")
def test_tls_grader_fails_a_deliberately_weak_vhost(tmp_path):
    """Negative control: the same grader, our vhost with its TLS lines weakened, on loopback."""
    cert, key = apache_local.keypair(tmp_path)
    vhost = apache_local.vhost("127.0.0.1", cert, key)
    vhost = vhost[vhost.index("<VirtualHost *:443>") :].replace("<VirtualHost *:443>", "<VirtualHost 127.0.0.1:18443>")
    vhost = re.sub(r"SSLProtocol .*", "SSLProtocol all", vhost)
    vhost = re.sub(r"SSLCipherSuite .*", "SSLCipherSuite ALL:@SECLEVEL=0", vhost)
    vhost = re.sub(r"SSLOpenSSLConfCmd Curves .*", "", vhost)
    config = apache_local.server_config(tmp_path, vhost, apache_local.VHOST_MODULES, listen=["127.0.0.1:18443"])
    with apache_local.LoopbackApache(config):
        issues = mozilla_intermediate_issues("127.0.0.1", 18443)
    assert {"tls_versions", "ciphers"} <= set(issues), issues


@pytest.mark.parametrize("name", NAMES)
def test_certificate_lives_at_most_366_days_and_its_key_is_root_only(deployment, name):
    dates = deployment.ssh(name, f"openssl x509 -in {tls.CERT} -noout -startdate -enddate -ext subjectAltName").stdout
    start, end = (
        time.mktime(time.strptime(value, "%b %d %H:%M:%S %Y GMT"))
        for value in re.findall(r"=(\w{3} +\d+ [\d:]+ \d{4} GMT)", dates)
    )
    assert (end - start) / 86400 <= 366
    assert f"IP Address:{deployment.address(name)}" in dates
    assert deployment.ssh(name, f"stat -c '%U:%G:%a' {tls.KEY}").stdout.strip() == "root:root:600"


@pytest.mark.parametrize("name", NAMES)
def test_hsts_and_referrer_policy_on_https_only(deployment, ca_files, name):
    address = deployment.address(name)
    https = requests.get(f"https://{address}/jupyter/login", verify=str(ca_files[name]), timeout=10)
    assert https.headers["Strict-Transport-Security"] == "max-age=63072000"
    # Links out of a notebook do not tell other sites its path.
    assert https.headers["Referrer-Policy"] == "same-origin"
    http = requests.get(f"http://{address}/jupyter/login", allow_redirects=False, timeout=10)
    assert http.status_code in (301, 308)
    assert "Strict-Transport-Security" not in http.headers


# -- Apache hygiene ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_no_version_banner_from_apache_or_jupyter(deployment, ca_files, name):
    jupyter = client(deployment, ca_files, name)
    proxied = jupyter.get("api/status")
    assert proxied.headers["Server"] == "Apache"
    apache_own = requests.get(
        f"https://{deployment.address(name)}/no-such-page", verify=str(ca_files[name]), timeout=10
    )
    assert apache_own.status_code == 404
    assert apache_own.headers["Server"] == "Apache"
    assert "Apache/" not in apache_own.text and "Tornado" not in apache_own.text


@pytest.mark.parametrize("name", NAMES)
def test_trace_is_disabled(deployment, ca_files, name):
    # Outside the proxied path, where Apache itself would answer a TRACE by echoing it.
    for path in ("/trace-probe", "/jupyter/"):
        response = requests.request(
            "TRACE", f"https://{deployment.address(name)}{path}", verify=str(ca_files[name]), timeout=10
        )
        assert response.status_code == 405, path


def test_client_sent_x_real_ip_and_x_scheme_are_ignored(deployment, ca_files):
    """tornado would trust these over X-Forwarded-*: a client could fake its address or drop Secure."""
    jupyter = client(deployment, ca_files, "nb1")
    jupyter.session.headers.update({"X-Real-IP": "203.0.113.99", "X-Scheme": "http"})
    response = jupyter.login(PASSWORD)
    assert "; Secure" in response.headers["Set-Cookie"]
    log = deployment.ssh("nb1", "journalctl -u jupyter --no-pager --since '-5 min'").stdout
    assert "203.0.113.99" not in log


def test_idle_kernel_websocket_survives(deployment, ca_files):
    """Jupyter pings every 30 s; the proxy must keep an idle websocket open past that."""
    jupyter = client(deployment, ca_files, "nb1")
    jupyter.login(PASSWORD)
    kernel = jupyter.api("POST", "kernels", json={"name": "python3"}).json()
    ws = jupyter.websocket(f"api/kernels/{kernel['id']}/channels")
    ws.settimeout(90)
    time.sleep(65)
    try:
        assert _run_cell(ws, "print(6*7)", 30) == "42\n"
    finally:
        ws.close()
        jupyter.api("DELETE", f"kernels/{kernel['id']}")


# -- Jupyter ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_xsrf_cookie_is_secure_and_samesite(deployment, ca_files, name):
    jupyter = client(deployment, ca_files, name)
    cookie = jupyter.get("login").headers["Set-Cookie"]
    assert cookie.startswith("_xsrf=")
    assert "; Secure" in cookie and "SameSite=Strict" in cookie


@pytest.mark.parametrize("name", NAMES)
def test_cross_origin_websocket_is_refused(deployment, ca_files, name):
    jupyter = client(deployment, ca_files, name)
    jupyter.login(PASSWORD)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        jupyter.websocket("api/events/subscribe", origin="https://evil.example")
    assert refused.value.status_code == 403


@pytest.mark.parametrize("name", NAMES)
def test_foreign_host_header_is_refused(deployment, ca_files, name):
    address = deployment.address(name)
    response = requests.get(
        f"https://{address}/jupyter/login", headers={"Host": "evil.example"}, verify=str(ca_files[name]), timeout=10
    )
    assert response.status_code == 403


@pytest.mark.parametrize("name", NAMES)
def test_no_token_login_and_no_api_without_password(deployment, ca_files, name):
    jupyter = client(deployment, ca_files, name)
    assert jupyter.get("api/contents?token=").status_code == 403
    assert jupyter.get("api/contents", headers={"Authorization": "token "}).status_code == 403
    config = deployment.ssh(name, "cat /etc/jupyter/jupyter_server_config.py").stdout
    assert 'c.IdentityProvider.token = ""' in config
    for unsafe in ('allow_origin = "*"', "disable_check_xsrf = True", "allow_root = True"):
        assert unsafe not in config


# -- Service ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_service_is_hardened_and_unprivileged(deployment, ca_files, name):
    score = deployment.ssh(name, "systemd-analyze security jupyter.service --no-pager | tail -1").stdout
    exposure = float(re.search(r"exposure level for jupyter.service: ([\d.]+)", score).group(1))
    assert exposure <= 2.0, score
    status = deployment.ssh(name, "cat /proc/$(systemctl show -p MainPID --value jupyter)/status").stdout
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert re.search(r"^CapEff:\s+0+$", status, re.M)
    owner = deployment.ssh(name, "ps -o user= -p $(systemctl show -p MainPID --value jupyter)").stdout.strip()
    assert owner == "jupyter"
    # ...and the hardening leaves notebooks working.
    jupyter = client(deployment, ca_files, name)
    jupyter.login(PASSWORD)
    assert jupyter.execute("import os; print(os.getuid() != 0)") == "True\n"


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_cannot_reach_the_cloud_metadata_service_but_keep_the_network(deployment, ca_files, name):
    """Linode's Metadata API answers on an IPv4 and two IPv6 addresses: all three are denied."""
    denied = deployment.ssh(name, "systemctl show -p IPAddressDeny --value jupyter").stdout.split()
    assert sorted(denied) == sorted([f"{METADATA_IP}/32", f"{METADATA_IPV6[0]}/128", f"{METADATA_IPV6[1]}/128"])
    # Root on the host reaches the lab's stand-in metadata service at each (as cloud-init does)...
    for url in (
        f"http://{METADATA_IP}/user-data",
        f"http://[{METADATA_IPV6[0]}]/user-data",
        f"http://[{METADATA_IPV6[1]}%25eth0]/user-data",
    ):
        assert deployment.ssh(name, f"curl -sg -m 5 '{url}'").stdout == MetadataService.USER_DATA, url
    jupyter = client(deployment, ca_files, name)
    jupyter.login(PASSWORD)
    code = (
        "import socket\n"
        "def probe(address, port):\n"
        "    try:\n"
        "        socket.create_connection((address, port), timeout=3).close()\n"
        "        return 'connected'\n"
        "    except OSError as error:\n"
        "        return type(error).__name__\n"
        f"print(probe('{METADATA_IP}', 80), probe('{METADATA_IPV6[0]}', 80), probe('{METADATA_IPV6[1]}%eth0', 80),"
        f" probe('{BRIDGE_IP}', {PROXY_PORT}))"
    )
    # ...a notebook does not: the unit's IPAddressDeny drops its packets. The lab's apt proxy
    # on the gateway stands for the rest of the network, which notebooks keep.
    *metadata, network = jupyter.execute(code).split()
    assert all(outcome in ("TimeoutError", "PermissionError") for outcome in metadata), metadata
    assert network == "connected"


# -- Firewall -----------------------------------------------------------------------------


async def _open_ports(address: str, ports, timeout: float = 1.0) -> set[int]:
    limit = asyncio.Semaphore(256)

    async def probe(port):
        async with limit:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
            except (TimeoutError, OSError):
                return None
            writer.close()
            return port

    return {port for port in await asyncio.gather(*(probe(p) for p in ports)) if port}


@pytest.mark.parametrize("name", NAMES)
def test_port_scan_sees_only_ssh_http_https(deployment, name):
    # Something listening on every address, as a notebook user might start: still unreachable.
    deployment.ssh(
        name, "systemd-run --unit=scan-bait --collect timeout 120 python3 -m http.server 9999 --bind 0.0.0.0"
    )
    try:
        deployment.ssh(name, "for i in $(seq 50); do ss -Hltn | grep -q ':9999 ' && exit 0; sleep 0.1; done; exit 1")
        ports = [*range(1, 1025), 3000, 5000, 8000, 8080, 8443, 8888, 9999]
        assert asyncio.run(_open_ports(deployment.address(name), ports)) == {22, 80, 443}
    finally:
        deployment.ssh(name, "systemctl stop scan-bait", check=False)


# -- Secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_password_never_reaches_the_host_and_the_hash_is_private(deployment, name):
    found = deployment.ssh(
        name,
        f"grep -rlsF '{PASSWORD}' /etc /var/log /var/lib /srv /root /tmp /var/tmp /opt/anaconda3/etc; "
        "journalctl --no-pager | grep -cF 'argon2id' || true",
        check=False,
    ).stdout.split()
    assert found == ["0"], found
    assert deployment.ssh(name, "stat -c '%U:%G:%a' /etc/jupyter/password_hash").stdout.strip() == "root:jupyter:640"
    assert deployment.ssh(name, "stat -c '%U:%G:%a' /etc/jupyter").stdout.strip() == "root:jupyter:750"


def test_deploy_output_never_shows_the_password_or_hash(deployment):
    stored = deployment.ssh("nb1", "cat /etc/jupyter/password_hash").stdout.strip()
    for run in deployment.runs.values():
        assert PASSWORD not in run.output
        assert stored.rsplit("$", 1)[1] not in run.output
