"""The one gate every ban passes: what must never be banned, and why (plain Python, no Django).

A ban is the one thing this product does to the outside world, and a wrong one locks the owner out
of their own server. Every path that creates a ban (a jail's counting, recidive, the panel's form,
`jailctl`, Django admin) asks a `Gate` first, and the firewall worker asks again before it sends a
claimed ban to the kernel, so a row written some other way is refused there too.

A `Gate` is built once per request or per batch (bans.services.current_gate gathers this host's
addresses, the live panel sessions, the trusted proxies, the global ignore list and every jail's
ignoreip) and answers per network in O(log n):

- never, whoever asks (`refusal`): loopback, unspecified, broadcast, multicast and link-local
  space; this host's addresses; the address of every live panel session; the trusted proxies; the
  global ignore list's entries (every jail honours them); the ignoreip entries that apply; and any
  network containing one of them;
- manual bans only (`check_manual`): no network wider than the configured limit (/16 and /48 by
  default), and a ban inside private space (RFC 1918, unique local IPv6) or one of this host's own
  networks needs the person's explicit confirmation (`ConfirmationNeeded`).
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from bans.policy import GLOBAL_LIST, canonical_network

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# The addresses no firewall rule may ever name: a ban there breaks the host or means nothing.
SPECIAL: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "the unspecified address ('this network')"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local space"),
    ("224.0.0.0/4", "multicast space"),
    ("255.255.255.255/32", "the broadcast address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local space"),
    ("ff00::/8", "multicast space"),
)
# Networks where a manual ban most likely hits one's own people: allowed, once confirmed.
PRIVATE: tuple[tuple[str, str], ...] = (
    ("10.0.0.0/8", "private space (RFC 1918)"),
    ("172.16.0.0/12", "private space (RFC 1918)"),
    ("192.168.0.0/16", "private space (RFC 1918)"),
    ("100.64.0.0/10", "shared carrier-grade NAT space (RFC 6598)"),
    ("fc00::/7", "unique local space (ULA, RFC 4193)"),
)
DEFAULT_MAX_PREFIX = {4: 16, 6: 48}


class BanRefused(ValueError):
    """A ban that must not happen (our own address, an ignoreip entry...); the message says why."""


class ConfirmationNeeded(BanRefused):
    """A manual ban that may happen once the person confirms it (private space, this host's own
    networks): the panel asks with a checkbox, jailctl with --force."""


@dataclass(frozen=True)
class Shield:
    """A network that must not be banned, nor any network containing or overlapping it, and why."""

    network: IPNetwork
    why: str


class _Shields:
    """Shields of one address family, sorted by start, to find one that overlaps a network quickly."""

    def __init__(self, shields: Iterable[Shield]) -> None:
        ordered = sorted(shields, key=lambda s: (int(s.network.network_address), -s.network.prefixlen))
        self._starts = [int(s.network.network_address) for s in ordered]
        self._shields = ordered
        # the furthest end reached by any shield up to each index: overlapping shields stay findable
        self._reach: list[int] = []
        furthest = -1
        for shield in ordered:
            furthest = max(furthest, int(shield.network.broadcast_address))
            self._reach.append(furthest)

    def overlapping(self, network: IPNetwork) -> Shield | None:
        return self.overlapping_span(int(network.network_address), int(network.broadcast_address))

    def overlapping_span(self, start: int, end: int) -> Shield | None:
        index = bisect.bisect_right(self._starts, end) - 1
        # walk back only while an earlier shield may still reach `start`
        while index >= 0 and self._reach[index] >= start:
            shield = self._shields[index]
            if int(shield.network.broadcast_address) >= start:
                return shield
            index -= 1
        return None


def _by_family(shields: Iterable[Shield]) -> dict[int, _Shields]:
    grouped: dict[int, list[Shield]] = {4: [], 6: []}
    for shield in shields:
        grouped[shield.network.version].append(shield)
    return {version: _Shields(items) for version, items in grouped.items()}


def _described(pairs: Iterable[tuple[str, str]]) -> list[Shield]:
    return [Shield(ipaddress.ip_network(text), why) for text, why in pairs]


def parse_network(text: str) -> IPNetwork:
    """An address or a network typed by a person or read from a row; BanRefused says what is wrong.

    Host bits are refused, not silently dropped (10.0.0.5/24 is a typo for one of two things), and
    so is a scoped address (fe80::1%eth0): nftables sets hold no zone, so it would apply as another
    address than the one meant, and never be lifted as typed.
    """
    clean = text.strip()
    if "%" in clean:
        raise BanRefused(f"{clean!r}: a scoped address (with %zone) cannot be banned; nftables has no zones")
    try:
        network = ipaddress.ip_network(clean, strict=True)
    except ValueError as exc:
        raise BanRefused(f"{clean!r} is not an address or network ({exc})") from None
    return canonical_network(network)


@dataclass
class Gate:
    """What must never be banned, gathered at one moment. Build it with `Gate.build`."""

    always: Sequence[Shield] = ()
    # the global ignore list's entries: every jail's, whichever jails are asked about
    global_ignore: Sequence[Shield] = ()
    # jail name -> that jail's ignoreip entries as shields
    ignoreip: Mapping[str, Sequence[Shield]] = field(default_factory=dict)
    confirm: Sequence[Shield] = ()
    max_prefix: Mapping[int, int] = field(default_factory=lambda: dict(DEFAULT_MAX_PREFIX))

    def __post_init__(self) -> None:
        self._always = _by_family([*_described(SPECIAL), *self.always])
        self._global = _by_family(self.global_ignore)
        self._every_ignore = _by_family(s for shields in self.ignoreip.values() for s in shields)
        self._ignore = {jail: _by_family(shields) for jail, shields in self.ignoreip.items()}
        self._confirm = _by_family([*_described(PRIVATE), *self.confirm])

    @classmethod
    def build(cls, *, host_addresses: Iterable[str] = (), host_networks: Iterable[str] = (),
              sessions: Iterable[tuple[str, str]] = (), proxies: Iterable[IPNetwork] = (),
              ignoreip: Mapping[str, Iterable[str]] | None = None, global_ignoreip: Iterable[str] = (),
              max_prefix: Mapping[int, int] | None = None, fleet_hosts: Iterable[tuple[str, str]] = ()) -> Gate:
        """From what the panel knows: this host's addresses and networks (CIDR text), live panel
        sessions as (address, whose), trusted proxy networks, the fleet's hosts as (address, name),
        each jail's ignoreip entries and the global ignore list's (names are skipped: they are
        compared only once resolved, never here)."""
        always = [Shield(net, "an address of this host") for net in _networks(host_addresses)]
        always += [Shield(net, f"the address of a live panel session of {who}")
                   for address, who in sessions for net in _networks([address])]
        always += [Shield(canonical_network(net), "a trusted proxy of the panel (IPS_TRUSTED_PROXIES)")
                   for net in proxies]
        # a fleet's hosts, as pinned by the admin (never as an agent says): an all-ports ban of one would
        # cut it off from the central server, and the fleet from it
        always += [Shield(net, f"an address of fleet host {name}")
                   for address, name in fleet_hosts for net in _networks([address])]
        ignores = {jail: [Shield(net, f"listed in ignoreip of jail {jail} as {entry}")
                          for entry in entries for net in _networks([entry], strict=False)]
                   for jail, entries in (ignoreip or {}).items()}
        listed = [Shield(net, f"listed in {GLOBAL_LIST} as {entry}")
                  for entry in global_ignoreip for net in _networks([entry], strict=False)]
        confirm = [Shield(net, f"this host's own network {net}")
                   for net in _networks(host_networks, strict=False)]
        return cls(always=always, global_ignore=listed, ignoreip=ignores, confirm=confirm,
                   max_prefix=dict(max_prefix or DEFAULT_MAX_PREFIX))

    def refusal(self, network: IPNetwork, *, ignore_jails: Iterable[str] | None = None) -> str | None:
        """Why `network` must never be banned by anyone, or None.

        `ignore_jails`: the jails whose ignoreip applies (a jail's ban: that jail; None: every jail,
        as for the all-ports blocklist and for bans by hand); the global ignore list always does."""
        network = canonical_network(network)
        shield = self._always[network.version].overlapping(network)
        if shield is None:
            shield = self._global[network.version].overlapping(network)
        if shield is None:
            shield = self._ignored(network, ignore_jails)
        if shield is None:
            return None
        if shield.network.num_addresses == 1 and network.num_addresses == 1:
            return f"{network.network_address} is {shield.why}"
        shown = shield.network.network_address if shield.network.num_addresses == 1 else shield.network
        verb = "contains" if shield.network.subnet_of(network) else "overlaps"  # type: ignore[arg-type]
        return f"{network} {verb} {shown}, {shield.why}"

    def refusal_of_address(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, *,
                           ignore_jails: Iterable[str] | None = None) -> str | None:
        """`refusal` of one address, without building its network (a flood asks this for tens of
        thousands of addresses per minute). Only a refused address pays for the network, to say why
        in `refusal`'s words."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        value = int(ip)
        jails = tuple(ignore_jails) if ignore_jails is not None else None
        if (self._always[ip.version].overlapping_span(value, value) is None
                and self._global[ip.version].overlapping_span(value, value) is None):
            if jails is None:
                held = self._every_ignore[ip.version].overlapping_span(value, value)
            else:
                held = next((found for jail in jails if (shields := self._ignore.get(jail))
                             and (found := shields[ip.version].overlapping_span(value, value))), None)
            if held is None:
                return None
        return self.refusal(ipaddress.ip_network(ip), ignore_jails=jails)

    def _ignored(self, network: IPNetwork, jails: Iterable[str] | None) -> Shield | None:
        if jails is None:
            return self._every_ignore[network.version].overlapping(network)
        for jail in jails:
            shields = self._ignore.get(jail)
            found = shields[network.version].overlapping(network) if shields else None
            if found is not None:
                return found
        return None

    def check_manual(self, network: IPNetwork, *, confirmed: bool = False, extra: Iterable[Shield] = ()) -> None:
        """A ban by hand: refusal() over the global ignore list and every jail's ignoreip, the width
        limit, then the confirmation of private space. `extra`: more shields for this request (the
        requester's own peer)."""
        network = canonical_network(network)
        limit = self.max_prefix[network.version]
        if network.prefixlen < limit:
            raise BanRefused(f"refused: {network} is wider than /{limit}, the widest network a ban by hand may "
                             f"cover for IPv{network.version} (IPS_MAX_BAN_PREFIX_V{network.version})")
        for shield in extra:
            protected = canonical_network(shield.network)
            if protected.version == network.version and network.overlaps(protected):
                raise BanRefused(f"refused: {network} contains {shield.network.network_address}, {shield.why}")
        refused = self.refusal(network)
        if refused is not None:
            raise BanRefused(f"refused: {refused}")
        private = None if confirmed else self._confirm[network.version].overlapping(network)
        if private is not None:
            raise ConfirmationNeeded(f"{network} is inside {private.why}: it may hold your own people or "
                                     "services; confirm to ban it anyway")


def _networks(texts: Iterable[str], *, strict: bool = True) -> list[IPNetwork]:
    """Parsed addresses or networks; what does not parse (a host name, a blank) is skipped."""
    found: list[IPNetwork] = []
    for text in texts:
        try:
            found.append(canonical_network(ipaddress.ip_network(text.strip().split("%", 1)[0], strict=strict)))
        except ValueError:
            continue
    return found
