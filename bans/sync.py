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
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from bans import bulk, hostaddrs, overlaps, services, status
from bans.firewall import BanEntry, FirewallBackend, FirewallError, JailRules, ReconcileResult, State
from bans.models import Ban
from jails.models import Jail

log = logging.getLogger(__name__)

# A claimed ban still APPLYING this long after its claim lost its claimer (killed): the watch settles it.
CLAIM_DEADLINE = dt.timedelta(seconds=90)

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
    covered: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    expired: int = 0
    error: FirewallError | None = None


def jail_rules() -> list[JailRules]:
    """Rules for every enabled jail, and for disabled ones that still hold live bans."""
    # per jail, does one live ban exist (an index probe), not every live ban's jail read (a flood's
    # or a fleet's hundred thousand bans, at every firewall run)
    # (apart: in one OR, PostgreSQL hashed every live ban's jail instead of probing per jail)
    fields = ("name", "port", "protocol", "blocktype")
    enabled = list(Jail.objects.filter(enabled=True).only(*fields))
    holding = Jail.objects.filter(enabled=False).filter(Exists(Ban.objects.live().filter(jail=OuterRef("pk"))))
    jails = sorted([*enabled, *holding.only(*fields)], key=lambda jail: jail.name)
    return [JailRules(name=j.name, ports=j.port, protocol=j.protocol, blocktype=j.blocktype) for j in jails]


def entry_of(ban: Ban, now: dt.datetime) -> BanEntry | None:
    """The firewall element of a ban with the time it has left; None once it has run out."""
    timeout = None
    if ban.expires_at is not None:
        left = math.ceil((ban.expires_at - now).total_seconds())
        if left < 1:
            return None
        timeout = left
    return BanEntry(jail=overlaps.set_of(ban), network=ipaddress.ip_network(ban.network), timeout=timeout)


EXPIRING = [Ban.State.ACTIVE, Ban.State.PENDING, Ban.State.FAILED, Ban.State.COVERED]  # states a ban ends from by time


def expire_due(host: str, now: dt.datetime) -> int:
    """Bans whose time is up end here, at the time they ran out (the kernel's own timeout already
    removed them; one that never reached it has nothing left to apply). Not APPLYING ones: a worker
    is sending them, and records their end itself."""
    return Ban.objects.filter(host=host, state__in=EXPIRING, expires_at__lte=now).update(
        state=Ban.State.EXPIRED, ended_at=F("expires_at"))


def has_work(host: str, now: dt.datetime | None = None, **_: Any) -> bool:
    """beat's guard of sync_firewall (config/beat.py): whether apply_pending would change anything for
    `host` now: a ban whose time ran out, one waiting for the kernel or for its retry, one being
    lifted, a covered one whose cover is gone. Bans are sent to the firewall worker as they are
    created: this scheduled run is the safety net, and on an idle host it finds nothing. Each read
    starts with the ban's state (an index), so a year of expired bans costs nothing here."""
    now = now or timezone.now()
    to_do = Q(state__in=EXPIRING, expires_at__lte=now) | due_filter(now) | Q(state=Ban.State.LIFTING)
    return Ban.objects.filter(to_do, host=host).exists() or overlaps.uncovered_rows(host, now).exists()


def due_filter(now: dt.datetime) -> Q:
    return Q(state=Ban.State.PENDING) | Q(state=Ban.State.FAILED, next_attempt_at__lte=now)


def claim(host: str, now: dt.datetime, report: SyncReport) -> list[Ban]:
    """Take the bans that wait for the firewall, atomically (a second claimer finds none of them),
    once the gate let them through. A claim carries a deadline (`next_attempt_at`): a claimed ban
    still APPLYING past it lost its claimer (a killed worker or jailctl), and the watch settles it."""
    due = due_filter(now)
    waiting = list(Ban.objects.filter(due, host=host).only(*APPLY_FIELDS))
    allowed = refuse_guarded(waiting, now, report)
    claimed: list[Ban] = []
    mine = {"claimed_by": this_claimer(), "next_attempt_at": now + CLAIM_DEADLINE}
    for chunk in bulk.batches([ban.pk for ban in allowed]):
        Ban.objects.filter(due, pk__in=chunk).update(state=Ban.State.APPLYING, **mine)
        # ours only: a row another claimer (jailctl) took a moment before us is its own
        claimed.extend(Ban.objects.filter(pk__in=chunk, state=Ban.State.APPLYING, **mine).only(*APPLY_FIELDS))
    return claimed


