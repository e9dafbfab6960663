"""
SSH lockout: a host reached on another port through the user's ~/.ssh/config (``Port``),
with no ``ssh_port`` in the host data, keeps that port open in ufw, run after run; and ufw
is never enabled while the port of the SSH connection doing it is not allowed.
"""

import socket

import pytest

from operations import firewall
from tests.e2e.scenario import Deployment

NAME = "nb2"
SECOND_PORT = 2222
DROPIN = "/etc/ssh/sshd_config.d/zz-lab-second-port.conf"


def reachable(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=3).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def second_port(deployment, tmp_path_factory):
    """nb2's sshd also listens on 2222 and ufw starts from nothing (reset, inactive)."""
    deployment.ssh(
        NAME,
        f"printf 'Port 22\\nPort {SECOND_PORT}\\n' > {DROPIN} && systemctl restart ssh && "
        f"for i in $(seq 50); do ss -Hltn | grep -q ':{SECOND_PORT} ' && exit 0; sleep 0.1; done; exit 1",
    )
    deployment.ssh(NAME, "ufw --force reset >/dev/null")
    try:
        yield
    finally:
        # Back to what the deploy leaves (22, 80 and 443 allowed, ufw active); from outside
        # the host's network when a failure locked SSH out, so later tests still reach nb2.
        restore = (
            f"rm -f {DROPIN} && systemctl restart ssh; ufw --force delete allow {SECOND_PORT}/tcp; "
            "ufw allow 22/tcp && ufw allow 80/tcp && ufw allow 443/tcp && ufw default deny incoming "
            "&& ufw --force enable"
        )
        if deployment.ssh(NAME, restore, check=False).returncode == 255:
            deployment.lab.console(deployment.lab.hosts[NAME], restore)


def test_ufw_is_not_enabled_while_the_connected_ssh_port_is_not_allowed(deployment, second_port):
    refused = deployment.ssh(NAME, firewall.ENABLE_UNLESS_LOCKOUT, check=False)
    assert refused.returncode == 1
    assert "refusing to enable ufw: this SSH connection came in on port 22, which is not allowed" in refused.stderr
    assert deployment.ssh(NAME, "ufw status").stdout.strip() == "Status: inactive"


def test_a_port_from_ssh_config_stays_open_after_two_runs(deployment, second_port, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ssh-config")
    address = deployment.address(NAME)
    config = workdir / "ssh_config"
    config.write_text(f"Host {address}\n    Port {SECOND_PORT}\n")
    one_host = Deployment(
        deployment.lab,
        workdir,
        deployment.installer_url,
        deployment.installer_sha256,
        names=[NAME],
        data={NAME: {"ssh_config_file": str(config)}},
    )
    first = one_host.pyinfra()
    assert first.returncode == 0, first.output[-3000:]
    assert "Firewall | Allow SSH, HTTP, HTTPS only" in first.changed()[address]
    second = one_host.pyinfra()
    assert second.returncode == 0, f"the second run could not get in: {second.output[-3000:]}"
    assert second.changed() == {}, second.changed()
    added = deployment.ssh(NAME, "ufw show added").stdout
    assert f"ufw allow {SECOND_PORT}/tcp" in added and "ufw allow 22/tcp" in added
    assert deployment.ssh(NAME, "ufw status").stdout.startswith("Status: active")
    assert reachable(address, SECOND_PORT) and reachable(address, 22)
