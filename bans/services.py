"""Deciding bans: failures in, pending bans out.

Plain functions over the models. The watchers call `record_failures` inside the transaction that
also advances their read position, so a crash either keeps both or neither. Bans are created in
state PENDING; the firewall worker (bans.tasks) applies them and marks them ACTIVE once the
kernel has them. The counting and ban-time rules themselves live in bans.policy (no Django).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from bans import bulk, dispatch, gate, hostaddrs, policy
from bans.gate import BanRefused as BanRefused  # re-exported: callers catch them from here
from bans.gate import ConfirmationNeeded as ConfirmationNeeded
from bans.models import Ban, Ignored
from jails import ignores
from jails.access import audit
from jails.access.sessions import live_session_addresses
from jails.models import Host, Jail

# Earlier bans older than this no longer make a new ban longer (fail2ban's dbpurgeage default is
# one day; we keep a week of memory for bantime.increment, which is what admins expect from it).
INCREMENT_MEMORY = dt.timedelta(days=7)
# What the audit trail keeps of a ban, whichever door changed it.
BAN_AUDIT_FIELDS = ["network", "jail_name", "host", "state", "origin", "bantime", "started_at", "expires_at",
                    "reason"]
# Addresses per `IN (...)` list: under SQLite's bound-parameter limit with room for the query's others.

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observed:
    """A failure as a watcher hands it over: the engine's host text, time and evidence."""

    host: str
    time: float
    lines: tuple[str, ...] = ()
    fields: dict[str, object] = field(default_factory=dict)


@dataclass
class Decision:
    counted: int = 0
    ignored: int = 0
    bans: list[Ban] = field(default_factory=list)
    # failures not counted as written, by reason (watchers.skips.REASONS): "unparsable" (not an
    # address), "stale" (older than findtime), "clock" (dated far from now: counted as now)
    skipped_by: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        """Failures not counted at all."""
        return self.skipped_by.get("unparsable", 0) + self.skipped_by.get("stale", 0)


def aware(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


@functools.lru_cache(maxsize=policy.ADDRESS_CACHE_SIZE)
def network_of(address: str) -> str:
    """An address as the single-host network the firewall sets hold (203.0.113.9/32)."""
    if policy.plain_ipv4(address) is not None:
        return f"{address}/32"  # written as ipaddress writes it: its network is the same text and /32
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ipaddress.ip_network(ip))


# The longest text an address can be: a full IPv6 address with an IPv4 tail, brackets and a zone.
MAX_ADDRESS_TEXT = 64


def parse_address(host: str) -> str | None:
    """The address in a failure, or None when the host is a name (names are never resolved here)."""
    return None if len(host) > MAX_ADDRESS_TEXT else _parse_address(host)