def refuse_guarded(waiting: list[Ban], now: dt.datetime, report: SyncReport) -> list[Ban]:
    """The last line of the lockout gate, before a ban is claimed: one that must never be applied
    (written past the services somehow, or an address that became protected since: a new panel
    session, a new ignoreip entry) ends REFUSED with the reason and never reaches the kernel.
    Returns the others."""
    if not waiting:
        return waiting
    guard = services.current_gate(own_addresses=hostaddrs.addresses())
    allowed: list[Ban] = []
    for ban in waiting:
        scope = None if ban.jail_id is None or ban.origin == Ban.Origin.USER else [ban.jail_name]
        why = guard.refusal(ipaddress.ip_network(ban.network), ignore_jails=scope)
        if why is None:
            allowed.append(ban)
            continue
        log.warning("refused to apply the ban of %s in %s: %s", ban.network, ban.jail_name, why)
        Ban.objects.filter(due_filter(now), pk=ban.pk).update(
            state=Ban.State.REFUSED, apply_error=f"refused by the lockout guard: {why}", ended_at=now)
        report.refused.append(ban.pk)
    return allowed


def apply_pending(host: str, backend: FirewallBackend, now: dt.datetime | None = None) -> SyncReport:
    """One run of the firewall worker: expire what ran out, bring back what lost its cover, claim what
    waits, and send it with the lifts in one batch, overlaps arranged (bans.overlaps). A batch the
    firewall refuses for some of its elements applies the others (`apply_isolating`)."""
    now = now or timezone.now()
    report = SyncReport(expired=expire_due(host, now))
    lifting = list(Ban.objects.filter(host=host, state=Ban.State.LIFTING).only(*APPLY_FIELDS))
    release(overlaps.uncovered(host, now, leaving=[ban.pk for ban in lifting]))
    claimed = claim(host, now, report)
    if not claimed and not lifting:
        return report
    arranged = overlaps.arrange(host, claimed)
    overlaps.mark_covered(arranged.covered_now)
    report.covered.extend(arranged.covered_now)
    absorbs = arranged.absorbs_of()
    units = [Unit(ban, absorbs.get(ban.pk, []), now) for ban in arranged.send]
    try:
        backend.sync_rules(jail_rules())
        failed = apply_isolating(backend, [unit for unit in units if unit.entry is not None], removals(lifting))
    except FirewallError as exc:
        record_failure([ban for ban in claimed if ban.pk not in arranged.covered_now], exc, now)
        report.error = exc
        return report
    record_success(units, failed, arranged, claimed, lifting, now, report)
    return report


def release(bans: Sequence[Ban]) -> None:
    """Covered bans whose cover is gone wait for the kernel again (claimed in this same run)."""
    for chunk in bulk.batches([ban.pk for ban in bans]):
        Ban.objects.filter(pk__in=chunk, state=Ban.State.COVERED).update(state=Ban.State.PENDING, covered_by=None)


class Unit:
    """One claimed ban to send, with the narrower ACTIVE bans it absorbs: applied or refused together."""

    def __init__(self, ban: Ban, absorbs: list[Ban], now: dt.datetime) -> None:
        self.ban = ban
        self.absorbs = absorbs
        self.entry = entry_of(ban, now)

    def adds(self) -> list[BanEntry]:
        return [self.entry] if self.entry is not None else []

    def removes(self) -> list[BanEntry]:
        return removals(self.absorbs)


def removals(bans: Iterable[Ban]) -> list[BanEntry]:
    return [BanEntry(jail=overlaps.set_of(ban), network=ipaddress.ip_network(ban.network), timeout=None)
            for ban in bans]


