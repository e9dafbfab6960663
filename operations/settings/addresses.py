"""Checks of addresses, host names and networks (server_name, login_ban_ignore)."""

from __future__ import annotations

import ipaddress
import re

_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def is_ip(value) -> bool:
    """An IPv4 or IPv6 address written the one canonical way, with no scope id.

    ``ipaddress`` also takes ``fe80::1%<anything>`` (quotes, newlines...) and
    non-canonical spellings; such a value would land in the vhost and the Jupyter config.
    """
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return "%" not in value and str(address) == value


def is_ipv6(value) -> bool:
    """An IPv6 address in any spelling, without a scope id."""
    try:
        return isinstance(value, str) and "%" not in value and ipaddress.ip_address(value).version == 6
    except ValueError:
        return False


def is_hostname_or_ip(value) -> bool:
    """A DNS name or an IPv4 address: what the vhost can name as it is (IPv6 would need brackets)."""
    if not isinstance(value, str) or not value:
        return False
    if is_ip(value):
        return not is_ipv6(value)
    name = value[:-1] if value.endswith(".") else value
    return len(name) <= 253 and all(_HOSTNAME_LABEL.fullmatch(label) for label in name.split("."))


def is_dns_name(value) -> bool:
    return is_hostname_or_ip(value) and not is_ip(value) and "." in value.strip(".")


_IPV6_SERVER_NAME = (
    "a DNS hostname or an IPv4 address (or None for the host's inventory name); an IPv6 "
    "address is not supported as server_name: give a DNS name with an AAAA record instead"
)


def check_server_name(value):
    if value is None or is_hostname_or_ip(value):
        return None
    if isinstance(value, str) and is_ipv6(value):
        return _IPV6_SERVER_NAME
    return "a DNS hostname or an IPv4 address in its usual form (or None for the host's inventory name)"


def is_network(value) -> bool:
    """An address or a CIDR network written the canonical way (``203.0.113.0/24``, ``2001:db8::/32``),
    with no host bits set: what fail2ban's ``ignoreip`` takes, and nothing else."""
    if not isinstance(value, str) or "%" in value:
        return False
    if is_ip(value):
        return True
    try:
        return str(ipaddress.ip_network(value, strict=True)) == value
    except ValueError:
        return False


def check_networks(value):
    if isinstance(value, (list, tuple)) and all(is_network(v) for v in value):
        return None
    bad = [v for v in value if not is_network(v)] if isinstance(value, (list, tuple)) else []
    what = f" ({bad[0]!r} is not one)" if bad else ""
    return f"a list of IP addresses or CIDR networks in canonical form, e.g. ['203.0.113.7', '198.51.100.0/24']{what}"
