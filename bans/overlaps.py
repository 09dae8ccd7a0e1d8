"""Overlapping bans are a policy, not an error: the widest ban of a set is the one in the kernel.

An nftables interval set cannot hold 203.0.113.5 and 203.0.113.0/24 at once. So, per firewall host
and set (a jail's, or the blocklist's) and family:

- a ban inside a wider ban that is in the kernel is recorded COVERED (`covered_by` names the wider
  one) and never sent: the address is banned already;
- a wider ban absorbs the narrower ones the kernel holds: their elements are deleted in the same
  batch that adds it (no packet sees neither), and they become COVERED by it;
- when the wider ban ends (lifted, expired), the covered bans that still have time come back: a
  lift puts them back in the same batch that removes it (bans.sync); an expiry, which the kernel
  carries out by itself, on the firewall worker's next run (every 2 s: bans.tasks.watch_firewall).

Networks written in CIDR either nest or do not meet, so "overlap" is always "contains".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Sequence

from django.db.models import Q, QuerySet

from bans import bulk
from bans.firewall import BLOCKLIST
from bans.models import Ban
from bans.services import shared_text_prefix

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

def set_of(ban: Ban) -> str:
    """The set a ban's element goes in: its jail's, or the blocklist's (BLOCKLIST)."""
    return BLOCKLIST if ban.jail_id is None and ban.jail_name == Ban.BLOCKLIST else ban.jail_name


def is_single(network: IPNetwork) -> bool:
    return network.prefixlen == network.max_prefixlen


@dataclasses.dataclass
class Arrangement:
    """What one batch does about overlaps."""

    send: list[Ban]  # claimed bans whose element goes to the kernel
    covered_now: dict[int, int]  # claimed ban -> the ACTIVE ban that covers it already (no kernel change)
    covered_after: dict[int, int]  # claimed ban -> the claimed wider ban it rides with (recorded on success)
    absorbed: dict[int, Ban]  # ACTIVE ban (pk -> ban) whose element this batch deletes -> COVERED on success
    absorbed_by: dict[int, int]  # absorbed ban -> the claimed ban that covers it

    def absorbs_of(self) -> dict[int, list[Ban]]:
        """Sent ban -> the ACTIVE bans it absorbs."""
        grouped: dict[int, list[Ban]] = {}
        for pk, ban in self.absorbed.items():
            grouped.setdefault(self.absorbed_by[pk], []).append(ban)
        return grouped

    def riders_of(self) -> dict[int, list[int]]:
        """Sent ban -> the claimed bans riding with it."""
        grouped: dict[int, list[int]] = {}
        for pk, cover in self.covered_after.items():
            grouped.setdefault(cover, []).append(pk)
        return grouped


