"""The scheduled work of the bans app: recidive, history cleanup, statistics (plain functions).

`bans.tasks` wraps each function in a Celery task that beat runs (the default schedules come from
`bans/migrations/0002_default_schedules.py`). Each takes `now` (epoch seconds) so that tests and
reruns are deterministic, and each is idempotent: a second run with the same rows changes nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q, QuerySet

from bans import hostaddrs, policy, services
from bans.models import AddressStat, Ban, Failure, Ignored, JailStat, Tally, UserStat
from jails.access.sessions import forget_dead_sessions
from jails.models import Jail

log = logging.getLogger(__name__)

RECIDIVE_JAIL = "recidive"
DEFAULT_HISTORY_DAYS = 90
IGNORED_KEPT = dt.timedelta(days=30)
MINUTE_BUCKETS_KEPT = dt.timedelta(days=2)


# --- recidive: repeat offenders in the ban history ------------------------------------------------


@dataclass(frozen=True)
class EarlierBan:
    jail_name: str
    started_at: dt.datetime

    def as_evidence(self, address: str) -> str:
        # the line fail2ban's recidive jail would have read in fail2ban.log for this ban
        return f"{self.started_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC [{self.jail_name}] Ban {address}"


# host -> address -> the bans that count against it, oldest first
History = dict[str, dict[str, list[EarlierBan]]]


def run_recidive(*, now: float, own_addresses: Sequence[str] | None = None) -> list[Ban]:
    """Ban in the "recidive" jail the addresses banned maxretry times within its findtime elsewhere.

    Does nothing unless a jail named "recidive" exists and is enabled; its maxretry, findtime,
    bantime and bantime.* options apply, and its ignoreip (with this host's addresses,
    `own_addresses`, looked up only when needed). Returns the bans created (PENDING, origin
    SCHEDULE); the firewall worker of each ban's host is asked to apply them.
    """
    jail = Jail.objects.filter(name=RECIDIVE_JAIL, enabled=True).first()
    if jail is None:
        return []
    own = OwnAddresses(own_addresses)
    refusals: services.AutomaticRefusals | None = None
    created: list[Ban] = []
    for host, by_address in ban_history(jail, now).items():
        times = [(address, ban.started_at.timestamp()) for address, bans in by_address.items() for ban in bans]
        for address in policy.recidive_offenders(times, findtime=jail.findtime, maxretry=jail.maxretry, now=now):
            refusals = refusals or services.AutomaticRefusals(jail, own.get())
            ban = ban_repeat_offender(jail, address, by_address[address], now=now, host=host, refusals=refusals)
            if ban is not None:
                created.append(ban)
    return created


class RecidiveNews:
    """beat's guard of run_recidive (config/beat.py): a run can find a new offender only after a ban
    was created or the recidive jail was saved (time passing only takes bans out of its findtime),
    so beat sends it when the newest ban or the jail's last save differs from what this guard saw
    when it last said yes. No enabled recidive jail: nothing to do. Two indexed reads."""

    def __init__(self) -> None:
        self.seen: tuple[Any, Any] | None = None

    def __call__(self, **_: Any) -> bool:
        saved = Jail.objects.filter(name=RECIDIVE_JAIL, enabled=True).values_list("updated_at", flat=True).first()
        if saved is None:
            return False
        stamp = (saved, Ban.objects.order_by("-pk").values_list("pk", flat=True).first())
        if stamp == self.seen:
            return False
        self.seen = stamp
        return True


recidive_news = RecidiveNews()  # one per process: beat's


@dataclass
class OwnAddresses:
    """This host's addresses, read (a subprocess) only once an offender is found."""

    given: Sequence[str] | None
    lookup: Callable[[], list[str]] = hostaddrs.addresses
    _found: list[str] | None = field(default=None, init=False)

    def get(self) -> Sequence[str]:
        if self.given is not None:
            return self.given
        if self._found is None:
            self._found = self.lookup()
        return self._found


