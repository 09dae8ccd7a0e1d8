"""The kernel's nftables ruleset generation and its change notices, over netlink (plain Python, no Django).

Every committed nftables transaction, ours or anyone's (`nft flush ruleset`, firewalld, docker),
increments one 32-bit number, which NFT_MSG_GETGEN returns. The firewall worker compares it with
the last one it checked: unchanged, our table cannot have changed, at the cost of one tiny netlink
round trip instead of listing thousands of elements.

The kernel also announces every transaction to the NFNLGRP_NFTABLES multicast group (what
`nft monitor` reads). `RulesetChanges` listens there, so the worker looks when something changed
instead of asking every two seconds (bans/watching.py).
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFT_MSG_NEWGEN = 15
NFTA_GEN_ID = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NFNLGRP_NFTABLES = 7
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_NFGENMSG = struct.Struct("=BBH")  # family, version, resource id (big-endian, unused here)
_ATTR = struct.Struct("=HH")
_sequence = itertools.count(1)


def nft_generation(timeout: float = 5.0) -> int:
    """The current ruleset generation id of this network namespace. OSError when netlink refuses
    (no nf_tables, no permission) or does not answer within `timeout` seconds."""
    sequence = next(_sequence) & 0xFFFFFFFF
    request = _NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)
    header = _HEADER.pack(_HEADER.size + len(request), (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
                          NLM_F_REQUEST, sequence, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        sock.send(header + request)
        while True:
            reply = sock.recv(65536)
            found = _parse(reply, sequence)
            if found is not None:
                return found


def _parse(data: bytes, sequence: int) -> int | None:
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, seq, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        if seq == sequence:
            if kind == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, offset + _HEADER.size)
                if code:
                    raise OSError(-code, f"netlink: {os.strerror(-code)}")
            elif kind & 0xFF == NFT_MSG_NEWGEN:
                return _gen_id(data[offset + _HEADER.size + _NFGENMSG.size: offset + length])
        offset += (length + 3) & ~3
    return None


def _gen_id(attributes: bytes) -> int:
    offset = 0
    while offset + _ATTR.size <= len(attributes):
        length, kind = _ATTR.unpack_from(attributes, offset)
        if length < _ATTR.size:
            break
        if kind & 0x3FFF == NFTA_GEN_ID:
            (value,) = struct.unpack_from(">I", attributes, offset + _ATTR.size)
            return int(value)
        offset += (length + 3) & ~3
    raise OSError("netlink: NFT_MSG_NEWGEN without a generation id")


class RulesetChanges:
    """A non-blocking netlink socket in the nftables notification group: readable after any
    committed nftables transaction in this network namespace. What the notices say does not matter
    (the watch reads the generation and, if needed, the table): `drain()` empties the socket and says
    whether anything came. A burst bigger than the socket's buffer (a flush of thousands of elements)
    overflows it, which the kernel reports as ENOBUFS on the next read: that is a change too."""

    BUFFER_BYTES = 64 * 1024  # small on purpose: a storm of notices overflows instead of being read one by one

    def __init__(self) -> None:
        """OSError when netlink refuses (no nf_tables, no permission)."""
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                   NETLINK_NETFILTER)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.BUFFER_BYTES)
            self._sock.bind((0, 0))
            self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self, most_reads: int = 4096) -> bool:
        """Read what is waiting (at most `most_reads` reads: a writer faster than us cannot keep us
        here); True if anything was."""
        changed = False
        for _ in range(most_reads):
            try:
                if not self._sock.recv(65536):
                    break
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
            changed = True
        return changed

    def close(self) -> None:
        self._sock.close()
