"""Planning, shared by the nftables backend and the in-memory fake so both refuse and accept the same
things: which elements an apply adds, refreshes and deletes (`plan_apply`), what a reconcile
changes (`plan_reconcile`), overlapping elements refused up front (`fit_entries`), and the rule
specs of the jails (`rule_specs`)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bans.firewall import nft
from bans.firewall.base import BLOCKLIST, BanEntry, FirewallError, JailRules, ReconcileResult
from bans.firewall.nft import IPNetwork
from bans.firewall.ports import resolve_ports

# Seconds by which the kernel's time left may differ from the database's before reconcile() resets it.
RECONCILE_SLACK: Final = 5


@dataclass
class ElementPlan:
    """Elements to delete (with the time the kernel had left), then elements to add."""

    deletes: list[BanEntry] = field(default_factory=list)
    adds: list[BanEntry] = field(default_factory=list)


class _Intervals:
    """Non-overlapping address intervals of one set, sorted, to find what a new element would overlap."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._networks: list[IPNetwork] = []

    def overlapping(self, network: IPNetwork) -> IPNetwork | None:
        start, end = int(network.network_address), int(network.broadcast_address)
        # Sorted and disjoint: the last interval starting at or before `end` reaches furthest.
        index = bisect.bisect_right(self._starts, end) - 1
        if index >= 0 and self._ends[index] >= start:
            return self._networks[index]
        return None

    def insert(self, network: IPNetwork) -> None:
        start = int(network.network_address)
        index = bisect.bisect_left(self._starts, start)
        self._starts.insert(index, start)
        self._ends.insert(index, int(network.broadcast_address))
        self._networks.insert(index, network)


def fit_entries(kept: Mapping[str, Iterable[IPNetwork]],
         candidates: Sequence[BanEntry]) -> tuple[list[BanEntry], list[tuple[BanEntry, IPNetwork]]]:
    """Candidates that fit beside the kept elements and the candidates before them, and those that
    overlap (with the network in the way)."""
    sets: dict[tuple[str, int], _Intervals] = {}

    def intervals(jail: str, version: int) -> _Intervals:
        if (jail, version) not in sets:
            sets[(jail, version)] = _Intervals()
            for network in kept.get(jail, ()):
                if network.version == version:
                    sets[(jail, version)].insert(network)
        return sets[(jail, version)]

    accepted, refused = [], []
    for entry in candidates:
        target = intervals(entry.jail, entry.network.version)
        blocker = target.overlapping(entry.network)
        if blocker is None:
            target.insert(entry.network)
            accepted.append(entry)
        else:
            refused.append((entry, blocker))
    return accepted, refused


def widest_first(entries: Iterable[BanEntry]) -> list[BanEntry]:
    return sorted(entries, key=lambda entry: entry.network.prefixlen - entry.network.max_prefixlen)


def _jail_label(jail: str) -> str:
    return "the blocklist" if jail == BLOCKLIST else f"jail {jail}"


def _without(state: Mapping[str, Mapping[IPNetwork, Any]], gone: Iterable[BanEntry]) -> dict[str, set[IPNetwork]]:
    kept = {jail: set(elements) for jail, elements in state.items()}
    for entry in gone:
        kept.get(entry.jail, set()).discard(entry.network)
    return kept


def plan_apply(state: Mapping[str, Mapping[IPNetwork, int | None]], jails: Iterable[str],
               add: Sequence[BanEntry], remove: Sequence[BanEntry]) -> ElementPlan:
    """The deletes and adds that carry out apply(add, remove) on `state` (what the kernel holds).

    Removing what is not there is a no-op. Adding what is there refreshes its timeout (delete + add).
    An entry both removed and added ends up added. Adds for unknown jails, or that overlap an element
    of their set, refuse the whole call (FirewallError, permanent, naming the entries).
    """
    known = set(jails)
    wanted: dict[tuple[str, IPNetwork], BanEntry] = {}
    for entry in add:
        wanted[(entry.jail, entry.network)] = entry  # the last one given wins
    unknown = [entry for entry in wanted.values() if entry.jail not in known]
    if unknown:
        names = ", ".join(sorted({entry.jail for entry in unknown}))
        raise FirewallError(f"No sets for {names} in the firewall: call sync_rules() with the jail first.",
                            permanent=True, entries=unknown)
    deletes: dict[tuple[str, IPNetwork], BanEntry] = {}
    for entry in [*remove, *wanted.values()]:
        present = state.get(entry.jail, {})
        if entry.network in present:
            deletes[(entry.jail, entry.network)] = BanEntry(entry.jail, entry.network, present[entry.network])
    _, refused = fit_entries(_without(state, deletes.values()), widest_first(wanted.values()))
    if refused:
        raise FirewallError(_overlap_message(refused), permanent=True, entries=[entry for entry, _ in refused])
    return ElementPlan(deletes=list(deletes.values()), adds=list(wanted.values()))


