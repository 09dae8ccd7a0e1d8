"""Celery tasks of the bans app: apply bans in the kernel, reconcile, expire.

Each firewall host has its own queue (`firewall.<host>`), consumed by the only worker that needs
CAP_NET_ADMIN; which host applies a ban is the Ban's `host` column, never an assumption.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.utils import timezone

from bans import fanout, replay, schedules, services, status, sync
from bans.dispatch import firewall_queue
from bans.firewall import FirewallBackend, FirewallError, NftablesBackend
from bans.models import Ban
from bans.templatetags.bans_extras import address_only

log = logging.getLogger(__name__)


class FirewallUnavailable(RuntimeError):
    """This process cannot change the firewall (IPS_FIREWALL=off, or no CAP_NET_ADMIN/nftables)."""


@cache
def backend() -> FirewallBackend:
    """One backend per worker process, created after the fork (its libnftables helper is its own)."""
    if settings.IPS_FIREWALL == "off":
        raise FirewallUnavailable("IPS_FIREWALL=off: bans are recorded but the firewall is not being changed")
    try:
        return NftablesBackend(table=settings.IPS_NFT_TABLE, timeout=settings.IPS_FIREWALL_TIMEOUT_SECONDS)
    except FirewallError as exc:
        raise FirewallUnavailable(f"the firewall is not being changed: {exc.message}") from None


# Every firewall step is bounded (IPS_FIREWALL_TIMEOUT_SECONDS per lock wait and per libnftables
# call), so a run takes seconds; these limits are the last word should anything else hang. A task
# stopped by them leaves its claimed bans APPLYING: the next watch (2 s) settles them.
SYNC_LIMITS = {"soft_time_limit": 60, "time_limit": 75}


# A firewall this process cannot change (IPS_FIREWALL=off, no CAP_NET_ADMIN) is said once per process
# (watched_backend) and on every page; the tasks still end in FirewallUnavailable, but as an expected
# error: no traceback every 2 s.
UNAVAILABLE = (FirewallUnavailable,)


# beat_guard (config/beat.py): beat sends a scheduled run only when the guard says it would do
# something (at least every config.beat.GUARD_MAX_SKIP_SECONDS anyway). A task option becomes a
# class attribute, hence staticmethod (a plain function would be bound to the task).
@shared_task(bind=True, max_retries=None, acks_late=True, throws=UNAVAILABLE, beat_guard=staticmethod(sync.has_work),
             **SYNC_LIMITS)
def sync_firewall(self: Any, host: str) -> dict[str, int]:
    """Apply pending bans and lifts for `host`; transient firewall errors retry with backoff."""
    report = sync.apply_pending(host, watched_backend(host))
    log_events(report)
    if report.error is not None and not report.error.permanent:
        raise self.retry(countdown=min(sync.RETRY_MAX_SECONDS, sync.RETRY_BASE_SECONDS * 2 ** self.request.retries))
    if report.error is not None:
        log.error("firewall refused bans for %s: %s", host, report.error.message)
    return {"applied": len(report.applied), "lifted": len(report.lifted), "expired": report.expired}


@worker_ready.connect
def reconcile_when_a_worker_starts(**kwargs: Any) -> None:
    """After a reboot or a crash the kernel may have lost our sets: heal at once, not at the next
    scheduled reconcile. Queued to this host's firewall worker (harmless if it is already in sync)."""
    host = settings.IPS_HOST_NAME
    reconcile_firewall.apply_async(kwargs={"host": host}, queue=firewall_queue(host))


@shared_task(acks_late=True, throws=UNAVAILABLE, **SYNC_LIMITS)
def reconcile_firewall(host: str) -> dict[str, int]:
    """Make the kernel agree with the database (after a reboot or `nft flush ruleset`)."""
    result = sync.reconcile(host, watched_backend(host))
    return {"added": len(result.added), "removed": len(result.removed), "refreshed": len(result.refreshed)}


# --- scheduled work (beat; defaults in bans/migrations/0002_default_schedules.py) ----------------
# The plain functions live in bans.schedules; each is idempotent, so a late or doubled run is safe.


@shared_task(acks_late=True, beat_guard=staticmethod(schedules.recidive_news))
def run_recidive() -> int:
    """Ban repeat offenders in the "recidive" jail, from the ban history; returns how many."""
    return len(schedules.run_recidive(now=services.now_epoch()))


@shared_task(acks_late=True)
def cleanup_history() -> dict[str, int]:
    """Delete history older than IPS_HISTORY_DAYS (and stale tallies); returns counts per kind."""
    return schedules.cleanup_history(now=services.now_epoch())


