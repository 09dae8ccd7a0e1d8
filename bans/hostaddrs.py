"""This host's own addresses and networks, read from the system: the resolver's names for this host,
the kernel's list of interface addresses (netlink; `ip -j addr` where netlink cannot be used), else
/proc. The one place that does this I/O (netlink, perhaps a subprocess, DNS lookups); the policy,
the gate and the log readers take the lists as values.

`addresses()` and `networks()` remember what they read for `max_age` seconds (default
TTL_SECONDS) in this process: a firewall sync runs for every batch and a log source may be read
many times a second, and neither should pay the lookups each time. The log followers ask with a
longer `max_age` (watchers.follow.ADDRESSES_SECONDS). `read_addresses()` and `read_networks()`
read afresh.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable

from bans import policy

TTL_SECONDS = 5.0

_lock = threading.Lock()
_remembered: dict[str, tuple[float, list[str]]] = {}


def addresses(max_age: float = TTL_SECONDS) -> list[str]:
    """This host's addresses, read at most `max_age` seconds ago (see read_addresses)."""
    return _recent("addresses", read_addresses, max_age)


def networks(max_age: float = TTL_SECONDS) -> list[str]:
    """The networks on this host's interfaces, read at most `max_age` seconds ago (see read_networks)."""
    return _recent("networks", read_networks, max_age)


def forget() -> None:
    """Read afresh next time (tests that change what the readers return)."""
    with _lock:
        _remembered.clear()


def _recent(kind: str, read: Callable[[], list[str]], max_age: float) -> list[str]:
    now = time.monotonic()
    with _lock:
        held = _remembered.get(kind)
    if held is not None and now - held[0] <= max_age:
        return list(held[1])
    found = read()
    with _lock:
        _remembered[kind] = (now, found)
    return list(found)


def read_addresses() -> list[str]:
    """This host's own addresses, from every source available; never raises.

    fail2ban's ignoreself takes the addresses of ``localhost``, the host name and the fully
    qualified name; we add the addresses on the interfaces (``ip -j addr``, else /proc), so an
    address the resolver does not know about is still ours.
    """
    found = set(_addresses_of_names())
    from_interfaces = [address for address, _ in _interfaces()]
    if from_interfaces:
        found.update(from_interfaces)
    else:
        found.update(_addresses_from_if_inet6(_file_text("/proc/net/if_inet6")))
        found.update(_addresses_from_fib_trie(_file_text("/proc/net/fib_trie")))
    ips = policy.parsed_addresses(found)
    return [str(ip) for ip in sorted(ips, key=lambda ip: (ip.version, int(ip)))]


def read_networks() -> list[str]:
    """The networks on this host's interfaces (``ip -j addr``: address/prefix, as CIDR); never raises.

    A manual ban inside one of them asks for confirmation: it most likely holds the admin's own
    machines. Empty when ``ip`` is missing (the addresses themselves are still protected)."""
    networks: set[str] = set()
    for address, prefix in _interfaces():
        try:
            networks.add(str(ipaddress.ip_network(f"{address}/{prefix}", strict=False)))
        except ValueError:
            continue
    return sorted(networks)


def _interfaces() -> list[tuple[str, int]]:
    """(address, prefix length) of each address on this host's interfaces: asked of the kernel over
    netlink, in this process, else from `ip -j addr` (a subprocess: a fork of the asking process and
    an exec, twice a minute in every follower when it was the only way)."""
    found = _netlink_addresses()
    return found if found is not None else _interface_addresses(_command_output(["ip", "-j", "addr"]))


# rtnetlink (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h)
_NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_RTATTR = struct.Struct("=HH")  # length, type
_NLMSG_ERROR, _NLMSG_DONE, _RTM_NEWADDR, _RTM_GETADDR = 2, 3, 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_NETLINK_TIMEOUT_SECONDS = 2.0
_NETLINK_MAX_ADDRESSES = 100_000  # a bound on the dump, whatever the kernel sends


def _netlink_addresses() -> list[tuple[str, int]] | None:
    """The kernel's dump of every interface address (RTM_GETADDR), as `ip -j addr` reads it; None when
    netlink cannot be used here (then the caller asks `ip`)."""
    request = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + _IFADDRMSG.size, _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP,
                                 1, 0) + _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    found: list[tuple[str, int]] = []
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            sock.settimeout(_NETLINK_TIMEOUT_SECONDS)
            sock.sendto(request, (0, 0))
            while len(found) <= _NETLINK_MAX_ADDRESSES:
                done = _parse_addresses(sock.recv(1 << 16), found)
                if done is not False:
                    return found if done else None
    except (OSError, AttributeError):  # no netlink (not Linux, a sandbox), a timeout
        return None
    return None