def _overlap_message(refused: Sequence[tuple[BanEntry, IPNetwork]]) -> str:
    shown = "; ".join(f"{entry.network} overlaps {blocker} in {_jail_label(entry.jail)}"
                      for entry, blocker in refused[:5])
    more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
    return (f"Nothing applied: {shown}{more}. An nftables interval set cannot hold overlapping networks: "
            "lift the narrower ban in the same apply() call, or keep only one.")


def plan_reconcile(state: Mapping[str, Mapping[IPNetwork, int | None]], jails: Iterable[str],
                   desired: Sequence[BanEntry], slack: int = RECONCILE_SLACK) -> tuple[ElementPlan, ReconcileResult]:
    """What makes `state` agree with `desired`: strays deleted, missing entries added, elements whose
    time left is off by more than `slack` seconds reset. Never refuses: entries that cannot go in
    (unknown jail, overlap; the wider network wins) are skipped with the reason."""
    known = set(jails)
    skipped: list[tuple[BanEntry, str]] = []
    wanted: dict[tuple[str, IPNetwork], BanEntry] = {}
    for entry in desired:
        if entry.jail in known:
            wanted[(entry.jail, entry.network)] = entry
        else:
            skipped.append((entry, f"no sets for {_jail_label(entry.jail)} in the firewall (call sync_rules())"))
    removed = [BanEntry(jail, network, left) for jail, elements in state.items()
               for network, left in elements.items() if (jail, network) not in wanted]
    stale, missing = [], []
    for (jail, network), entry in wanted.items():
        if network not in state.get(jail, {}):
            missing.append(entry)
        elif not _close(state[jail][network], entry.timeout, slack):
            stale.append(BanEntry(jail, network, state[jail][network]))
    refreshed = [wanted[(entry.jail, entry.network)] for entry in stale]
    # Refreshed elements were disjoint in the kernel, so they always fit back; they go first.
    accepted, refused = fit_entries(_without(state, [*removed, *stale]), [*refreshed, *widest_first(missing)])
    for entry, blocker in refused:
        skipped.append((entry, f"overlaps {blocker} in {_jail_label(entry.jail)} (an nftables interval set "
                               "cannot hold both)"))
    refreshed_keys = {(entry.jail, entry.network) for entry in refreshed}
    added = [entry for entry in accepted if (entry.jail, entry.network) not in refreshed_keys]
    plan = ElementPlan(deletes=[*removed, *stale], adds=accepted)
    return plan, ReconcileResult(added=tuple(added), removed=tuple(removed), refreshed=tuple(refreshed),
                                 skipped=tuple(skipped))


def _close(left: int | None, wanted: int | None, slack: int) -> bool:
    if left is None or wanted is None:
        return left is wanted
    return abs(left - wanted) <= slack


# -- rules ------------------------------------------------------------------------------------

_BLOCKLIST_SPEC = nft.RuleSpec(set_base=nft.BLOCKLIST_SET_BASE, comment="blocklist", protocol="all",
                               ports=None, blocktype="drop")


def rule_specs(jails: Sequence[JailRules]) -> list[nft.RuleSpec]:
    """The blocklist first, then one spec per jail in the order given; bad input is a permanent error."""
    specs = [_BLOCKLIST_SPEC]
    seen: set[str] = set()
    for jail in jails:
        if jail.name in seen:
            raise FirewallError(f"Jail {jail.name} is given twice.", permanent=True)
        seen.add(jail.name)
        try:
            ranges = resolve_ports(jail.ports, jail.protocol)
        except ValueError as exc:
            raise FirewallError(f"Jail {jail.name}: {exc}", permanent=True) from None
        every_port = len(ranges) == 1 and ranges[0][0] <= 1 and ranges[0][1] == 65535
        specs.append(nft.RuleSpec(set_base=nft.jail_set_base(jail.name), comment=f"jail {jail.name}"[:127],
                                  protocol=jail.protocol, ports=None if every_port else tuple(ranges),
                                  blocktype=jail.blocktype))
    return specs


def _set_base_of(jail: str) -> str:
    return nft.BLOCKLIST_SET_BASE if jail == BLOCKLIST else nft.jail_set_base(jail)


def _jail_of(set_base: str) -> str | None:
    return BLOCKLIST if set_base == nft.BLOCKLIST_SET_BASE else nft.jail_from_set_base(set_base)


# -- the real thing ---------------------------------------------------------------------------
