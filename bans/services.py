"""Deciding bans: failures in, pending bans out.

Plain functions over the models. The watchers call `record_failures` inside the transaction that
also advances their read position, so a crash either keeps both or neither. Bans are created in
state PENDING; the firewall worker (bans.tasks) applies them and marks them ACTIVE once the
kernel has them. The counting and ban-time rules themselves live in bans.policy (no Django).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from bans import policy
from bans.models import Ban, Failure, Ignored, Tally
from jails.models import Jail

# Earlier bans older than this no longer make a new ban longer (fail2ban's dbpurgeage default is
# one day; we keep a week of memory for bantime.increment, which is what admins expect from it).
INCREMENT_MEMORY = dt.timedelta(days=7)
LOOPBACKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


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
    skipped: int = 0  # not an address, or too old to count
    ignored: int = 0
    bans: list[Ban] = field(default_factory=list)


class BanRefused(ValueError):
    """A ban that must not happen (our own address, an ignoreip entry...); the message says why."""


def aware(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def network_of(address: str) -> str:
    """An address as the single-host network the firewall sets hold (203.0.113.9/32)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ipaddress.ip_network(ip))


def parse_address(host: str) -> str | None:
    """The address in a failure, or None when the host is a name (names are never resolved here)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
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
    """Count failures for one jail and create the bans they earn. Call inside a transaction."""
    decision = Decision()
    failures: list[Failure] = []
    for item in observed:
        address = parse_address(item.host)
        when = event_time(item.time, now, catching_up, jail.findtime)
        if address is None or when is None:
            decision.skipped += 1
            continue
        reason = ignore_reason(jail, address, own_addresses)
        if reason is not None:
            note_ignored(jail, address, reason, now)
            decision.ignored += 1
            continue
        failures.append(Failure(jail=jail, address=address, time=aware(when), line="\n".join(item.lines),
                                fields=item.fields))
        decision.counted += 1
        ban = count_failure(jail, address, when, item.lines, now=now, host=host)
        if ban is not None:
            decision.bans.append(ban)
    Failure.objects.bulk_create(failures)
    return decision


def event_time(time: float, now: float, catching_up: bool, findtime: int) -> float | None:
    """When a failure counts as having happened, or None when it is too old to count."""
    if catching_up:
        return None if policy.is_stale(time, now, findtime) else min(time, now)
    return policy.time_in_operation(time, now)


def ignore_reason(jail: Jail, address: str, own_addresses: Sequence[str]) -> str | None:
    # usedns is about the failures' hosts; ignoreip names are only resolved when the admin allows DNS
    return policy.ignore_reason(address, ignoreip=jail.ignoreip,
                                own_addresses=own_addresses if jail.ignoreself else [], resolve=None)


def note_ignored(jail: Jail, address: str, reason: str, now: float) -> None:
    """Record why an address was not counted, once per findtime, so the record stays readable."""
    since = aware(now - jail.findtime)
    if not Ignored.objects.filter(jail=jail, address=address, time__gte=since).exists():
        Ignored.objects.create(jail=jail, address=address, reason=reason, time=aware(now))


def count_failure(jail: Jail, address: str, when: float, lines: Sequence[str], *, now: float,
                  host: str) -> Ban | None:
    row = Tally.objects.select_for_update().filter(jail=jail, address=address).first()
    before = to_policy_tally(row) if row else None
    event = policy.FailureEvent(address=address, time=when, attempts=1, line="\n".join(lines))
    after, ban_now = policy.add_failure(before, event, findtime=jail.findtime, maxretry=jail.maxretry,
                                        maxmatches=jail.maxmatches, now=now)
    if ban_now and after is not None:
        if row:
            row.delete()
        return create_jail_ban(jail, address, after.matches, now=now, host=host)
    save_tally(jail, row, after)
    return None


def to_policy_tally(row: Tally) -> policy.Tally:
    return policy.Tally(address=row.address, first_time=row.first_time.timestamp(),
                        last_time=row.last_time.timestamp(), count=row.count, matches=list(row.matches))


def save_tally(jail: Jail, row: Tally | None, tally: policy.Tally | None) -> None:
    if tally is None:
        if row is not None:
            row.delete()
        return
    values = {"first_time": aware(tally.first_time), "last_time": aware(tally.last_time), "count": tally.count,
              "matches": tally.matches}
    Tally.objects.update_or_create(jail=jail, address=tally.address, defaults=values)


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
    since = aware(now) - INCREMENT_MEMORY
    jails = Ban.objects.filter(network=network, started_at__gte=since).values_list("jail_name", flat=True)
    return policy.earlier_ban_count(jails, jail.name, overalljails=jail.bantime_overalljails)


def live_ban(jail_name: str, network: str, host: str) -> Ban | None:
    return Ban.objects.filter(jail_name=jail_name, network=network, host=host,
                              state__in=[*Ban.LIVE_STATES, Ban.State.LIFTING]).first()


def create_jail_ban(jail: Jail, address: str, evidence: Sequence[str], *, now: float, host: str) -> Ban | None:
    network = network_of(address)
    if live_ban(jail.name, network, host) is not None:
        return None  # already banned here: a late failure of a banned address changes nothing
    count = earlier_bans(network, jail, now)
    bantime = policy.next_bantime(jail.bantime, count, increment_settings(jail))
    ban = new_ban(jail.name, network, bantime, now=now, host=host, jail=jail, origin=Ban.Origin.JAIL,
                  earlier=count, evidence=list(evidence))
    request_firewall_sync(host)
    return ban


def new_ban(jail_name: str, network: str, bantime: int, *, now: float, host: str, jail: Jail | None,
            origin: str, earlier: int = 0, evidence: list[str] | None = None, reason: str = "",
            user: Any = None) -> Ban:
    started = aware(now)
    expires = None if bantime == -1 else started + dt.timedelta(seconds=bantime)
    return Ban.objects.create(
        jail=jail, jail_name=jail_name, network=network, family=ipaddress.ip_network(network).version,
        host=host, started_at=started, expires_at=expires, bantime=bantime, earlier_bans=earlier,
        evidence=evidence or [], origin=origin, reason=reason, created_by=user, state=Ban.State.PENDING,
    )


def request_firewall_sync(host: str) -> None:
    """Ask the firewall worker of `host` to apply what is pending, once this transaction commits."""
    from bans import tasks  # bans.tasks imports this module

    tasks.sync_firewall.apply_async_on_commit(kwargs={"host": host}, queue=tasks.firewall_queue(host))


def now_epoch() -> float:
    return timezone.now().timestamp()


# --- bans and unbans by hand (jailctl, the panel) -------------------------------------------------


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or a network typed by a person; host bits are refused, not silently dropped."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise BanRefused(f"{text!r} is not an address or network ({exc})") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        mapped = network.network_address.ipv4_mapped
        network = ipaddress.ip_network(f"{mapped}/{max(0, network.prefixlen - 96)}")
    return network


def lockout_reason(network: ipaddress.IPv4Network | ipaddress.IPv6Network, jail: Jail | None,
                   own_addresses: Sequence[str], protected: Sequence[str] = ()) -> str | None:
    """Why banning `network` would lock out someone who must never be locked out, or None.

    Refused: loopback, this host's addresses, the admin's own address (`protected`), and a jail's
    ignoreip entries, and any network that contains one of them.
    """
    people = [(a, "an address of this host") for a in own_addresses] + [(a, "your own address") for a in protected]
    for address, why in people:
        parsed = parse_address(address)
        if parsed is not None and ipaddress.ip_address(parsed) in network:
            return f"{network} contains {address}, {why}"
    if any(network.overlaps(loopback) for loopback in LOOPBACKS if loopback.version == network.version):
        return f"{network} contains loopback addresses"
    return ignoreip_conflict(network, jail)


def ignoreip_conflict(network: ipaddress.IPv4Network | ipaddress.IPv6Network, jail: Jail | None) -> str | None:
    jails = [jail] if jail is not None else list(Jail.objects.all())
    for each in jails:
        for entry in each.ignoreip:
            try:
                ignored = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue  # a host name: compared by address only when it is resolved, never here
            if ignored.version == network.version and ignored.overlaps(network):
                return f"{network} overlaps {entry}, listed in ignoreip of jail {each.name}"
    return None


def ban_by_hand(jail: Jail | None, text: str, bantime: int, *, own_addresses: Sequence[str],
                protected: Sequence[str] = (), user: object | None = None, reason: str = "",
                host: str = "local") -> Ban:
    """A manual ban (jail None: the permanent blocklist, all ports). BanRefused says why not."""
    network = parse_network(text)
    refused = lockout_reason(network, jail, own_addresses, protected)
    if refused:
        raise BanRefused(f"refused: {refused}")
    jail_name = jail.name if jail is not None else "blocklist"
    if live_ban(jail_name, str(network), host) is not None:
        raise BanRefused(f"{network} is already banned in {jail_name}")
    ban = new_ban(jail_name, str(network), bantime if jail is not None else -1, now=now_epoch(), host=host,
                  jail=jail, origin=Ban.Origin.USER, reason=reason, user=user)
    request_firewall_sync(host)
    return ban


def unban(text: str, *, jail: Jail | None = None, user: object | None = None, host: str = "local") -> int:
    """Lift the live bans of an address or network (in one jail, or all); returns how many."""
    network = str(parse_network(text))
    live = Ban.objects.filter(network=network, host=host, state__in=Ban.LIVE_STATES)
    if jail is not None:
        live = live.filter(jail_name=jail.name)
    count = live.update(state=Ban.State.LIFTING, ended_by=user)
    if count:
        request_firewall_sync(host)
    return count