def ban_history(jail: Jail, now: float) -> History:
    """The bans inside the recidive jail's findtime that count, per firewall host and address.

    Not counted: the recidive jail's own bans, the blocklist, networks (recidive is about
    addresses), and bans that started before the address's latest recidive ban: like fail2ban,
    which forgets an address's failures once it bans it, an address lifted from recidive by hand
    is not banned again a minute later for the same history.
    """
    since = services.aware(now - jail.findtime)
    forgotten_until = {
        (row["network"], row["host"]): row["latest"]
        for row in Ban.objects.originals().filter(jail_name=jail.name, started_at__gte=since)
        .values("network", "host").annotate(latest=Max("started_at")).order_by()
    }
    # originals only: a fleet's copies of a ban are the same ban, applied on other hosts
    rows = (Ban.objects.originals().filter(started_at__gte=since).exclude(jail_name__in=[jail.name, Ban.BLOCKLIST])
            .order_by("started_at", "pk").values_list("network", "host", "jail_name", "started_at"))
    history: History = {}
    for network, host, jail_name, started_at in rows:
        address = single_address(network)
        latest_recidive = forgotten_until.get((network, host))
        if address is None or (latest_recidive is not None and started_at <= latest_recidive):
            continue
        history.setdefault(host, {}).setdefault(address, []).append(EarlierBan(jail_name, started_at))
    return history


def single_address(network: str) -> str | None:
    """The address of a one-address network (203.0.113.9/32), None for a wider network.

    In policy.recidive_offenders' canonical form (IPv4-mapped IPv6 as IPv4), since its answer is
    looked up in the history.
    """
    try:
        parsed = ipaddress.ip_network(network)
    except ValueError:
        return None
    return services.parse_address(str(parsed.network_address)) if parsed.num_addresses == 1 else None


def ban_repeat_offender(jail: Jail, address: str, earlier: list[EarlierBan], *, now: float, host: str,
                        refusals: services.AutomaticRefusals) -> Ban | None:
    network = services.network_of(address)
    # the watcher may have banned it in this jail already (an imported recidive jail also reads
    # fail2ban.log): one live ban per jail and address
    if services.live_ban(jail.name, network, host, now) is not None:
        return None
    ignored = refusals.reason(address)
    if ignored is not None:
        services.note_ignored(jail, address, ignored, now)
        return None
    count = services.earlier_bans(network, jail, now)
    reason = f"banned {len(earlier)} times within {jail.findtime} s in other jails"
    try:
        with transaction.atomic():
            ban = services.new_ban(jail.name, network, recidive_bantime(jail, count), now=now, host=host,
                                   jail=jail, origin=Ban.Origin.SCHEDULE, earlier=count,
                                   evidence=[each.as_evidence(address) for each in earlier], reason=reason)
            services.request_firewall_sync(host)
    except IntegrityError:
        return None  # banned in this jail between our check and our insert (the unique constraint)
    return ban


def recidive_bantime(jail: Jail, earlier: int) -> int:
    try:
        return policy.next_bantime(jail.bantime, earlier, services.increment_settings(jail))
    except ValueError as exc:
        # fail2ban keeps the base ban time when the formula fails; so do we, rather than never ban
        log.warning("recidive: %s; banning for bantime (%s s) instead", exc, jail.bantime)
        return jail.bantime


# --- cleanup: history kept for IPS_HISTORY_DAYS ----------------------------------------------------


def history_days() -> int:
    return int(getattr(settings, "IPS_HISTORY_DAYS", DEFAULT_HISTORY_DAYS))