def _parse_addresses(data: bytes, found: list[tuple[str, int]]) -> bool | None:
    """Add the addresses of one datagram of an RTM_GETADDR dump to `found`: True at the dump's end,
    False when more is to come, None for an error or anything malformed."""
    offset = 0
    while offset + _NLMSG_HEADER.size <= len(data):
        length, kind, _flags, _seq, _port = _NLMSG_HEADER.unpack_from(data, offset)
        if length < _NLMSG_HEADER.size or offset + length > len(data):
            return None
        if kind == _NLMSG_DONE:
            return True
        if kind == _NLMSG_ERROR:
            return None
        if kind == _RTM_NEWADDR and length >= _NLMSG_HEADER.size + _IFADDRMSG.size:
            family, prefix, _, _, _ = _IFADDRMSG.unpack_from(data, offset + _NLMSG_HEADER.size)
            attributes = _attributes(data, offset + _NLMSG_HEADER.size + _IFADDRMSG.size, offset + length)
            # IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on a point-to-point
            # link); IPv6 sends IFA_ADDRESS only: `ip` calls either "local"
            raw = attributes.get(_IFA_LOCAL) or attributes.get(_IFA_ADDRESS)
            if family == socket.AF_INET and raw is not None and len(raw) == 4:
                found.append((str(ipaddress.IPv4Address(raw)), prefix))
            elif family == socket.AF_INET6 and raw is not None and len(raw) == 16:
                found.append((str(ipaddress.IPv6Address(raw)), prefix))
        offset += (length + 3) & ~3
    return False


def _attributes(data: bytes, start: int, end: int) -> dict[int, bytes]:
    attributes: dict[int, bytes] = {}
    while start + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, start)
        if length < _RTATTR.size or start + length > end:
            break
        attributes.setdefault(kind, data[start + _RTATTR.size:start + length])
        start += (length + 3) & ~3
    return attributes


def _addresses_of_names() -> list[str]:
    names = {"localhost"}
    with contextlib.suppress(OSError, UnicodeError):
        names.update({socket.gethostname(), socket.getfqdn()})
    addresses: list[str] = []
    for name in sorted(name for name in names if name):
        try:
            infos = socket.getaddrinfo(name, None)
        except (OSError, UnicodeError):
            continue
        addresses.extend(str(info[4][0]) for info in infos if info[4])
    return addresses


def _command_output(argv: list[str]) -> str:
    try:
        # S603: `ip -j addr` (the only caller's argv, fixed in code), a list, no shell
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _file_text(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _addresses_from_ip_json(text: str) -> list[str]:
    """The ``local`` addresses in ``ip -j addr`` output; [] for anything unreadable."""
    return [address for address, _ in _interface_addresses(text)]


def _interface_addresses(text: str) -> list[tuple[str, int]]:
    """(``local``, ``prefixlen``) of each address in ``ip -j addr`` output; [] for anything unreadable."""
    try:
        links = json.loads(text) if text.strip() else []
    except ValueError:
        return []
    found: list[tuple[str, int]] = []
    for link in links if isinstance(links, list) else []:
        infos = link.get("addr_info") if isinstance(link, dict) else None
        for info in infos if isinstance(infos, list) else []:
            local = info.get("local") if isinstance(info, dict) else None
            prefix = info.get("prefixlen") if isinstance(info, dict) else None
            if isinstance(local, str):
                found.append((local, prefix if isinstance(prefix, int) else (32 if ":" not in local else 128)))
    return found


def _addresses_from_if_inet6(text: str) -> list[str]:
    """IPv6 addresses in /proc/net/if_inet6: 32 hex digits, then index, prefix, scope, flags, name."""
    addresses: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if fields and len(fields[0]) == 32:
            try:
                addresses.append(str(ipaddress.IPv6Address(int(fields[0], 16))))
            except ValueError:
                continue
    return addresses


def _addresses_from_fib_trie(text: str) -> list[str]:
    """IPv4 addresses of this host in /proc/net/fib_trie: leaves followed by ``/32 host LOCAL``."""
    addresses: list[str] = []
    leaf = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|-- "):
            leaf = stripped[4:]
        elif leaf and stripped.split() == ["/32", "host", "LOCAL"]:
            addresses.append(leaf)
    return addresses