@shared_task(acks_late=True, beat_guard=staticmethod(schedules.stats_to_prune))
def rollup_stats() -> int:
    """Prune the statistics' buckets past their horizon (schedules.rollup_stats); returns how many went."""
    return schedules.rollup_stats(now=services.now_epoch())


@shared_task(acks_late=True, beat_guard=staticmethod(fanout.has_work))
def fan_out() -> dict[str, int]:
    """Copy the bans waiting for it to the fleet's other hosts their jails' scope names (bans.fanout).
    Takes no argument: what an agent may put in the `fleet` queue only wakes this up."""
    report = fanout.fan_out_pending()
    if report.originals:
        log.info("fleet: %d bans copied to %d hosts (%d refused by the lockout gate)", report.originals,
                 len(report.hosts), len(report.refused))
    return {"originals": report.originals, "copies": report.copies, "refused": len(report.refused)}


# --- what the firewall worker found, for the panel and jailctl (bans.status) ---------------------


_said_unavailable: set[str] = set()


def watched_backend(host: str) -> FirewallBackend:
    """This process's backend, recording on `host`'s FirewallHost row what the firewall says: that it
    cannot be opened (then raised on, as before), and how each change went (bans.status.StatusBackend)."""
    try:
        real = backend()
    except FirewallUnavailable as exc:
        status.record_unavailable(host, str(exc))
        if str(exc) not in _said_unavailable:
            _said_unavailable.add(str(exc))
            log.warning("%s (host %s)", exc, host)
        raise
    status.record_seen(host)
    real.contents = lambda: sync.desired(host, timezone.now())
    return status.StatusBackend(real, host)


# The generation each host's kernel had when this worker process last found it agreeing with the
# rows (bans.sync.watch), with the number of transactions this process's backend had committed then.
# A generation that moved by exactly our own commits since was moved by us alone (a sync or a
# reconcile writes what the rows say), so it still agrees and the watch reads nothing; without this
# a ban flood made every watch list the whole table and read every ban in force.
_checked_generation: dict[str, tuple[int, int]] = {}


def own_commits() -> int | None:
    """The transactions this process's backend committed so far (None: it cannot say). Called after
    watched_backend(), which raised already if there is no backend."""
    commits = getattr(backend(), "commits", None)
    return commits if isinstance(commits, int) else None


@shared_task(acks_late=False, throws=UNAVAILABLE, **SYNC_LIMITS)
def watch_firewall(host: str) -> dict[str, int]:
    """Every 2 s, timed by the firewall worker itself (bans/watching.py: run inline between tasks, or
    queued with messages expiring after 2 s, so a busy worker never piles them up): find at once a
    kernel that lost our bans (`nft flush ruleset`, a replaced table) and put them back, or strays
    out (bans.sync.watch)."""
    watched = watched_backend(host)
    own, checked = own_commits(), _checked_generation.get(host)
    expected = None if checked is None or own is None else checked[0] + (own - checked[1])
    report = sync.watch(host, watched, expected)
    if own is not None:
        _checked_generation[host] = (report.generation, own)
    return {"checked": int(report.checked), "lost": report.lost, "strays": report.strays,
            "waiting": int(report.waiting)}


# --- the events of a sync, at INFO: the log says what happened, not that a task ran ---------------

EVENT_LINES = 20  # a ban storm logs its first bans and a count, not thousands of lines


def log_events(report: sync.SyncReport) -> None:
    """Bans the kernel took and bans lifted, as fail2ban logs them ("[sshd] Ban 203.0.113.9")."""
    for verb, pks in (("Ban", report.applied), ("Unban", report.lifted)):
        if not pks:
            continue
        rows = Ban.objects.filter(pk__in=pks[:EVENT_LINES]).order_by("pk").values_list("jail_name", "network")
        for jail_name, network in rows:
            log.info("[%s] %s %s", jail_name, verb, address_only(network))
        if len(pks) > EVENT_LINES:
            log.info("%s: %d more", verb, len(pks) - EVENT_LINES)
    if report.expired:
        log.info("%d ban(s) ended: their time was up", report.expired)


# --- replay: what a jail's settings would have banned in its log (bans.replay; the panel's page) ---


@shared_task(acks_late=True)
def replay_jail(run_id: int) -> str:
    """Run one ReplayRun (claimed with a conditional UPDATE: a redelivered task finds it taken)."""
    return replay.run_replay(run_id)
