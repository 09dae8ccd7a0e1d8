"""Whom a failure blames: the captured address, name or failure id, fail2ban's order.

Owns `_host_of` (an address before a name before a failure id; when an id and an
address were both captured the id wins and the address becomes field `ip`) and the
canonical text of addresses (`_normalise_address`, memoised in a small bounded cache:
attackers repeat themselves). Names are never resolved. It imports nothing of the
engine; `compiled.py` asks it when it builds a failure.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def _is_plain_ipv4(ip: str) -> bool:
    parts = ip.split(".")
    if len(parts) != 4 or not ip.isascii():
        return False
    for part in parts:
        if not part.isdigit() or len(part) > 3 or (part[0] == "0" and len(part) > 1) or int(part) > 255:
            return False
    return True


_ADDRESS_CACHE: dict[tuple[str, str | None], str] = {}
# Cleared when full. Small on purpose: a long-running follower keeps it for good, and a flood from
# tens of thousands of addresses would otherwise leave ~13 MB of keys and texts behind (a read's
# repeats are what it is for; canonicalising a plain IPv4 address again costs about a microsecond).
_ADDRESS_CACHE_MAX = 1 << 12


def _normalise_address(ip: str, cidr: str | None) -> str:
    """Canonical text of an address (attackers repeat themselves: memoised)."""
    key = (ip, cidr)
    text = _ADDRESS_CACHE.get(key)
    if text is None:
        if len(_ADDRESS_CACHE) >= _ADDRESS_CACHE_MAX:
            _ADDRESS_CACHE.clear()
        text = _ADDRESS_CACHE[key] = _canonical_address(ip, cidr)
    return text


def _canonical_address(ip: str, cidr: str | None) -> str:
    """Canonical text of an address (or network with a short prefix); raw if invalid."""
    if not cidr and _is_plain_ipv4(ip):
        return ip  # already canonical: skip the (slow) ipaddress parser
    try:
        if cidr:
            net = ipaddress.ip_network(f"{ip}/{int(cidr)}", strict=False)
            if net.prefixlen == net.max_prefixlen:
                return str(net.network_address)
            return str(net)
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


def _host_of(fail: dict[str, Any]) -> str | None:
    """The id to blame: an address, else a name, else a failure id (fail2ban's order).
    When both an id and an address were captured the id wins and the address is kept
    as field `ip`."""
    fid = fail.get("fid")
    ip4 = fail.get("ip4")
    if ip4 is not None:
        ip = _normalise_address(ip4, fail.get("cidr"))
    else:
        ip6 = fail.get("ip6")
        if ip6 is not None:
            ip = _normalise_address(ip6, fail.get("cidr"))
        else:
            dns = fail.get("dns")
            if dns is None:
                return str(fid) if fid is not None else None
            ip = dns
    if fid is None or fid == ip:
        return ip
    fail["ip"] = ip
    return str(fid)