class Covers:
    """Wide networks per set and family, found from a narrower network in O(distinct prefix lengths):
    a network's covers are its supernets, looked up by exact match, never compared one by one
    (10,000 bans claimed at once must not cost 10,000 x 10,000 comparisons)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], dict[int, dict[IPNetwork, Ban]]] = {}

    def add(self, key: str, network: IPNetwork, ban: Ban) -> None:
        self._by_key.setdefault((key, network.version), {}).setdefault(network.prefixlen, {})[network] = ban

    def container(self, key: str, network: IPNetwork) -> Ban | None:
        """The widest ban of the set strictly containing `network`, or None."""
        by_length = self._by_key.get((key, network.version))
        if not by_length:
            return None
        for length in sorted(by_length):
            if length >= network.prefixlen:
                break
            found = by_length[length].get(network.supernet(new_prefix=length))
            if found is not None:
                return found
        return None


def arrange(host: str, claimed: Sequence[Ban]) -> Arrangement:
    """Split the claimed bans into those to send and those already covered, and find the ACTIVE
    narrower bans the wider claimed ones absorb. Queries: the host's wide ACTIVE bans once, and per
    wide claimed ban the ACTIVE bans inside it."""
    result = Arrangement(send=[], covered_now={}, covered_after={}, absorbed={}, absorbed_by={})
    if not claimed:
        return result
    active = _wide_active(host)
    sending = Covers()
    # widest first: a claimed ban covered by a wider claimed ban rides with it
    ordered = sorted(claimed, key=lambda ban: ipaddress.ip_network(ban.network).prefixlen)
    for ban in ordered:
        network = ipaddress.ip_network(ban.network)
        key = set_of(ban)
        holder = active.container(key, network)
        if holder is not None:
            result.covered_now[ban.pk] = holder.pk
            continue
        rider = sending.container(key, network)
        if rider is not None:
            result.covered_after[ban.pk] = rider.pk
            continue
        if not is_single(network):
            sending.add(key, network, ban)
        result.send.append(ban)
    for ban in result.send:
        if not is_single(ipaddress.ip_network(ban.network)):  # only a network can hold other bans
            for inside in _active_inside(host, ban):
                if inside.pk not in result.absorbed:
                    result.absorbed[inside.pk] = inside
                    result.absorbed_by[inside.pk] = ban.pk
    return result


def _wide_active(host: str) -> Covers:
    """The host's ACTIVE bans wider than one address (few: networks are banned by hand)."""
    covers = Covers()
    rows = (Ban.objects.filter(host=host, state=Ban.State.ACTIVE)
            .exclude(Q(family=4, network__endswith="/32") | Q(family=6, network__endswith="/128"))
            .only("pk", "jail", "jail_name", "network"))
    for ban in rows:
        network = ipaddress.ip_network(ban.network)
        if not is_single(network):
            covers.add(set_of(ban), network, ban)
    return covers


def _active_inside(host: str, wider: Ban) -> list[Ban]:
    """The ACTIVE bans of the same set strictly inside `wider`."""
    network = ipaddress.ip_network(wider.network)
    rows = Ban.objects.filter(host=host, state=Ban.State.ACTIVE, jail_name=wider.jail_name, family=network.version)
    rows = rows.filter(jail__isnull=wider.jail_id is None)
    prefix = shared_text_prefix(network)
    if prefix:
        rows = rows.filter(network__startswith=prefix)
    return [ban for ban in rows.only("pk", "jail", "jail_name", "network", "expires_at", "apply_attempts", "origin")
            if ban.pk != wider.pk and ipaddress.ip_network(ban.network).subnet_of(network)]  # type: ignore[arg-type]


def uncovered(host: str, now: dt.datetime, leaving: Sequence[int] = ()) -> list[Ban]:
    """COVERED bans with time left whose cover is gone (lifted, expired, refused) or is `leaving` now
    (being lifted in this batch): they must go back to the kernel."""
    return list(uncovered_rows(host, now, leaving)
                .only("pk", "jail", "jail_name", "network", "expires_at", "apply_attempts", "origin"))


def uncovered_rows(host: str, now: dt.datetime, leaving: Sequence[int] = ()) -> QuerySet[Ban]:
    gone = ~Q(covered_by__state__in=Ban.LIVE_STATES) | Q(covered_by__expires_at__lte=now) | Q(covered_by__isnull=True)
    if leaving:
        gone |= Q(covered_by__in=list(leaving))
    return Ban.objects.filter(gone, host=host, state=Ban.State.COVERED).exclude(expires_at__lte=now)


def mark_covered(pairs: dict[int, int]) -> None:
    """Record each ban (key) as COVERED by the other (value); one UPDATE per cover."""
    by_cover: dict[int, list[int]] = {}
    for pk, cover in pairs.items():
        by_cover.setdefault(cover, []).append(pk)
    for cover, pks in by_cover.items():
        for chunk in bulk.batches(pks):
            # only rows still claimed (APPLYING) or in the kernel (ACTIVE): a ban lifted meanwhile stays lifted
            Ban.objects.filter(pk__in=chunk, state__in=[Ban.State.APPLYING, Ban.State.ACTIVE]).update(
                state=Ban.State.COVERED, covered_by_id=cover, apply_error="", next_attempt_at=None)