@functools.lru_cache(maxsize=policy.ADDRESS_CACHE_SIZE)
def _parse_address(host: str) -> str | None:
    """The address in a failure, or None when the host is a name (names are never resolved here).
    Remembered: an attack repeats the same few thousand addresses in every read (short texts only:
    parse_address never hands it anything longer, so no attacker-written text is kept)."""
    if policy.plain_ipv4(host) is not None:
        return host  # already the canonical text (the common case, and the cheap one)
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return None  # fe80::1%eth0: nftables holds no zone, so it could never be banned as written
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def record_failures(
    jail: Jail,
    observed: Sequence[Observed],
    *,
    now: float,
    own_addresses: Sequence[str],
    catching_up: bool,
    host: str = "local",
) -> Decision:
    """Count failures for one jail and create the bans they earn. Call inside a transaction.

    Set-based, because a ban storm brings thousands of failures per read: the tallies of every
    address in the call are read at once, the failures are counted in memory in their order by the
    same rules as one at a time (`policy.add_failure`), then tallies, failures, the statistics'
    counters and bans are written in bulk (bans.bulk): a handful of statements per call, whatever
    its size. The firewall worker is asked once.
    """
    decision = Decision()
    skipped: Counter[str] = Counter()
    refusals = AutomaticRefusals(jail, own_addresses)
    addresses: dict[str, str | None] = {}  # host text -> address (or None: not one)
    reasons: dict[str, str | None] = {}
    ignored: dict[str, str] = {}  # address -> why, the first reason seen
    counted: list[tuple[str, float, Observed]] = []
    for item in observed:
        address = addresses.get(item.host, "")
        if address == "":
            address = addresses[item.host] = parse_address(item.host)
        if address is None:
            skipped["unparsable"] += 1
            continue
        when, why = event_time(item.time, now, catching_up, jail.findtime)
        if why:
            skipped[why] += 1
        if when is None:
            continue
        reason = reasons.get(address, "")
        if reason == "":
            reason = reasons[address] = refusals.reason(address)
        if reason is not None:
            ignored.setdefault(address, reason)
            decision.ignored += 1
            continue
        # to the microsecond, as stored: every writer then files it in the same minute and hour
        counted.append((address, round(when, 6), item))
    decision.skipped_by = dict(skipped)
    note_ignored_all(jail, ignored, now)
    adapter = bulk.Adapter()
    held = held_tallies(jail, counted, host)  # read (and locked) before anything is sent
    # (a read without failures sends nothing: no pipeline to open and close, a round trip saved)
    with bulk.pipelined() if counted else contextlib.nullcontext():
        # PostgreSQL works on these rows while the failures are counted here: nothing below waits
        # for a statement's result until create_jail_bans reads the networks' bans
        bulk.insert_failures(jail.pk, ((address, when, "\n".join(item.lines), item.fields)
                                       for address, when, item in counted), created=now, adapter=adapter)
        bulk.add_to_stats(jail.name, (when for _, when, _ in counted), adapter=adapter)
        bulk.add_to_tops(jail.name, ((when, address, item.fields.get("user")) for address, when, item in counted),
                         adapter=adapter)
        earned = count_failures(jail, counted, held, now=now, adapter=adapter, host=host)
        decision.counted = len(counted)
        decision.bans = create_jail_bans(jail, earned, now=now, host=host)
    return decision


def event_time(time: float, now: float, catching_up: bool, findtime: int) -> tuple[float | None, str]:
    """When a failure counts as having happened (None: too old to count), and "stale" or "clock"
    when that is not the time it carries."""
    if catching_up:
        return (None, "stale") if policy.is_stale(time, now, findtime) else (min(time, now), "")
    when = policy.time_in_operation(time, now)
    return when, "clock" if when != time else ""


class AutomaticRefusals:
    """Why a jail must not count (nor ban) an address: the global ignore list, its ignoreip and
    ignoreself as fail2ban reads them, then the gate (loopback and special space, this host even with
    ignoreself off, live panel sessions, trusted proxies). The global list is read and the gate built
    on the first address that needs them: a read with no failures costs no query. Both are read
    afresh for each call (each log read), as the jail's row is: a change applies from the next read."""

    def __init__(self, jail: Jail, own_addresses: Sequence[str]) -> None:
        self.jail = jail
        self.own_addresses = own_addresses
        self._ignore: policy.IgnoreList | None = None
        self._gate: gate.Gate | None = None

    def reason(self, address: str) -> str | None:
        ip = policy.address_object(address)  # parsed once for both checks
        if self._ignore is None:
            # as ignore_reason reads them, parsed once for all the addresses of a call
            lists = ignores.of_jail(self.jail)
            self._ignore = policy.IgnoreList(lists.own, self.own_addresses if self.jail.ignoreself else [], None,
                                             global_entries=lists.global_entries)
        found = self._ignore.reason_of(ip)
        if found is not None:
            return found
        if self._gate is None:  # the ignore lists were just read: not again
            self._gate = current_gate(own_addresses=self.own_addresses, jails=(), global_entries=())
        return self._gate.refusal_of_address(ip, ignore_jails=())


def note_ignored(jail: Jail, address: str, reason: str, now: float) -> None:
    """Record why an address was not counted, once per findtime, so the record stays readable."""
    note_ignored_all(jail, {address: reason}, now)


def note_ignored_all(jail: Jail, reasons: Mapping[str, str], now: float) -> None:
    """`note_ignored` for many addresses: one query for those noted within findtime, one insert."""
    if not reasons:
        return
    since = aware(now - jail.findtime)
    noted: set[str] = set()
    for chunk in bulk.batches(list(reasons)):
        noted.update(Ignored.objects.filter(jail=jail, address__in=chunk, time__gte=since)
                     .values_list("address", flat=True))
    Ignored.objects.bulk_create([Ignored(jail=jail, address=address, reason=reason, time=aware(now))
                                 for address, reason in reasons.items() if address not in noted])


