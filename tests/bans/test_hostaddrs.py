"""This host's own addresses and networks (bans/hostaddrs.py): read from the resolver, `ip -j addr`
or /proc, never raising, and kept for a few seconds per process."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from typing import Any, NoReturn

import pytest

from bans import hostaddrs

IP_JSON = """[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},
{"family":"inet6","local":"::1","prefixlen":128}]},{"ifindex":2,"ifname":"eth0","addr_info":[
{"family":"inet","local":"192.0.2.2","prefixlen":24},{"family":"inet6","local":"fe80::fc:ff:fe00:1"}]},
{"ifindex":3,"ifname":"down0","addr_info":[]},{"ifindex":4}]"""

IF_INET6 = """00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
"""

FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
"""


def test_it_reads_addresses_from_ip_json() -> None:
    assert hostaddrs._addresses_from_ip_json(IP_JSON) == ["127.0.0.1", "::1", "192.0.2.2", "fe80::fc:ff:fe00:1"]
    assert hostaddrs._addresses_from_ip_json("") == []
    assert hostaddrs._addresses_from_ip_json("not json") == []
    assert hostaddrs._addresses_from_ip_json('{"a": 1}') == []
    assert hostaddrs._addresses_from_ip_json('[1, {"addr_info": [2, {"local": 3}]}]') == []


def test_it_reads_addresses_from_proc() -> None:
    assert hostaddrs._addresses_from_if_inet6(IF_INET6) == ["::1", "fd00::2"]
    assert hostaddrs._addresses_from_if_inet6("short line\n") == []
    assert hostaddrs._addresses_from_fib_trie(FIB_TRIE) == ["127.0.0.1", "192.0.2.2"]


@pytest.fixture
def no_netlink(monkeypatch: pytest.MonkeyPatch) -> None:
    """As where netlink cannot be used: the addresses come from `ip -j addr` (or /proc)."""
    monkeypatch.setattr(hostaddrs, "_netlink_addresses", lambda: None)


@pytest.mark.usefixtures("no_netlink")
def test_it_lists_host_addresses_from_names_and_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostaddrs, "_addresses_of_names", lambda: ["127.0.0.1", "::ffff:198.51.100.4"])
    monkeypatch.setattr(hostaddrs, "_command_output", lambda argv: IP_JSON)
    assert hostaddrs.read_addresses() == ["127.0.0.1", "192.0.2.2", "198.51.100.4", "::1", "fe80::fc:ff:fe00:1"]


@pytest.mark.usefixtures("no_netlink")
def test_it_falls_back_to_proc_without_the_ip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ip(*args: object, **kwargs: object) -> NoReturn:
        raise FileNotFoundError("ip")

    files = {"/proc/net/if_inet6": IF_INET6, "/proc/net/fib_trie": FIB_TRIE}
    monkeypatch.setattr(hostaddrs, "_addresses_of_names", lambda: [])
    monkeypatch.setattr(subprocess, "run", no_ip)
    monkeypatch.setattr(hostaddrs, "_file_text", lambda path: files[path])
    assert hostaddrs.read_addresses() == ["127.0.0.1", "192.0.2.2", "::1", "fd00::2"]


def test_it_lists_no_host_address_rather_than_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> NoReturn:
        raise OSError("unavailable")

    monkeypatch.setattr(socket, "gethostname", fail)
    monkeypatch.setattr(socket, "getaddrinfo", fail)
    monkeypatch.setattr(socket, "socket", fail)
    monkeypatch.setattr(subprocess, "run", fail)
    monkeypatch.setattr("builtins.open", fail)
    assert hostaddrs.read_addresses() == []


def test_it_times_out_a_hanging_ip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(argv: list[str], **kwargs: Any) -> NoReturn:
        raise subprocess.TimeoutExpired(argv, kwargs.get("timeout", 0))

    monkeypatch.setattr(subprocess, "run", hang)
    assert hostaddrs._command_output(["ip", "-j", "addr"]) == ""


def test_it_asks_the_kernel_over_netlink_and_finds_what_ip_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    from_ip = hostaddrs._interface_addresses(hostaddrs._command_output(["ip", "-j", "addr"]))
    assert from_ip, "this machine has `ip` (iproute2), which the comparison needs"
    from_kernel = hostaddrs._netlink_addresses()
    assert from_kernel is not None and sorted(from_kernel) == sorted(from_ip)

    def no_subprocess(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("a subprocess was started")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert "127.0.0.1" in hostaddrs.read_addresses() and "127.0.0.0/8" in hostaddrs.read_networks()


def nlmsg(kind: int, body: bytes, length: int | None = None) -> bytes:
    """A netlink message; `length` claims another length than the bytes given (a malformed one)."""
    raw = struct.pack("=IHHII", 16 + len(body) if length is None else length, kind, 2, 1, 0) + body
    return raw if length is not None else raw.ljust((len(raw) + 3) & ~3, b"\0")


def rtattr(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)


def new_address(family: int, prefix: int, *attributes: bytes) -> bytes:
    return nlmsg(20, struct.pack("=BBBBI", family, prefix, 0, 0, 2) + b"".join(attributes))


def test_it_reads_the_kernels_address_messages() -> None:
    peer = new_address(socket.AF_INET, 32, rtattr(1, bytes([10, 0, 0, 2])), rtattr(2, bytes([10, 0, 0, 1])))
    v6 = new_address(socket.AF_INET6, 64, rtattr(1, socket.inet_pton(socket.AF_INET6, "2001:db8::5")))
    odd = new_address(socket.AF_INET, 24, rtattr(2, b"\x01\x02"))  # an address of the wrong size: skipped
    found: list[tuple[str, int]] = []
    assert hostaddrs._parse_addresses(peer + v6 + odd, found) is False  # more to come
    assert found == [("10.0.0.1", 32), ("2001:db8::5", 64)]  # a point-to-point link: its local end, not the peer
    assert hostaddrs._parse_addresses(nlmsg(3, b"\0\0\0\0"), found) is True  # the end of the dump
    assert hostaddrs._parse_addresses(nlmsg(2, b"\xff\xff\xff\xff"), []) is None  # an error: ask `ip` instead
    assert hostaddrs._parse_addresses(nlmsg(20, b"", length=4000), []) is None  # longer than the datagram


def test_it_finds_the_real_hosts_loopback() -> None:
    assert "127.0.0.1" in hostaddrs.read_addresses()  # from the resolver or the interfaces: both exist here


def test_what_was_read_is_kept_for_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []

    def counted() -> list[str]:
        reads.append(1)
        return [f"192.0.2.{len(reads)}"]

    clock = [1000.0]
    monkeypatch.setattr(hostaddrs, "read_addresses", counted)
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    hostaddrs.forget()
    assert hostaddrs.addresses() == ["192.0.2.1"]
    clock[0] += hostaddrs.TTL_SECONDS
    assert hostaddrs.addresses() == ["192.0.2.1"] and len(reads) == 1  # within its age: no subprocess
    assert hostaddrs.addresses(max_age=1.0) == ["192.0.2.2"]  # a caller that wants it fresher reads again
    clock[0] += 10
    assert hostaddrs.addresses(max_age=30.0) == ["192.0.2.2"] and len(reads) == 2
    hostaddrs.addresses(max_age=30.0).append("203.0.113.9")  # a caller's copy: the kept list is not changed
    assert hostaddrs.addresses(max_age=30.0) == ["192.0.2.2"]
    hostaddrs.forget()
