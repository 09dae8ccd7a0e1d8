"""Make the kernel agree with the Ban table, for one firewall host.

`apply_pending` claims PENDING bans (and FAILED ones whose retry time came) with a conditional
UPDATE, so two workers never apply the same ban, sends them and the LIFTING ones in one atomic
firewall batch, and records the outcome: ACTIVE once the kernel has a ban, FAILED with the
firewall's message and a retry time otherwise. `reconcile` re-adds what the kernel lost (reboot,
`nft flush ruleset`) with its remaining time and removes strays from our sets.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from bans import services
from bans.firewall import BLOCKLIST, BanEntry, FirewallBackend, FirewallError, JailRules, ReconcileResult
from bans.models import Ban
from bans.services import chunks
from jails.models import Jail

log = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 5
RETRY_MAX_SECONDS = 300
PERMANENT_RETRY_SECONDS = 900  # the admin may fix it (load nf_tables, grant CAP_NET_ADMIN)
# What applying needs of a Ban (a storm claims thousands: their evidence is not read back)
APPLY_FIELDS = ("pk", "jail", "jail_name", "network", "expires_at", "apply_attempts", "origin")


@dataclass
class SyncReport:
    applied: list[int] = field(default_factory=list)
    lifted: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    expired: int = 0
    error: FirewallError | None = None


def jail_rules() -> list[JailRules]:
    """Rules for every enabled jail, and for disabled ones that still hold live bans."""
    live = Ban.objects.filter(state__in=Ban.LIVE_STATES).values_list("jail_id", flat=True)
    jails = Jail.objects.filter(Q(enabled=True) | Q(pk__in=live)).order_by("name")
    return [JailRules(name=j.name, ports=j.port, protocol=j.protocol, blocktype=j.blocktype) for j in jails]


def entry_of(ban: Ban, now: dt.datetime) -> BanEntry | None:
    """The firewall element of a ban with the time it has left; None once it has run out."""
    timeout = None
    if ban.expires_at is not None:
        left = math.ceil((ban.expires_at - now).total_seconds())
        if left < 1:
            return None
        timeout = left
    jail = BLOCKLIST if ban.jail_id is None else ban.jail_name
    return BanEntry(jail=jail, network=ipaddress.ip_network(ban.network), timeout=timeout)


def expire_due(host: str, now: dt.datetime) -> int:
    """Bans whose time is up end here, at the time they ran out (the kernel's own timeout already
    removed them; one that never reached it has nothing left to apply). Not APPLYING ones: a worker
    is sending them, and records their end itself."""
    due = [Ban.State.ACTIVE, Ban.State.PENDING, Ban.State.FAILED]
    return Ban.objects.filter(host=host, state__in=due, expires_at__lte=now).update(
        state=Ban.State.EXPIRED, ended_at=F("expires_at"))


def claim(host: str, now: dt.datetime) -> list[Ban]:
    """Take the bans that wait for the firewall, atomically (a second worker finds none of them)."""
    due = Q(state=Ban.State.PENDING) | Q(state=Ban.State.FAILED, next_attempt_at__lte=now)
    ids = list(Ban.objects.filter(due, host=host).values_list("pk", flat=True))
    if not ids:
        return []
    claimed: list[Ban] = []
    for chunk in chunks(ids):
        Ban.objects.filter(due, pk__in=chunk).update(state=Ban.State.APPLYING)
        claimed.extend(Ban.objects.filter(pk__in=chunk, state=Ban.State.APPLYING).only(*APPLY_FIELDS))
    return claimed


def refuse_guarded(claimed: list[Ban], now: dt.datetime, report: SyncReport) -> list[Ban]:
    """The last line of the lockout gate: a claimed ban that must never be applied (written past the
    services somehow, or an address that became protected since: a new panel session, a new ignoreip
    entry) ends REFUSED with the reason instead of reaching the kernel. Returns the others."""
    if not claimed:
        return claimed
    guard = services.current_gate()
    allowed: list[Ban] = []
    for ban in claimed:
        scope = None if ban.jail_id is None or ban.origin == Ban.Origin.USER else [ban.jail_name]
        why = guard.refusal(ipaddress.ip_network(ban.network), ignore_jails=scope)
        if why is None:
            allowed.append(ban)
            continue
        log.warning("refused to apply the ban of %s in %s: %s", ban.network, ban.jail_name, why)
        Ban.objects.filter(pk=ban.pk, state=Ban.State.APPLYING).update(
            state=Ban.State.REFUSED, apply_error=f"refused by the lockout guard: {why}", ended_at=now)
        report.refused.append(ban.pk)
    return allowed


def apply_pending(host: str, backend: FirewallBackend, now: dt.datetime | None = None) -> SyncReport:
    now = now or timezone.now()
    report = SyncReport(expired=expire_due(host, now))
    claimed = refuse_guarded(claim(host, now), now, report)
    lifting = list(Ban.objects.filter(host=host, state=Ban.State.LIFTING).only(*APPLY_FIELDS))
    if not claimed and not lifting:
        return report
    add = entries(claimed, now)
    remove = [BanEntry(jail=BLOCKLIST if b.jail_id is None else b.jail_name,
                       network=ipaddress.ip_network(b.network), timeout=None) for b in lifting]
    try:
        backend.sync_rules(jail_rules())
        backend.apply(add=add, remove=remove)
    except FirewallError as exc:
        record_failure(claimed, exc, now)
        report.error = exc
        return report
    record_success(claimed, lifting, now, report)
    return report


def entries(bans: Iterable[Ban], now: dt.datetime) -> list[BanEntry]:
    found = []
    for ban in bans:
        entry = entry_of(ban, now)
        if entry is not None:
            found.append(entry)
    return found


def record_success(claimed: Sequence[Ban], lifting: Sequence[Ban], now: dt.datetime, report: SyncReport) -> None:
    """The kernel has the batch: a few UPDATEs whatever its size (a ban storm applies thousands)."""
    ran_out = {ban.pk for ban in claimed if ban.expires_at is not None and ban.expires_at <= now}
    applied = [ban.pk for ban in claimed if ban.pk not in ran_out]
    lifted = [ban.pk for ban in lifting]
    with transaction.atomic():
        for chunk in chunks(sorted(ran_out)):
            Ban.objects.filter(pk__in=chunk).update(state=Ban.State.EXPIRED, ended_at=now)
        for chunk in chunks(applied):
            Ban.objects.filter(pk__in=chunk, state=Ban.State.APPLYING).update(
                state=Ban.State.ACTIVE, applied_at=now, apply_error="", next_attempt_at=None)
        for chunk in chunks(lifted):
            Ban.objects.filter(pk__in=chunk, state=Ban.State.LIFTING).update(state=Ban.State.LIFTED, ended_at=now)
    report.applied.extend(applied)
    report.lifted.extend(lifted)


def record_failure(claimed: Sequence[Ban], error: FirewallError, now: dt.datetime) -> None:
    """A refused batch: every claimed ban goes back to waiting, with the reason and a retry time
    (one UPDATE per number of earlier attempts)."""
    by_attempts: dict[int, list[int]] = {}
    for ban in claimed:
        by_attempts.setdefault(ban.apply_attempts + 1, []).append(ban.pk)
    for attempts, ids in by_attempts.items():
        delay = PERMANENT_RETRY_SECONDS if error.permanent else min(RETRY_MAX_SECONDS,
                                                                   RETRY_BASE_SECONDS * 2 ** (attempts - 1))
        for chunk in chunks(ids):
            Ban.objects.filter(pk__in=chunk, state=Ban.State.APPLYING).update(
                state=Ban.State.FAILED, apply_attempts=attempts, apply_error=error.message,
                next_attempt_at=now + dt.timedelta(seconds=delay))


def desired(host: str, now: dt.datetime) -> list[BanEntry]:
    """What the kernel must hold: every ban that is in force (applied or about to be)."""
    live = Ban.objects.filter(host=host, state__in=[Ban.State.ACTIVE, Ban.State.APPLYING]).only(*APPLY_FIELDS)
    return entries(live, now)


def reconcile(host: str, backend: FirewallBackend, now: dt.datetime | None = None) -> ReconcileResult:
    now = now or timezone.now()
    expire_due(host, now)
    backend.sync_rules(jail_rules())
    result = backend.reconcile(desired(host, now))
    # A firewall worker killed between claim() and recording its result leaves bans APPLYING; the
    # kernel now holds them (desired() includes them), so they are active, not stuck.
    Ban.objects.filter(host=host, state=Ban.State.APPLYING).update(
        state=Ban.State.ACTIVE, applied_at=now, apply_error="", next_attempt_at=None)
    return result
