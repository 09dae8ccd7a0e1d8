"""A jail's `port` option as nftables port ranges (`resolve_ports`): numbers, ranges, service names
from /etc/services, and fail2ban's spellings of "all ports"."""

from __future__ import annotations

import re
import socket

from bans.firewall.base import PROTOCOLS

_RANGE_RE = re.compile(r"^(\d+)\s*[:-]\s*(\d+)$")
_ALL_PORTS = ("all", "0:65535", "1:65535", "0-65535", "1-65535")


def resolve_ports(spec: str, protocol: str) -> list[tuple[int, int]]:
    """Port ranges of a fail2ban port spec, sorted and merged; [(0, 65535)] for "all".

    Items are comma separated: numbers, ranges ("8000:8100" or "8000-8100") and service names,
    looked up as /etc/services has them (socket.getservbyname), for `protocol` (tcp for "all").
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"Protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}.")
    clean = spec.strip().lower()
    if clean in _ALL_PORTS:
        return [(0, 65535)]
    ranges = sorted(_port_item(item.strip(), protocol) for item in clean.split(","))
    merged = [ranges[0]]
    for low, high in ranges[1:]:
        if low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return merged


def _port_item(item: str, protocol: str) -> tuple[int, int]:
    if not item:
        raise ValueError("Empty item in the port list: write e.g. 'ssh', '22', 'http,https' or '8000:8100'.")
    bounds = _RANGE_RE.match(item)
    if bounds:
        low, high = _port_number(bounds.group(1)), _port_number(bounds.group(2))
        if low > high:
            raise ValueError(f"The port range {item!r} runs backwards.")
        return low, high
    if item.isdigit():
        port = _port_number(item)
        return port, port
    port = _service_port(item, protocol)
    return port, port


def _port_number(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"Port {port} is out of range: ports go from 1 to 65535.")
    return port


def _service_port(name: str, protocol: str) -> int:
    # /etc/services lists few sctp/dccp names; nft too falls back to the tcp entry for those.
    lookups = ["tcp"] if protocol in ("tcp", "all") else [protocol] if protocol == "udp" else [protocol, "tcp"]
    for proto in lookups:
        try:
            return socket.getservbyname(name, proto)
        except OSError:
            continue
    raise ValueError(f"Unknown port name {name!r} for {protocol}: it is not in /etc/services; "
                     "write a number (22), a known name (ssh) or a range (8000:8100).")


# -- planning (shared by both backends) -------------------------------------------------------
