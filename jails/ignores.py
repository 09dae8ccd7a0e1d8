"""The ignore lists a jail honours: the global list, which every jail honours, and its own ignoreip.

fail2ban copies `[DEFAULT] ignoreip` into every jail; here it is kept once, as the global list
(GlobalIgnore), and a jail's ignoreip holds only its own additions. Every decision reads both from
here: the counting (bans.services.AutomaticRefusals), the ban gate (bans.services.current_gate), a
replay (bans.replay), `jailctl status` and the pages. Each list stays apart in what they read, so a
decision can say which list held an address ("listed in the global ignore list as ..." or "... in
ignoreip of jail sshd").

The global list is read when a decision needs it, as the jail's own row is (a log read re-reads its
jail): a change reaches the running followers with their next read, without a restart or a cache to
expire. Changes go through jails.changes (audited).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from jails.models import GlobalIgnore, Jail

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network_of(entry: str) -> Network | None:
    """An entry as a network (192.0.2.1 -> 192.0.2.1/32), or None for a host name."""
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def same_entry_key(entry: str) -> object:
    """What makes two ignore entries the same: the network (192.0.2.1 = 192.0.2.1/32), or the host name."""
    return network_of(entry) or entry.lower().rstrip(".")


def without_repeats(entries: Iterable[str]) -> list[str]:
    """The entries in their order, each network or host name once (its first spelling kept)."""
    seen: set[object] = set()
    kept: list[str] = []
    for text in entries:
        key = same_entry_key(text)
        if key not in seen:
            seen.add(key)
            kept.append(text)
    return kept


def global_entries() -> list[str]:
    """The global list as stored now: one query by primary key ([] while nobody has written one)."""
    stored = GlobalIgnore.objects.filter(pk=GlobalIgnore.ONLY).values_list("entries", flat=True).first()
    return list(stored or [])


@dataclass(frozen=True)
class JailIgnores:
    """What one jail ignores, each list apart: the global entries, and the jail's own ignoreip."""

    global_entries: tuple[str, ...]
    own: tuple[str, ...]

    @property
    def effective(self) -> list[str]:
        """The jail's effective list: the global entries, then its own that the global list lacks."""
        return without_repeats([*self.global_entries, *self.own])


def of_jail(jail: Jail, *, global_list: Sequence[str] | None = None) -> JailIgnores:
    """The lists `jail` honours now; `global_list`: the global entries already read (None: read them)."""
    listed = global_entries() if global_list is None else global_list
    return JailIgnores(global_entries=tuple(listed), own=tuple(jail.ignoreip))


def effective_ignoreip(jail: Jail) -> list[str]:
    """Everything `jail` never counts nor bans by entry: the global list, then its own ignoreip."""
    return of_jail(jail).effective