def cleanup_history(*, now: float) -> dict[str, int]:
    """Delete old history; returns how many rows of each kind went.

    - Failure rows older than IPS_HISTORY_DAYS;
    - Ban rows that ended (EXPIRED, LIFTED) longer ago than that, but never those the ban
      decisions still read (bantime.increment's memory, the recidive jail's findtime);
    - Ignored rows older than 30 days;
    - Tally rows whose last failure is findtime old or older, which add_failure would forget anyway;
    - the addresses of panel sessions that ended without a logout (jails.access.sessions).
    """
    moment = services.aware(now)
    cutoff = moment - dt.timedelta(days=history_days())
    ban_cutoff = min(cutoff, moment - ban_memory())
    ended_long_ago = Q(ended_at__lt=ban_cutoff) | Q(ended_at__isnull=True, started_at__lt=ban_cutoff)
    return {
        "failures": Failure.objects.filter(time__lt=cutoff).delete()[0],
        "bans": Ban.objects.filter(ended_long_ago, state__in=[Ban.State.EXPIRED, Ban.State.LIFTED,
                                                              Ban.State.REFUSED]).delete()[0],
        "ignored": Ignored.objects.filter(time__lt=moment - IGNORED_KEPT).delete()[0],
        "tallies": delete_stale_tallies(now),
        "panel_sessions": forget_dead_sessions(moment),
    }


def ban_memory() -> dt.timedelta:
    """How far back the ban decisions look into the ban history."""
    recidive_findtime = Jail.objects.filter(name=RECIDIVE_JAIL).values_list("findtime", flat=True).first() or 0
    return max(services.INCREMENT_MEMORY, dt.timedelta(seconds=recidive_findtime))


def delete_stale_tallies(now: float) -> int:
    deleted = 0
    for jail_id, findtime in Jail.objects.values_list("pk", "findtime"):
        # `<=` as in policy.add_failure. One DELETE ... WHERE: a tally a watcher is updating
        # (select_for_update) is checked again once its lock is released, not deleted blindly.
        stale = Tally.objects.filter(jail_id=jail_id, last_time__lte=services.aware(now - findtime))
        deleted += stale.delete()[0]
    return deleted


# --- statistics: failures and bans per jail per minute and per hour ---------------------------------


@dataclass(frozen=True)
class Resolution:
    name: str  # JailStat.Resolution
    kind: str  # "minute" or "hour"
    step: dt.timedelta

    def bucket_of(self, moment: dt.datetime) -> dt.datetime:
        """The start of the bucket holding `moment`, in UTC (as bans.bulk.add_to_stats files it)."""
        moment = moment.astimezone(dt.UTC)
        start = moment.replace(second=0, microsecond=0)
        return start.replace(minute=0) if self.kind == "hour" else start


MINUTE = Resolution(JailStat.Resolution.MINUTE, "minute", dt.timedelta(minutes=1))
HOUR = Resolution(JailStat.Resolution.HOUR, "hour", dt.timedelta(hours=1))


def stats_kept(resolution: Resolution) -> dt.timedelta:
    return MINUTE_BUCKETS_KEPT if resolution == MINUTE else dt.timedelta(days=history_days())


def rollup_stats(*, now: float) -> int:
    """Prune the statistics' old buckets; returns how many went.

    The buckets themselves are counted as failures and bans are written, in the same transaction
    (bans.bulk.add_to_stats): the charts never recount raw rows, so this costs the same after a
    million failures as after ten (it used to recount every recent failure each minute)."""
    return sum(rows.delete()[0] for rows in stats_past_horizon(now))


def stats_past_horizon(now: float) -> list[QuerySet[Any]]:
    """The statistics rows older than they are kept, each set read through an index that starts with
    its time: the minute and hour buckets, and the dashboard's tops (bans.bulk.add_to_tops), kept as
    long as the hour buckets."""
    moment = services.aware(now)
    hours_horizon = HOUR.bucket_of(moment - stats_kept(HOUR))
    return [JailStat.objects.filter(resolution=resolution.name,
                                    bucket__lt=resolution.bucket_of(moment - stats_kept(resolution)))
            for resolution in (MINUTE, HOUR)] + [AddressStat.objects.filter(hour__lt=hours_horizon),
                                                 UserStat.objects.filter(hour__lt=hours_horizon)]


def stats_to_prune(now: float | None = None, **_: Any) -> bool:
    """beat's guard of rollup_stats (config/beat.py): whether any statistics row is past its horizon.
    A few indexed reads: on a host that saw no attack for two days, nothing to send."""
    return any(rows.exists() for rows in stats_past_horizon(services.now_epoch() if now is None else now))