def shared_text_prefix(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """Text every address of the network starts with: its whole octets (IPv4) or first hextet (IPv6)."""
    if network.version == 4:
        octets = network.prefixlen // 8
        return ".".join(str(network.network_address).split(".")[:octets]) + "." if octets else ""
    first = int(network.network_address) >> 112
    return f"{first:x}:" if network.prefixlen >= 16 and first else ""


def held_tallies(jail: Jail, counted: Sequence[tuple[str, float, Observed]], host: str) -> dict[str, policy.Tally]:
    """`host`'s stored tallies of the addresses counted, by address (the jail's tallies locked until
    the transaction ends: two sources of one jail never count an address at once; bulk.read_tallies)."""
    addresses = list(dict.fromkeys(address for address, _, _ in counted))
    return {address: policy.Tally(address=address, first_time=first_time, last_time=last_time, count=count,
                                  matches=matches)
            for address, (first_time, last_time, count, matches) in bulk.read_tallies(jail.pk, host, addresses).items()}


def count_failures(jail: Jail, counted: Sequence[tuple[str, float, Observed]], held: Mapping[str, policy.Tally], *,
                   now: float, host: str, adapter: bulk.Adapter | None = None) -> list[tuple[str, list[str]]]:
    """Count the failures into the addresses' tallies (`held`: those stored, held_tallies), in order;
    store the tallies that remain.

    Returns (address, evidence) for each address that reached maxretry: fail2ban forgets a banned
    address's failures, so its tally is gone and a later failure in the same call starts a new one
    (the live ban it now has keeps that one from banning twice: create_jail_bans)."""
    stored = set(held)
    tallies: dict[str, policy.Tally | None] = dict(held)
    times: dict[float, float] = {}  # as_stored's, for the call
    earned: list[tuple[str, list[str]]] = []
    for address, when, item in counted:
        event = policy.FailureEvent(address=address, time=when, attempts=1, line="\n".join(item.lines))
        after, ban_now = policy.add_failure(tallies.get(address), event, findtime=jail.findtime,
                                            maxretry=jail.maxretry, maxmatches=jail.maxmatches, now=now)
        if ban_now and after is not None:
            earned.append((address, after.matches))
            after = None
        tallies[address] = as_stored(after, times)
    save_tallies(jail, host, stored, tallies, adapter)
    return earned


def as_stored(tally: policy.Tally | None, times: dict[float, float] | None = None) -> policy.Tally | None:
    """The tally as it reads back from the database (times to the microsecond), so counting a call's
    failures in memory gives exactly what storing and reading the tally after each one gave.
    `times`: the stored value of each time met so far (a flood's failures share a few seconds)."""
    if tally is None:
        return None
    memo = {} if times is None else times
    first, last = stored_time(tally.first_time, memo), stored_time(tally.last_time, memo)
    if first == tally.first_time and last == tally.last_time:
        return tally  # already so (the failures' times are): no copy
    return policy.Tally(tally.address, first, last, tally.count, tally.matches)  # (not replace(): slower)


def stored_time(epoch: float, times: dict[float, float]) -> float:
    """An epoch time as it reads back from the database (to the microsecond), remembered in `times`."""
    found = times.get(epoch)
    if found is None:
        found = times[epoch] = aware(epoch).timestamp()
    return found


def save_tallies(jail: Jail, host: str, stored: set[str], tallies: Mapping[str, policy.Tally | None],
                 adapter: bulk.Adapter | None = None) -> None:
    """Delete the tallies that ended (banned, or forgotten), insert or update the others (one upsert)."""
    ended = [address for address, tally in tallies.items() if tally is None and address in stored]
    bulk.delete_tallies(jail.pk, host, ended)
    bulk.upsert_tallies(jail.pk, host, ((t.address, t.first_time, t.last_time, t.count, t.matches)
                                  for t in tallies.values() if t is not None), adapter)


def increment_settings(jail: Jail) -> policy.IncrementSettings:
    return policy.IncrementSettings(
        enabled=jail.bantime_increment,
        factor=jail.bantime_factor,
        formula=jail.bantime_formula,
        multipliers=tuple(int(m) for m in jail.bantime_multipliers.split()),
        maxtime=jail.bantime_maxtime,
        rndtime=jail.bantime_rndtime,
        overalljails=jail.bantime_overalljails,
    )


def earlier_bans(network: str, jail: Jail, now: float) -> int:
    return earlier_bans_of([network], jail, now)[network]


def earlier_bans_of(networks: Sequence[str], jail: Jail, now: float) -> dict[str, int]:
    """`earlier_bans` of many networks (bulk.bans_of_networks: one statement, or one per batch)."""
    return earlier_counts(jail, networks, bulk.bans_of_networks(networks, aware(now) - INCREMENT_MEMORY))


def earlier_counts(jail: Jail, networks: Iterable[str], rows: Iterable[tuple[str, str, str, str, bool]]
                   ) -> dict[str, int]:
    """The bans within INCREMENT_MEMORY that count as earlier bans for `jail` (bantime.increment), for
    each of `networks`, from bulk.bans_of_networks' rows."""
    jails: dict[str, list[str]] = {network: [] for network in networks}
    for network, row_jail, _host, _state, recent in rows:
        if recent and network in jails:
            jails[network].append(row_jail)
    return {network: policy.earlier_ban_count(names, jail.name, overalljails=jail.bantime_overalljails)
            for network, names in jails.items()}


def live_ban(jail_name: str, network: str, host: str, now: float | None = None) -> Ban | None:
    return live_bans(jail_name, [network], host, now).get(network)


def live_bans(jail_name: str, networks: Sequence[str], host: str, now: float | None = None) -> dict[str, Ban]:
    """The bans of `networks` in force (or being lifted) in a jail on a host, by network. Rows whose time
    ran out are marked EXPIRED first: the kernel lifted them already, and a new ban must not wait for
    the firewall worker's next run to notice (one live row per jail, network and host)."""
    found: dict[str, Ban] = {}
    held = [*Ban.LIVE_STATES, Ban.State.LIFTING]
    for chunk in bulk.batches(networks):
        expire_ran_out(jail_name, chunk, host, now)
        found.update((ban.network, ban) for ban in Ban.objects.filter(
            jail_name=jail_name, network__in=chunk, host=host, state__in=held))
    return found


def expire_ran_out(jail_name: str, networks: Sequence[str], host: str, now: float | None) -> None:
    """Mark EXPIRED the live rows of these networks whose time ran out (the kernel lifted them)."""
    moment = aware(now_epoch() if now is None else now)
    bulk.expire_ran_out(jail_name, networks, host, moment, Ban.LIVE_STATES, Ban.State.EXPIRED)


def ban_history(jail: Jail, networks: Sequence[str], host: str, now: float) -> tuple[set[str], dict[str, int]]:
    """The networks banned in `jail` on `host` now (live_bans' rule: in force or being lifted, the
    bans whose time ran out marked EXPIRED first) and the others' earlier_bans_of, for a ban storm's
    networks: one UPDATE and one SELECT of the networks' bans, instead of the ORM's two queries and
    one UPDATE per 512 networks (PostgreSQL, the flood bench: 13 -> 3 µs a failure, most of it the
    ORM compiling and psycopg binding 512-value IN lists in Python). Looked up by network alone, the
    rest checked here: with hundreds of networks in the IN list and the state in the query, SQLite's
    planner walked the state index (every live ban of every jail)."""
    expire_ran_out(jail.name, networks, host, now)
    held = {*Ban.LIVE_STATES, Ban.State.LIFTING}
    rows = bulk.bans_of_networks(networks, aware(now) - INCREMENT_MEMORY)
    live = {network for network, row_jail, row_host, state, _ in rows
            if row_jail == jail.name and row_host == host and state in held}
    return live, earlier_counts(jail, [network for network in networks if network not in live], rows)


def create_jail_bans(jail: Jail, earned: Sequence[tuple[str, Sequence[str]]], *, now: float,
                     host: str) -> list[Ban]:
    """PENDING bans for the addresses that reached maxretry, in bulk; an address already banned here
    is left alone (a late failure of a banned address changes nothing)."""
    if not earned:
        return []
    networks = list(dict.fromkeys(network_of(address) for address, _ in earned))
    live, counts = ban_history(jail, networks, host, now)
    settings = increment_settings(jail)
    bans: list[Ban] = []
    for address, evidence in earned:
        network = network_of(address)
        if network in live:
            continue
        count = counts[network]
        bans.append(build_ban(jail.name, network, policy.next_bantime(jail.bantime, count, settings), now=now,
                              host=host, jail=jail, origin=Ban.Origin.JAIL, earlier=count, evidence=list(evidence)))
        live.add(network)
    if bans:
        bulk.insert_bans(bans)
        bulk.add_to_stats(jail.name, ban_times=[now] * len(bans))
        request_firewall_sync(host)
        if bans[0].fanout_pending:
            request_fan_out()
    return bans


def new_ban(jail_name: str, network: str, bantime: int, *, now: float, host: str, jail: Jail | None,
            origin: str, earlier: int = 0, evidence: list[str] | None = None, reason: str = "",
            user: Any = None) -> Ban:
    ban = build_ban(jail_name, network, bantime, now=now, host=host, jail=jail, origin=origin, earlier=earlier,
                    evidence=evidence, reason=reason, user=user)
    with transaction.atomic():  # the ban and its count in the statistics, together
        ban.save(force_insert=True)
        bulk.add_to_stats(jail_name, ban_times=[now])
        if ban.fanout_pending:
            request_fan_out()
    return ban


def build_ban(jail_name: str, network: str, bantime: int, *, now: float, host: str, jail: Jail | None,
              origin: str, earlier: int = 0, evidence: list[str] | None = None, reason: str = "",
              user: Any = None) -> Ban:
    """A PENDING ban, not saved yet."""
    started = aware(now)
    expires = None if bantime == -1 else started + dt.timedelta(seconds=bantime)
    return Ban(
        jail=jail, jail_name=jail_name, network=network, family=ipaddress.ip_network(network).version,
        host=host, started_at=started, expires_at=expires, bantime=bantime, earlier_bans=earlier,
        evidence=evidence or [], origin=origin, reason=reason, created_by=user, state=Ban.State.PENDING,
        fanout_pending=reaches_other_hosts(jail, jail_name),
    )


# Hosts whose firewall worker could not be asked by this process (Redis down): jailctl, a command
# that must not leave its change waiting, applies it itself then (watchers.management.commands.jailctl).
UNDELIVERED: set[str] = set()
BROKER_ERRORS = (KombuOperationalError, OSError)


class FirewallSyncRequest:
    """The on-commit callback that asks `host`'s firewall worker to apply what is pending. A class,
    so that a transaction can see it already holds one for the host (request_firewall_sync)."""

    def __init__(self, host: str) -> None:
        self.host = host

    def __call__(self) -> None:
        try:
            dispatch.request_sync(self.host)
        except BROKER_ERRORS as exc:
            # committed all the same: the ban waits as PENDING, the panel says so after a while
            UNDELIVERED.add(self.host)
            log.error("could not ask the firewall worker of host %s to apply bans now (Redis: %s); they wait as "
                      "pending until it is asked again", self.host, exc)


def request_firewall_sync(host: str) -> None:
    """Ask the firewall worker of `host` to apply what is pending, once this transaction commits;
    once per transaction and host, however many bans it made (one run claims them all).

    A request already registered in this transaction is kept by every rollback that would drop a new
    one (Django drops the callbacks of a savepoint rolled back; the ones before it stay), so reusing
    it never loses a request."""
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(isinstance(func, FirewallSyncRequest) and func.host == host
                                          for _, func, _ in connection.run_on_commit):
        return
    transaction.on_commit(FirewallSyncRequest(host))


def reaches_other_hosts(jail: Jail | None, jail_name: str) -> bool:
    """Whether a ban in this jail (None: the blocklist) applies beyond the host that made it, so that
    the central side must copy it to the others (bans.fanout)."""
    if jail is None:
        return jail_name == Ban.BLOCKLIST
    return jail.ban_scope != Jail.BanScope.HOST


class FanoutRequest:
    """The on-commit callback asking the central worker to copy the waiting originals to the other
    hosts of a fleet (bans.fanout); once per transaction, however many bans it made."""

    def __call__(self) -> None:
        try:
            dispatch.request_fan_out()
        except BROKER_ERRORS as exc:
            # committed all the same: the originals wait, marked, for beat's run of the fan-out
            log.error("could not ask the central server to copy bans to the other hosts now (Redis: %s); "
                      "its next scheduled run will", exc)


def request_fan_out() -> None:
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(isinstance(func, FanoutRequest) for _, func, _ in connection.run_on_commit):
        return
    transaction.on_commit(FanoutRequest())


def now_epoch() -> float:
    return timezone.now().timestamp()


# --- the lockout gate, and bans and unbans by hand (jailctl, the panel, Django admin) ---------------


def current_gate(*, own_addresses: Sequence[str] | None = None, jails: Iterable[Jail] | None = None,
                 host_networks: Sequence[str] | None = None, global_entries: Sequence[str] | None = None) -> gate.Gate:
    """The gate as things stand now: this host's addresses (looked up unless given), the live panel
    sessions, the trusted proxies, the global ignore list (read unless given) and the ignoreip of
    `jails` (None: every jail)."""
    chosen = Jail.objects.only("name", "ignoreip") if jails is None else jails
    return gate.Gate.build(
        host_addresses=hostaddrs.addresses() if own_addresses is None else own_addresses,
        host_networks=host_networks or (),
        sessions=live_session_addresses(),
        proxies=settings.IPS_TRUSTED_PROXIES,
        fleet_hosts=fleet_addresses(),
        global_ignoreip=ignores.global_entries() if global_entries is None else global_entries,
        ignoreip={jail.name: list(jail.ignoreip) for jail in chosen},
        max_prefix={4: settings.IPS_MAX_BAN_PREFIX_V4, 6: settings.IPS_MAX_BAN_PREFIX_V6},
    )


def fleet_addresses() -> list[tuple[str, str]]:
    """(address, host name) of every host of the fleet not removed, as `hostctl add` pinned them."""
    rows = Host.objects.exclude(state=Host.State.REVOKED).values_list("name", "addresses")
    return [(str(address), name) for name, addresses in rows for address in addresses]


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or a network typed by a person; host bits and zones are refused, not dropped."""
    return gate.parse_network(text)


def check_manual_ban(text: str, *, protected: Sequence[str] = (), confirmed: bool = False,
                     own_addresses: Sequence[str] | None = None) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network a person asked to ban, once the gate lets it through; BanRefused (or
    ConfirmationNeeded: private space, this host's own networks) says why not.

    A ban by hand is checked against the global ignore list and every jail's ignoreip, whatever jail
    it goes to: an address someone listed as never to be banned is one a person most likely did not
    mean to ban.
    `protected`: addresses of this request that must stay reachable (its peer: a proxy)."""
    network = parse_network(text)
    peers = [parse_address(peer) for peer in protected]
    extra = [gate.Shield(ipaddress.ip_network(peer), "your own address") for peer in peers if peer is not None]
    current_gate(own_addresses=own_addresses, host_networks=hostaddrs.networks()).check_manual(
        network, confirmed=confirmed, extra=extra)
    return network


def ban_by_hand(jail: Jail | None, text: str, bantime: int, *, actor: audit.Actor, protected: Sequence[str] = (),
                confirmed: bool = False, own_addresses: Sequence[str] | None = None, reason: str = "",
                host: str = "local") -> Ban:
    """A manual ban (jail None: the permanent blocklist, all ports), through the gate, and its audit
    entry, in one transaction; BanRefused says why not (ConfirmationNeeded: allowed once `confirmed`).
    The panel, jailctl and Django admin all come here, so they record the same entry."""
    network = check_manual_ban(text, protected=protected, confirmed=confirmed, own_addresses=own_addresses)
    jail_name = jail.name if jail is not None else Ban.BLOCKLIST
    with transaction.atomic():
        if live_ban(jail_name, str(network), host) is not None:
            raise BanRefused(f"{network} is already banned in {jail_name}")
        ban = new_ban(jail_name, str(network), bantime if jail is not None else -1, now=now_epoch(), host=host,
                      jail=jail, origin=Ban.Origin.USER, reason=reason, user=actor.user)
        audit.record(actor, "ban.create", ban, after=audit.snapshot(ban, BAN_AUDIT_FIELDS))
        request_firewall_sync(host)
    return ban
