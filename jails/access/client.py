"""The address a request came from, as the panel trusts it (audit, login throttling, lockout guard)."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, or, when it is a trusted proxy, the nearest X-Forwarded-For hop not trusted.

    X-Forwarded-For is read from the right (the hops our own proxies appended), never its left
    end, which the client writes itself: a forged header cannot choose the address we see.
    """
    remote = _parse(request.META.get("REMOTE_ADDR", ""))
    if remote is None:
        return ""
    hop = remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    while _is_trusted_proxy(hop) and forwarded:
        previous = _parse(forwarded.pop())
        if previous is None:
            break  # a malformed hop: stop at the last address we could trust
        hop = previous
    return str(hop)


def request_peers(request: HttpRequest) -> list[str]:
    """Addresses a ban from this request must never cover: the person's own address and the peer that
    connects to the panel (behind a trusted proxy, the proxy itself: banning it locks everybody out)."""
    remote = _parse(request.META.get("REMOTE_ADDR", ""))
    found = [client_address(request), str(remote) if remote is not None else ""]
    return list(dict.fromkeys(address for address in found if address))


def _parse(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _is_trusted_proxy(address: IPAddress) -> bool:
    return any(address in network for network in settings.IPS_TRUSTED_PROXIES)