def apply_isolating(backend: FirewallBackend, units: Sequence[Unit], lifts: Sequence[BanEntry]
                    ) -> dict[int, FirewallError]:
    """Send everything in one batch; if the firewall refuses it for good (an element it will not
    take), send the lifts alone, then the units in halves until each refused unit is found, so one
    bad element never keeps the others out. Returns the refused units' bans with the error; a
    transient error (busy, timed out) is raised: the whole run is retried with backoff."""
    try:
        _send(backend, units, lifts)
        return {}
    except FirewallError as exc:
        if not exc.permanent or (len(units) <= 1 and not lifts):
            if exc.permanent and units:
                return {units[0].ban.pk: exc}
            raise
        first = exc
    if lifts:
        backend.apply(remove=lifts)
    blamed = {(entry.jail, entry.network) for entry in first.entries}
    refused = {unit.ban.pk: first for unit in units if unit.entry is not None
               and (unit.entry.jail, unit.entry.network) in blamed}
    return refused | _halves(backend, [unit for unit in units if unit.ban.pk not in refused])


def _halves(backend: FirewallBackend, units: Sequence[Unit]) -> dict[int, FirewallError]:
    if not units:
        return {}
    try:
        _send(backend, units, ())
        return {}
    except FirewallError as exc:
        if not exc.permanent:
            raise
        if len(units) == 1:
            return {units[0].ban.pk: exc}
    middle = len(units) // 2
    return _halves(backend, units[:middle]) | _halves(backend, units[middle:])


def _send(backend: FirewallBackend, units: Sequence[Unit], lifts: Sequence[BanEntry]) -> None:
    backend.apply(add=[entry for unit in units for entry in unit.adds()],
                  remove=[*lifts, *(entry for unit in units for entry in unit.removes())])


def entries(bans: Iterable[Ban], now: dt.datetime) -> list[BanEntry]:
    found = []
    for ban in bans:
        entry = entry_of(ban, now)
        if entry is not None:
            found.append(entry)
    return found


def record_success(units: Sequence[Unit], failed: dict[int, FirewallError], arranged: overlaps.Arrangement,
                   claimed: Sequence[Ban], lifting: Sequence[Ban], now: dt.datetime, report: SyncReport) -> None:
    """The kernel took the batch, but for the `failed` units: a few UPDATEs whatever its size (a ban
    storm applies thousands). Refused units go back to waiting with the firewall's reason, and so do
    the bans that rode with them; the others are ACTIVE, or COVERED by the ban they rode with or
    that absorbed them."""
    sent = [unit for unit in units if unit.ban.pk not in failed]
    ran_out = {unit.ban.pk for unit in sent if unit.entry is None}
    applied = [unit.ban.pk for unit in sent if unit.ban.pk not in ran_out]
    done = set(applied)
    covered = {pk: cover for pk, cover in arranged.covered_after.items() if cover in done}
    covered |= {unit_ban.pk: unit.ban.pk for unit in sent if unit.ban.pk in done for unit_ban in unit.absorbs}
    lifted = [ban.pk for ban in lifting]
    with transaction.atomic():
        for chunk in bulk.batches(sorted(ran_out)):
            Ban.objects.filter(pk__in=chunk).update(state=Ban.State.EXPIRED, ended_at=now)
        for chunk in bulk.batches(applied):
            Ban.objects.filter(pk__in=chunk, state=Ban.State.APPLYING).update(
                state=Ban.State.ACTIVE, applied_at=now, apply_error="", next_attempt_at=None)
        overlaps.mark_covered(covered)
        for chunk in bulk.batches(lifted):
            Ban.objects.filter(pk__in=chunk, state=Ban.State.LIFTING).update(state=Ban.State.LIFTED, ended_at=now)
        by_pk = {ban.pk: ban for ban in claimed}
        riders = arranged.riders_of()
        by_error: dict[int, list[Ban]] = {}
        errors: dict[int, FirewallError] = {}
        for unit in units:
            if unit.ban.pk in failed:
                error = failed[unit.ban.pk]
                by_error.setdefault(id(error), []).extend(
                    [unit.ban, *(by_pk[pk] for pk in riders.get(unit.ban.pk, []))])
                errors[id(error)] = error
        for key, bans in by_error.items():
            record_failure(bans, errors[key], now)
    report.applied.extend(applied)
    report.lifted.extend(lifted)
    report.covered.extend(covered)
    report.failed.extend(pk for bans in by_error.values() for pk in (ban.pk for ban in bans))


