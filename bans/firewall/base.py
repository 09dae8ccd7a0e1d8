"""The firewall's vocabulary, shared by every backend: what a jail's rules and a ban's element are,
what a backend does (`FirewallBackend`), and the errors it raises (plain Python, no Django)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from bans.firewall import nft
from bans.firewall.nft import IPNetwork

# The blocklist's key in BanEntry.jail and snapshot(). A jail name starts with a letter or digit
# (jails.validators.NAME_RE), so no jail can be called this, not even a jail named "blocklist".
BLOCKLIST: Final = "@blocklist"
PROTOCOLS: Final = ("tcp", "udp", "sctp", "dccp", "all")
BLOCKTYPES: Final = ("drop", "reject")

State = dict[str, dict[IPNetwork, int | None]]


class FirewallError(Exception):
    """Anything the firewall refused. `permanent`: retrying will not help (bad input, no CAP_NET_ADMIN,
    no nftables); otherwise the caller retries with backoff. `entries`: the entries at fault, when known."""

    def __init__(self, message: str, *, permanent: bool, entries: Iterable[BanEntry] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.entries = tuple(entries)


class _Abandoned(FirewallError):
    """A step that did not finish in time (the lock, a libnftables call): transient, and never taken
    for a refusal of the kernel, since whether the batch committed is unknown."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=False)


class _RaceError(FirewallError):
    """The kernel changed between our read and our write; the call reads again and retries."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=False)


@dataclass(frozen=True)
class JailRules:
    """What one jail blocks. ports: "all" or fail2ban's spec ("ssh", "http,https", "8000:8100")."""

    name: str
    ports: str
    protocol: str
    blocktype: str

    def __post_init__(self) -> None:
        if self.name == BLOCKLIST:
            raise ValueError(f"{BLOCKLIST!r} is the blocklist's own key, not a jail name.")
        nft.jail_set_base(self.name)  # raises for an empty or too long name
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"Jail {self.name}: protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}.")
        if self.blocktype not in BLOCKTYPES:
            raise ValueError(f"Jail {self.name}: blocktype {self.blocktype!r} is not one of {', '.join(BLOCKTYPES)}.")


@dataclass(frozen=True)
class BanEntry:
    """One element: `network` (a single address is a /32 or /128) in `jail`'s sets (or BLOCKLIST's),
    with `timeout` seconds left, None for no timeout."""

    jail: str
    network: IPNetwork
    timeout: int | None

    def __post_init__(self) -> None:
        if not isinstance(self.network, ipaddress.IPv4Network | ipaddress.IPv6Network):
            raise TypeError(f"BanEntry.network must be an ipaddress network, not {self.network!r}.")
        # nft reads a timeout of 0 as "no timeout": an expired ban must never become a permanent one.
        if self.timeout is not None and (isinstance(self.timeout, bool) or not isinstance(self.timeout, int)
                                         or self.timeout < 1):
            raise ValueError(f"Ban of {self.network}: timeout must be at least 1 second or None, "
                             f"not {self.timeout!r}.")


@dataclass(frozen=True)
class ReconcileResult:
    """What reconcile() changed; `removed` carries the time the kernel had left, `skipped` says why."""

    added: tuple[BanEntry, ...] = ()
    removed: tuple[BanEntry, ...] = ()
    refreshed: tuple[BanEntry, ...] = ()
    skipped: tuple[tuple[BanEntry, str], ...] = ()


class FirewallBackend(Protocol):
    # every ban the kernel must hold, asked for when a set (or the whole table) has to be created:
    # they go in with it, in the same transaction
    contents: Callable[[], Sequence[BanEntry]] | None

    def sync_rules(self, jails: Sequence[JailRules]) -> None: ...

    def apply(self, add: Sequence[BanEntry] = (), remove: Sequence[BanEntry] = ()) -> None: ...

    def snapshot(self) -> State: ...

    def reconcile(self, desired: Sequence[BanEntry]) -> ReconcileResult: ...

    def teardown(self) -> None: ...

    def generation(self) -> int: ...


# -- ports ------------------------------------------------------------------------------------
