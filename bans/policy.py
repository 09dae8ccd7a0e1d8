"""The ban decision policy: when an address is banned, for how long, and who never is.

Plain Python over plain data (no Django, no database, no clock: the caller passes ``now``; no I/O:
this host's addresses come from bans.hostaddrs as a list), so the
watchers, the scheduled tasks and the tests share one set of rules, and the caller keeps the state
(a `Tally` per jail and address) wherever it likes.

The rules are fail2ban 1.0.2's, read in its source and checked by running it (the numbers in
``tests/bans/test_policy.py`` come from those runs). Each section below says what is reproduced
and where we differ on purpose:

- counting failures: `add_failure` (fail2ban's FailManager and FailTicket), `is_stale`,
  `time_in_operation`;
- ban time with ``bantime.increment``: `next_bantime` (its formula: jails.engine.formula), `earlier_ban_count`;
- repeat offenders over the ban history: `recidive_offenders`;
- addresses never banned: `ignore_reason` (this host's own addresses are read by bans.hostaddrs).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import random as _random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from jails.engine.formula import compile_formula

__all__ = [
    "DEFAULT_FORMULA",
    "FailureEvent",
    "IncrementSettings",
    "Tally",
    "add_failure",
    "canonical_network",
    "earlier_ban_count",
    "ignore_reason",
    "is_stale",
    "next_bantime",
    "recidive_offenders",
    "time_in_operation",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


# ---------------------------------------------------------------------------------------------
# Counting failures (fail2ban's FailManager.addFailure / FailTicket / Filter.processLine)
# ---------------------------------------------------------------------------------------------


@dataclass
class FailureEvent:
    """One failure of `address` at `time` (epoch seconds).

    `attempts`: how many failures this event stands for; the tally grows by that much (fail2ban's
    ``count`` argument of addFailure, as ``fail2ban-client set JAIL attempt IP LINE...`` uses it).
    A failure read from a log counts as ONE in fail2ban however many lines it spans (run with a
    3-line failregex, three such failures give a count of 3): pass 1 for those, and put the lines
    in `line`, one per ``\\n``; each becomes one kept match, as fail2ban keeps them.
    """

    address: str
    time: float
    attempts: int = 1
    line: str = ""


@dataclass
class Tally:
    """What is remembered about one address in one jail between failures (fail2ban's FailTicket).

    `count` is fail2ban's retry count (compared with maxretry), `first_time` the start of the
    interval it was counted over, `last_time` the latest failure, `matches` the latest lines.
    """

    address: str
    first_time: float
    last_time: float
    count: int
    matches: list[str] = field(default_factory=list)


def is_stale(event_time: float, now: float, findtime: int) -> bool:
    """Whether a failure is too old to count: older than `findtime` before `now`.

    fail2ban drops such lines when it reads a log from the start (first start, or after being
    down: "Ignoring all log entries older than findtime"); a line exactly findtime old still counts.
    """
    return event_time < now - findtime


def time_in_operation(event_time: float, now: float) -> float:
    """The time fail2ban gives a line read while following a log (not catching up).

    A date more than 60 s away from now, either way, is taken for a clock or time-zone problem
    and the line is treated as if it had just happened. Lines read while catching up keep their
    own time (and `is_stale` drops the old ones).
    """
    return now if abs(int(event_time - now)) > 60 else event_time


def add_failure(
    tally: Tally | None,
    event: FailureEvent,
    *,
    findtime: int,
    maxretry: int,
    maxmatches: int | None,
    now: float,
) -> tuple[Tally | None, bool]:
    """Count `event` into `tally`; return the new tally and whether the address must be banned now.

    The caller stores what comes back: None means "remember nothing". When the second value is
    True the tally returned is the one that reached maxretry (its matches are the evidence for the
    ban); the caller must then drop it, because fail2ban forgets an address's failures once it is
    banned and counts from zero afterwards.

    fail2ban 1.0.2 behaviour reproduced, in order:

    1. A failure dated in the future counts as happening `now`.
    2. A failure older than findtime (`is_stale`) is not counted.
    3. A tally whose last failure is findtime old or older is forgotten before counting
       (fail2ban's periodic cleanup, ``last <= now - findtime``). So the window is not reset at
       ``first_time + findtime``: failures keep adding up while each comes within findtime of
       the previous one...
    4. ...but not without bound: when a failure comes later than the latest one and the tally
       started more than findtime before it, the count is rescaled to the rate seen so far over
       one findtime, ``round(count / (time - first_time) * findtime)`` (Python's round, half to
       even), and the tally now starts at ``time - findtime``. This is fail2ban's estimate of a
       sliding window, kept from three numbers instead of every failure's time.
    5. A failure that comes before the latest one (out of order) is counted, and changes neither
       first_time nor last_time.
    6. The count grows by ``max(1, attempts)`` ("at least +1 attempt").
    7. The event's lines are appended to the matches and only the last maxmatches are kept;
       maxmatches None means as many as maxretry (jail.conf: ``maxmatches = %(maxretry)s``),
       0 keeps none.
    8. Ban when ``count >= maxretry``.

    Deliberate differences: fail2ban's cleanup runs every few seconds, ours on every failure, so
    a tally is forgotten exactly findtime after its last failure rather than up to a few seconds
    later; fail2ban does not cut the first failure's own lines to maxmatches (nor drop them with
    maxmatches 0) until the next failure comes, we always do. Not reproduced: with
    bantime.increment, fail2ban's observer makes each failure of an address banned before count
    more than once (2, 3, 5, 9... up to maxretry).
    """
    if tally is not None and tally.address != event.address:
        raise ValueError(f"The tally is for {tally.address}, the failure for {event.address}.")
    time = min(event.time, now)
    if tally is not None and tally.last_time <= now - findtime:
        tally = None
    if is_stale(time, now, findtime):
        return tally, False
    keep = max(0, maxretry if maxmatches is None else maxmatches)
    lines = _match_lines(event.line)
    attempts = max(1, event.attempts)
    if tally is None:
        matches = lines[-keep:] if keep else []
        tally = Tally(event.address, first_time=time, last_time=time, count=attempts, matches=matches)
    else:
        tally = _counted(tally, time, attempts, lines, findtime=findtime, keep=keep)
    return tally, tally.count >= maxretry


def _match_lines(text: str) -> list[str]:
    if "\n" not in text:  # one line, nearly always
        return [text] if text else []
    return [line for line in text.split("\n") if line]


def _counted(tally: Tally, time: float, attempts: int, lines: list[str], *, findtime: int, keep: int) -> Tally:
    first, last, count = tally.first_time, tally.last_time, tally.count
    if time > last:
        if first < time - findtime:
            count = round(count / (time - first) * findtime)
            first = time - findtime
        last = time
    matches = (tally.matches + lines)[-keep:] if keep else []
    # a new Tally, built directly: dataclasses.replace costs as much again (a flood counts one per failure)
    return Tally(tally.address, first, last, count + attempts, matches)


# ---------------------------------------------------------------------------------------------
# Ban time with bantime.increment (fail2ban's Jail.setBanTimeExtra and ObserverThread.incrBanTime)
# ---------------------------------------------------------------------------------------------

# What fail2ban uses when bantime.formula is not set: 1, 2, 4, 8... times the ban time, doubling
# stopping at 2**20. (jail.conf's exp() formula is only a commented example.)
DEFAULT_FORMULA = "ban.Time * (1<<(ban.Count if ban.Count<20 else 20)) * banFactor"


@dataclass(frozen=True)
class IncrementSettings:
    """A jail's ``bantime.*`` options, in seconds; None means "not set"."""

    enabled: bool
    factor: float = 1
    formula: str = ""
    multipliers: tuple[int, ...] = ()
    maxtime: int | None = None
    rndtime: int | None = None
    overalljails: bool = False


def earlier_ban_count(earlier_ban_jails: Iterable[str], jail: str, *, overalljails: bool) -> int:
    """How many earlier bans `next_bantime` should be given: those in `jail`, or in any jail.

    `earlier_ban_jails` names the jail of each earlier ban of the address. Which bans still count
    is the caller's choice: fail2ban forgets an address once its last ban is older than dbpurgeage
    (1 day by default) and ended more than three ban times before that.
    """
    return sum(1 for name in earlier_ban_jails if overalljails or name == jail)


def next_bantime(
    base: int,
    earlier_bans: int,
    settings: IncrementSettings,
    random: Callable[[], float] = _random.random,
) -> int:
    """Seconds to ban an address banned `earlier_bans` times before (-1: permanent).

    fail2ban 1.0.2 behaviour reproduced (ban.Count below is `earlier_bans`):

    - a permanent ban (-1) stays permanent; without bantime.increment, or for a first ban, the
      ban time is `base`, untouched (no jitter either);
    - with multipliers: ``base * factor * multipliers[ban.Count]``, the last multiplier once
      ban.Count runs past the list; so the first multiplier is never used, and nothing stops the
      result from falling below `base` (factor < 1);
    - otherwise the formula (`DEFAULT_FORMULA` when empty), never below `base`;
    - then at most maxtime (even when that is below `base`), then plus ``random() * rndtime``
      (after the cap: jitter may pass maxtime).

    Deliberate differences: fail2ban keeps a fractional ban time; we round to whole seconds and
    never return less than 1 (fail2ban would ban for 0 s with factor 0). With overalljails fail2ban
    sums each jail's latest cumulative ban count, which over-counts an address that moves between
    jails (bans in jails a, b, a, b, b got ban.Count 0, 1, 3, 6, 11); give us the real number of
    earlier bans (`earlier_ban_count`). A formula that fails (overflow, division by zero) raises
    ValueError, where fail2ban logs the error and keeps `base`.
    """
    if base <= 0 or not settings.enabled or earlier_bans <= 0:
        return base
    if settings.multipliers:
        step = settings.multipliers[min(earlier_bans, len(settings.multipliers) - 1)]
        seconds = float(base * settings.factor * step)
    else:
        formula = compile_formula(settings.formula.strip() or DEFAULT_FORMULA)
        seconds = max(float(base), formula(base, earlier_bans, settings.factor))
    if settings.maxtime is not None:
        seconds = min(seconds, settings.maxtime)
    if settings.rndtime is not None:
        seconds += random() * settings.rndtime
    if not math.isfinite(seconds):
        raise ValueError(f"The ban time came out as {seconds} for {earlier_bans} earlier bans; set bantime.maxtime.")
    return max(1, round(seconds))


# ---------------------------------------------------------------------------------------------
# Recidive: repeat offenders in the ban history
# ---------------------------------------------------------------------------------------------


def recidive_offenders(bans: Iterable[tuple[str, float]], *, findtime: int, maxretry: int, now: float) -> list[str]:
    """The addresses banned at least `maxretry` times within `findtime` before `now`, in any jail.

    `bans` holds (address, time of ban). What fail2ban's recidive jail does by reading its own log
    ("Ban <ip>" lines of other jails), as a query: give us neither the recidive bans themselves
    (fail2ban's filter excludes them) nor restored bans ("Restore Ban" does not match it), and skip
    addresses already serving a recidive ban, since their earlier bans stay in the window.

    A ban counts when it is not stale (`is_stale`); a ban dated after `now` counts as now.
    Addresses are compared in canonical form (IPv4-mapped IPv6 as IPv4). Deliberate difference:
    this is an exact window over the ban times, where fail2ban's recidive jail counts with its
    failure estimate (see `add_failure`). Result in order of each address's first ban in `bans`.
    """
    counts: dict[str, int] = {}
    for address, time in bans:
        if is_stale(min(time, now), now, findtime):
            continue
        key = _canonical_text(address)
        counts[key] = counts.get(key, 0) + 1
    return [address for address, count in counts.items() if count >= maxretry]


# ---------------------------------------------------------------------------------------------
# Addresses never banned: ignoreip, ignoreself, loopback
# ---------------------------------------------------------------------------------------------


# Where an entry that spared an address was listed, as the reasons say it: every jail honours the
# global list (jails.ignores) besides its own ignoreip.
GLOBAL_LIST = "the global ignore list"
JAIL_LIST = "ignoreip"


def ignore_reason(
    address: str,
    *,
    ignoreip: Sequence[str],
    own_addresses: Sequence[str],
    resolve: Callable[[str], list[str]] | None,
    global_entries: Sequence[str] = (),
) -> str | None:
    """Why `address` must never be banned, or None.

    - "listed in the global ignore list as ENTRY", then "listed in ignoreip as ENTRY": ENTRY is an
      address, a network (``192.0.2.0/24``, or with a netmask ``192.0.2.0/255.255.255.0``; host bits
      are ignored) or a host name of `global_entries` (every jail's) or of the jail's `ignoreip`;
      names are looked up only through `resolve` (None: names never match; a failing lookup matches
      nothing), and the reason then names the address found too;
    - "an address of this host": one of `own_addresses` (fail2ban's ignoreself; pass an empty list
      when the jail turns it off);
    - "loopback": 127.0.0.0/8 and ::1, always (fail2ban would ban those if ignoreself and ignoreip
      were cleared; a firewall rule against loopback only breaks the host).

    IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``) and networks are compared as IPv4, as
    fail2ban does for addresses. Raises ValueError when `address` is not an IP address.
    """
    return IgnoreList(ignoreip, own_addresses, resolve, global_entries=global_entries).reason(address)


class IgnoreList:
    """`ignore_reason` for many addresses against the same lists: the entries are parsed once."""

    def __init__(self, ignoreip: Sequence[str], own_addresses: Sequence[str],
                 resolve: Callable[[str], list[str]] | None, *, global_entries: Sequence[str] = ()) -> None:
        # the global entries first: an address both lists hold is said to be the global list's
        listed = [(entry.strip(), _network_of(entry.strip()), where)
                  for entries, where in ((global_entries, GLOBAL_LIST), (ignoreip, JAIL_LIST))
                  for entry in entries if entry.strip()]
        # Networks by (family, prefix length) -> {network as an integer: its first entry}: an address
        # is looked up once per prefix length in use, not against every entry (a follower asks for
        # thousands of addresses a read; a list of 2,000 entries made a read take 1.5 s). Host names
        # keep their order in a list of their own.
        self._networks: dict[tuple[int, int], dict[int, tuple[int, str, str]]] = {}
        self._names: list[tuple[int, str, str]] = []
        for index, (entry, network, where) in enumerate(listed):
            if network is None:
                self._names.append((index, entry, where))
            else:
                table = self._networks.setdefault((network.version, network.prefixlen), {})
                table.setdefault(int(network.network_address), (index, entry, where))
        self._prefixes = {version: sorted(length for v, length in self._networks if v == version) for version in (4, 6)}
        self.own = parsed_addresses(own_addresses)
        self.resolve = resolve

    def reason(self, address: str) -> str | None:
        return self.reason_of(_canonical(address))

    def reason_of(self, ip: IPAddress) -> str | None:
        """`reason` of an address already parsed (`address_object`): the first entry, in list order
        (global first), that holds it."""
        value, bits = int(ip), ip.max_prefixlen
        first: tuple[int, str, str] | None = None
        for length in self._prefixes[ip.version]:
            mask = ((1 << length) - 1) << (bits - length)
            hit = self._networks[ip.version, length].get(value & mask)
            if hit is not None and (first is None or hit[0] < first[0]):
                first = hit
        for index, entry, where in self._names:
            if first is not None and index > first[0]:
                break
            matched = _ignore_entry_match(entry, ip, self.resolve)
            if matched is not None:
                return f"listed in {where} as {matched}"
        if first is not None:
            return f"listed in {first[2]} as {first[1]}"
        if ip in self.own:
            return "an address of this host"
        if ip.is_loopback:
            return "loopback"
        return None


def _ignore_entry_match(entry: str, ip: IPAddress, resolve: Callable[[str], list[str]] | None) -> str | None:
    if not entry:
        return None
    network = _network_of(entry)
    if network is not None:
        return entry if ip in network else None
    if resolve is None or entry.replace(".", "").isdigit():  # "10.1" is a broken address, not a name
        return None
    try:
        found = resolve(entry)
    except (OSError, UnicodeError, ValueError):  # socket.gaierror is an OSError
        return None
    return f"{entry} ({ip})" if ip in parsed_addresses(found) else None


def ignore_entry_network(entry: str) -> IPNetwork | None:
    """An ignoreip entry as a network (IPv4-mapped IPv6 as IPv4), or None for a host name."""
    return _network_of(entry)


@functools.lru_cache(maxsize=1024)
def _network_of(entry: str) -> IPNetwork | None:
    try:
        return canonical_network(ipaddress.ip_network(entry.split("%", 1)[0], strict=False))
    except ValueError:
        return None


def canonical_network(network: IPNetwork) -> IPNetwork:
    """IPv4-mapped IPv6 (::ffff:192.0.2.0/120) as the IPv4 network it is; anything else unchanged."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


# Per-address memos (parsed addresses, their networks) are kept for this many addresses per process.
# Small on purpose: every address of a flood passes through them, and at 1 << 16 entries the caches
# of one worker process held ~70 MB after a 20,000-address flood (an IPv4Network with its cached
# properties is ~0.8 KB). Parsing again costs 1.5-3 us; a read's own dicts already remember the
# addresses it meets, so only repeat offenders across reads are served from here.
ADDRESS_CACHE_SIZE = 1 << 12


def plain_ipv4(text: str) -> int | None:
    """The value of `text` when it is an IPv4 address written the one way ipaddress writes it back
    (four decimal octets, no leading zeros, no spaces), else None: then ask ipaddress, which also
    says what is wrong. A flood brings tens of thousands of addresses, nearly all written so, and
    ipaddress' own parser costs ~2 us each (the live path parsed each one three times)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        # isascii: str.isdigit also accepts other scripts' digits (U+0661 ARABIC-INDIC DIGIT ONE), which int() reads
        if not part.isascii() or not part.isdigit() or len(part) > 3 or (part[0] == "0" and len(part) > 1):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def attacker_network(address: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) an address belongs to: how attackers' networks are usually cut
    (the dashboard's top networks). `address` is a canonical address (services.parse_address)."""
    if plain_ipv4(address) is not None:
        return address.rsplit(".", 1)[0] + ".0/24"
    ip = ipaddress.ip_address(address)
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def stat_user_name(value: object, most: int) -> str:
    """A failure's captured user name as the statistics keep it: text, cut to `most` characters
    ("" when the filter captured none). Attacker-written, so bounded."""
    if value is None:
        return ""
    return str(value)[:most]


def address_object(address: str) -> IPAddress:
    """`_canonical` under its public name: the parsed address the ignore list and the gate take."""
    return _canonical(address)


@functools.lru_cache(maxsize=ADDRESS_CACHE_SIZE)
def _canonical(address: str) -> IPAddress:
    """The address as ipaddress sees it: no zone (fe80::1%eth0), IPv4-mapped IPv6 as IPv4.
    Remembered (addresses are immutable): the same attackers are checked read after read."""
    value = plain_ipv4(address)
    if value is not None:
        return ipaddress.IPv4Address(value)
    ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _canonical_text(address: str) -> str:
    try:
        return str(_canonical(address))
    except ValueError:
        return address


def parsed_addresses(addresses: Iterable[str]) -> set[IPAddress]:
    """The addresses that parse (canonical: IPv4-mapped as IPv4, no zone); the others are left out."""
    parsed: set[IPAddress] = set()
    for address in addresses:
        try:
            parsed.add(_canonical(address))
        except ValueError:
            continue
    return parsed