def record_failure(claimed: Sequence[Ban], error: FirewallError, now: dt.datetime) -> None:
    """A refused batch: every claimed ban goes back to waiting, with the reason and a retry time
    (one UPDATE per number of earlier attempts)."""
    by_attempts: dict[int, list[int]] = {}
    for ban in claimed:
        by_attempts.setdefault(ban.apply_attempts + 1, []).append(ban.pk)
    for attempts, ids in by_attempts.items():
        delay = PERMANENT_RETRY_SECONDS if error.permanent else min(RETRY_MAX_SECONDS,
                                                                   RETRY_BASE_SECONDS * 2 ** (attempts - 1))
        for chunk in bulk.batches(ids):
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
    settle_orphans(host, now, result)
    return result


def orphans(host: str, now: dt.datetime) -> QuerySet[Ban]:
    """Bans claimed by a run that ended without a verdict: APPLYING, and claimed by this very process
    (which runs one task at a time: a run of its own stopped by a time limit), by a process of this
    machine that no longer exists (a killed worker, an interrupted jailctl), or past the claim's
    deadline. A run in progress elsewhere (jailctl's direct apply) keeps its own."""
    applying = Ban.objects.filter(host=host, state=Ban.State.APPLYING)
    stale = applying.filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True) | Q(claimed_by=""))
    ended = [claimer for claimer in applying.values_list("claimed_by", flat=True).distinct() if claimer_gone(claimer)]
    return applying.filter(Q(pk__in=stale.values("pk")) | Q(claimed_by__in=ended))


def this_claimer() -> str:
    """Who claims, written on the claimed rows: this process (the firewall worker's, its pool
    process if it has one, or jailctl's); read at each claim, never at import: a pool process is
    forked after the import."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claimer_gone(claimer: str) -> bool:
    machine, _, pid = claimer.rpartition(":")
    if claimer == this_claimer():
        return True
    if machine != socket.gethostname() or not pid.isdigit():
        return False  # another machine's: its deadline decides
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return is_zombie(int(pid))


def is_zombie(pid: int) -> bool:
    """A process that ended but was not reaped yet still answers kill(pid, 0). A pool process whose
    worker was killed with it is reaped by init, which in a container may take its time (the fault
    test saw its claims wait out the 90 s deadline)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def settle_orphans(host: str, now: dt.datetime, result: ReconcileResult) -> None:
    """After a reconcile (desired() includes APPLYING bans): the orphans the kernel now holds are
    ACTIVE; one it could not take (inside a wider element) waits again, and is covered next run."""
    skipped = {(entry.jail, entry.network) for entry, _ in result.skipped}
    rows = list(orphans(host, now).only("pk", "jail", "jail_name", "network"))
    again = [ban.pk for ban in rows if (overlaps.set_of(ban), ipaddress.ip_network(ban.network)) in skipped]
    done = [ban.pk for ban in rows if ban.pk not in set(again)]
    for chunk in bulk.batches(done):
        Ban.objects.filter(pk__in=chunk, state=Ban.State.APPLYING).update(
            state=Ban.State.ACTIVE, applied_at=now, apply_error="", next_attempt_at=None)
    for chunk in bulk.batches(again):
        Ban.objects.filter(pk__in=chunk, state=Ban.State.APPLYING).update(state=Ban.State.PENDING,
                                                                          next_attempt_at=None)


# --- the watch: the kernel always matches the database ------------------------------------------------

# A ban with this little time left may have been lifted by the kernel between our listing and our
# reading of the rows: its absence is no loss (nor its presence a stray).
EXPIRY_SLACK = 2


