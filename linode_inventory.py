"""
Linodes as pyinfra hosts: every running Linode carrying a tag, named by its label.

    LINODE_TOKEN=... pyinfra -y inventory.py deploy.py                 # tag "jupyter"
    LINODE_TOKEN=... LINODE_TAG=lab pyinfra -y inventory.py deploy.py --limit nb-1

Each host is named by its Linode label (so ``--limit LABEL`` picks it) and reached at
its public IPv4. Its ``server_name`` is the label when the label is a DNS name (name a
Linode ``nb1.example.org`` to get that certificate name), else the IPv4 address.
Uses the official SDK (linode-api4); ``LINODE_API_URL`` points it elsewhere (tests).
"""

from __future__ import annotations

import ipaddress

DEFAULT_TAG = "jupyter"
API_URL = "https://api.linode.com/v4"


class InventoryError(Exception):
    """The Linode API could not be asked; the message says why in one line."""


# Addresses a Linode may have that the internet cannot reach: RFC 1918 (Linode's own
# private network is 192.168.128.0/17), loopback, link-local, shared (CGNAT).
NOT_PUBLIC = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10")
]


def public_ipv4(addresses) -> str | None:
    """The first IPv4 address that is not in ``NOT_PUBLIC``."""
    for address in addresses or []:
        ip = ipaddress.ip_address(address)
        if ip.version == 4 and not any(ip in network for network in NOT_PUBLIC):
            return address
    return None


def server_name_for(label: str, ipv4: str) -> str:
    # Imported late: the settings module pulls in pyinfra, which the inventory file needs anyway.
    from operations.settings import is_hostname_or_ip, is_ip

    return label if "." in label and is_hostname_or_ip(label) and not is_ip(label) else ipv4


def tagged_linodes(token: str, tag: str = DEFAULT_TAG, base_url: str = API_URL) -> tuple[list, list[str]]:
    """
    Returns ``([(label, host data), ...], [notes on Linodes left out])`` for the running
    Linodes tagged ``tag``; raises ``InventoryError`` when the API cannot be asked.
    """
    import requests
    from linode_api4 import ApiError, Instance, LinodeClient

    client = LinodeClient(token, base_url=base_url, retry=False)
    try:
        # The API filters by tag; checked again below, as the filter is only a request.
        instances = list(client.linode.instances(Instance.tags == tag))
    except ApiError as error:
        reasons = "; ".join(error.errors) or str(error)
        hint = " (check LINODE_TOKEN: it needs the Linodes read scope)" if error.status in (401, 403) else ""
        raise InventoryError(f"the Linode API at {base_url} answered {error.status}: {reasons}{hint}") from None
    except requests.RequestException as error:
        raise InventoryError(f"cannot reach the Linode API at {base_url}: {type(error).__name__}") from None
    hosts, skipped = [], []
    for instance in instances:
        if tag not in (instance.tags or []):
            continue
        if instance.status != "running":
            skipped.append(f"{instance.label} ({instance.status})")
            continue
        ipv4 = public_ipv4(instance.ipv4)
        if ipv4 is None:
            skipped.append(f"{instance.label} (no public IPv4)")
            continue
        hosts.append(
            (
                instance.label,
                {
                    "ssh_hostname": ipv4,
                    "server_name": server_name_for(instance.label, ipv4),
                    "linode_id": instance.id,
                },
            )
        )
    return sorted(hosts), skipped