@dataclass
class WatchReport:
    generation: int  # the kernel's ruleset generation this check started from
    checked: bool = False  # the kernel was listed and compared with the rows
    lost: int = 0
    strays: int = 0
    repaired: ReconcileResult | None = None
    waiting: bool = False  # bans COVERED or APPLYING: time alone can change what is due (look again soon)


def watch(host: str, backend: FirewallBackend, last_checked: int | None,
          now: dt.datetime | None = None) -> WatchReport:
    """The firewall worker's check of its kernel (bans.tasks.watch_firewall, timed by bans/watching.py).

    Unless the kernel's ruleset generation moved since `last_checked` (any nftables change, ours or
    anyone's: `nft flush ruleset`, a replaced table, a deleted element), nothing is read. When it
    moved, our table is listed and compared with the bans in force; what the kernel lost is put
    back, strays removed (a reconcile), and until that succeeds FirewallHost.drift says so on every
    page. Bans left APPLYING by a worker that died are settled the same way: this worker runs one
    task at a time, so while it watches nothing of its own is being applied."""
    now = now or timezone.now()
    # One query in the common case: with no ban COVERED or APPLYING, nothing can be uncovered or stranded
    # (the two checks below are two queries more, every WATCH_SECONDS of an idle stack).
    waiting = Ban.objects.filter(host=host, state__in=[Ban.State.COVERED, Ban.State.APPLYING]).exists()
    if waiting and overlaps.uncovered(host, now):
        # a wider ban ran out (the kernel lifted it, which moves no generation): what it covered goes back
        apply_pending(host, backend, now)
    generation = backend.generation()
    stranded = waiting and orphans(host, now).exists()
    if generation == last_checked and not stranded:
        return WatchReport(generation, waiting=waiting)
    lost, strays = disagreement(backend.snapshot(), desired(host, now), not_strays(host, now))
    report = WatchReport(generation, checked=True, lost=len(lost), strays=len(strays), waiting=waiting)
    if lost or strays:
        status.record_drift(host, describe_drift(lost, strays), now)
    if lost or strays or stranded:
        report.repaired = reconcile(host, backend, now)
        status.settle_drift(host, report.repaired)
    else:
        status.settle_drift(host, None)
    return report


def disagreement(kernel: State, want: Sequence[BanEntry], leaving: set[tuple[str, str]]
                 ) -> tuple[list[BanEntry], list[tuple[str, str]]]:
    """Bans in force the kernel lacks, and elements of our sets no ban explains (`leaving`: those that
    are explained otherwise, see not_strays)."""
    lost = [entry for entry in want if entry.network not in kernel.get(entry.jail, {})
            and (entry.timeout is None or entry.timeout > EXPIRY_SLACK)]
    wanted = {(entry.jail, entry.network) for entry in want}
    strays = [(jail, str(network)) for jail, elements in kernel.items() for network, left in elements.items()
              if (jail, network) not in wanted and (jail, str(network)) not in leaving
              and (left is None or left > EXPIRY_SLACK)]
    return lost, strays


def not_strays(host: str, now: dt.datetime) -> set[tuple[str, str]]:
    """Elements the kernel may rightly hold without an ACTIVE row: bans being lifted (the next sync
    removes them), and bans in force waiting to be applied again (made permanent: the kernel keeps the
    timed element meanwhile; or refused on a retry)."""
    rows = (Ban.objects.filter(host=host, state=Ban.State.LIFTING)
            | Ban.objects.in_force(now).filter(host=host, state__in=[Ban.State.PENDING, Ban.State.FAILED]))
    return {(overlaps.set_of(ban), ban.network) for ban in rows.only("jail", "jail_name", "network")}


def describe_drift(lost: Sequence[BanEntry], strays: Sequence[tuple[str, str]]) -> str:
    parts = []
    if lost:
        shown = ", ".join(str(entry.network) for entry in lost[:3]) + (", ..." if len(lost) > 3 else "")
        parts.append(f"{len(lost)} ban(s) in force are missing from the kernel ({shown})")
    if strays:
        shown = ", ".join(network for _, network in strays[:3]) + (", ..." if len(strays) > 3 else "")
        parts.append(f"{len(strays)} element(s) of our sets match no ban ({shown})")
    return "; ".join(parts)
