"""Is the firewall being changed? What each firewall worker last found, and the verdict for people.

Only the firewall worker holds CAP_NET_ADMIN. Without it, without nftables, or with IPS_FIREWALL=off,
the product still runs (failures are counted, bans are recorded), so the panel and jailctl must say
plainly that the kernel is not being changed. The worker records what it finds on every sync and
reconcile in `FirewallHost` (through `StatusBackend`, which watches the real backend's calls);
`firewall_status()` turns that row into one sentence. A worker that has not reported for
`STALE_AFTER` counts as down: bans then wait, whatever its last report said.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from django.conf import settings
from django.utils import timezone

from bans.firewall import BanEntry, FirewallBackend, FirewallError, JailRules, ReconcileResult, State
from bans.models import Ban, FirewallHost
from config.version import VERSION

# The firewall worker runs at least every 30 s (beat's "apply pending bans" schedule); two minutes
# of silence is four missed runs, not a busy moment.
STALE_AFTER = dt.timedelta(minutes=2)
# The worker says it is alive (each task, each watch: every 30 s on a quiet worker, bans/watching.py)
# with a write at most this often: far inside STALE_AFTER, and an idle stack writes nothing in between.
SEEN_EVERY = dt.timedelta(seconds=20)
# A pending ban is normally applied within a second (the sync request on commit); beat's own sync
# runs every 30 s should a request be lost.
PENDING_TOO_LONG = dt.timedelta(seconds=45)
# The worker's own wording of FirewallUnavailable starts with this; the verdict says it already.
_REDUNDANT_PREFIX = "the firewall is not being changed: "


# --- recording (the firewall worker) --------------------------------------------------------------


def record_seen(host: str, now: dt.datetime | None = None) -> None:
    """The worker ran and could open the firewall. A FAILING state stays until the kernel accepts a
    change again (the refused bans are still waiting); UNAVAILABLE ends here, the backend opened."""
    now = now or timezone.now()
    steady = [FirewallHost.State.OK, FirewallHost.State.FAILING]
    said = FirewallHost.objects.filter(name=host, state__in=steady).values_list("last_seen_at", flat=True).first()
    if said is not None and now - SEEN_EVERY < said <= now:
        return  # a read, not a write: seen moments ago, and in a state this call would keep
    if not FirewallHost.objects.filter(name=host, state__in=steady).update(last_seen_at=now, version=VERSION):
        FirewallHost.objects.update_or_create(
            name=host, defaults={"state": FirewallHost.State.OK, "reason": "", "last_seen_at": now, "version": VERSION})


def record_ok(host: str, now: dt.datetime | None = None) -> None:
    """The kernel accepted a change (an applied batch, a reconcile)."""
    now = now or timezone.now()
    FirewallHost.objects.update_or_create(name=host, defaults={
        "state": FirewallHost.State.OK, "reason": "", "last_seen_at": now, "last_applied_at": now, "version": VERSION})


def record_unavailable(host: str, reason: str, now: dt.datetime | None = None) -> None:
    """This worker cannot change the firewall at all (IPS_FIREWALL=off, no CAP_NET_ADMIN, no nftables)."""
    _record_problem(host, FirewallHost.State.UNAVAILABLE, reason, now)


def record_failing(host: str, reason: str, now: dt.datetime | None = None) -> None:
    """The firewall refused a change; the bans in it wait for a retry."""
    _record_problem(host, FirewallHost.State.FAILING, reason, now)


def _record_problem(host: str, state: str, reason: str, now: dt.datetime | None) -> None:
    FirewallHost.objects.update_or_create(name=host, defaults={
        "state": state, "reason": reason, "last_seen_at": now or timezone.now(), "version": VERSION})


def record_drift(host: str, text: str, now: dt.datetime | None = None) -> None:
    """The kernel and the database disagree (bans.sync.watch found it); kept until settled."""
    now = now or timezone.now()
    row, _ = FirewallHost.objects.get_or_create(name=host, defaults={"last_seen_at": now})
    FirewallHost.objects.filter(pk=row.pk).update(drift=text, drift_since=row.drift_since or now)


def settle_drift(host: str, repaired: ReconcileResult | None) -> None:
    """After a check: agreement (no repair needed, or a repair that put everything in) clears the
    drift; bans a repair could not put in keep it, with why."""
    if repaired is not None and repaired.skipped:
        reasons = "; ".join(f"{entry.network}: {why}" for entry, why in repaired.skipped[:3])
        FirewallHost.objects.filter(name=host).update(
            drift=f"{len(repaired.skipped)} ban(s) in force cannot be put in the kernel ({reasons})")
        return
    FirewallHost.objects.filter(name=host).exclude(drift="").update(drift="", drift_since=None)


class StatusBackend:
    """A FirewallBackend that passes every call to `inner` and records what the kernel said.

    sync.py stays unaware of it: a refused call is recorded as FAILING and raised on unchanged, an
    accepted change (apply, reconcile) as OK."""

    def __init__(self, inner: FirewallBackend, host: str) -> None:
        self.inner = inner
        self.host = host

    @property
    def contents(self) -> Callable[[], Sequence[BanEntry]] | None:
        return self.inner.contents

    @contents.setter
    def contents(self, provider: Callable[[], Sequence[BanEntry]] | None) -> None:
        self.inner.contents = provider

    def generation(self) -> int:
        try:
            return self.inner.generation()
        except FirewallError as exc:
            record_failing(self.host, exc.message)
            raise

    def sync_rules(self, jails: Sequence[JailRules]) -> None:
        try:
            self.inner.sync_rules(jails)
        except FirewallError as exc:
            record_failing(self.host, exc.message)
            raise

    def apply(self, add: Sequence[BanEntry] = (), remove: Sequence[BanEntry] = ()) -> None:
        try:
            self.inner.apply(add=add, remove=remove)
        except FirewallError as exc:
            record_failing(self.host, exc.message)
            raise
        record_ok(self.host)

    def snapshot(self) -> State:
        return self.inner.snapshot()

    def reconcile(self, desired: Sequence[BanEntry]) -> ReconcileResult:
        try:
            result = self.inner.reconcile(desired)
        except FirewallError as exc:
            record_failing(self.host, exc.message)
            raise
        record_ok(self.host)
        return result

    def teardown(self) -> None:
        self.inner.teardown()


# --- the verdict (the panel, jailctl) -------------------------------------------------------------


def firewall_status(host: str | None = None, now: dt.datetime | None = None) -> tuple[bool, str]:
    """(True, "changing nftables on host H") or (False, "the firewall is NOT being changed on host H: why"),
    or (False, "on host H, <how the kernel and the database disagree>") while its worker is fine."""
    host = host or settings.IPS_HOST_NAME
    now = now or timezone.now()
    problem = firewall_problem(host, now)
    if problem is not None:
        return False, f"the firewall is NOT being changed on host {host}: {problem}"
    row = FirewallHost.objects.filter(name=host).first()
    differs = disagreement(row, now) if row is not None else None
    if differs is not None:
        return False, f"on host {host}, {differs}"
    return True, f"changing nftables on host {host}"


def disagreement(row: FirewallHost, now: dt.datetime) -> str | None:
    """Where the kernel and the database disagree on a host whose worker is fine: a drift it found
    (being repaired), bans the firewall refused, bans waiting longer than they should."""
    if row.drift:
        since = f" since {row.drift_since:%H:%M:%S}" if row.drift_since else ""
        return f"the kernel and the database disagree{since}: {row.drift}; the firewall worker is restoring it"
    live = Ban.objects.in_force(now).filter(host=row.name)
    failed = live.filter(state=Ban.State.FAILED)
    count = failed.count()
    if count:
        latest = failed.order_by("-next_attempt_at").values_list("apply_error", flat=True).first()
        return f"{count} ban(s) in force are not in the kernel: the firewall refused them ({latest}); retrying"
    waiting = live.filter(state=Ban.State.PENDING, started_at__lte=now - PENDING_TOO_LONG).count()
    if waiting:
        return (f"{waiting} ban(s) have waited over {int(PENDING_TOO_LONG.total_seconds())} s for the firewall "
                "worker: they are not in the kernel yet")
    return None


def firewall_problem(host: str, now: dt.datetime) -> str | None:
    """Why `host`'s kernel is not being changed, or None when its worker reported success lately."""
    row = FirewallHost.objects.filter(name=host).first()
    fresh = row is not None and now - row.last_seen_at <= STALE_AFTER
    if row is not None and fresh:
        # The worker's fresh word beats this process's settings: it is the one that holds the firewall.
        return None if row.state == FirewallHost.State.OK else row.reason.removeprefix(_REDUNDANT_PREFIX)
    if settings.IPS_FIREWALL == "off" and host == settings.IPS_HOST_NAME:
        return "IPS_FIREWALL=off: bans are recorded and shown, the kernel is not touched"
    if row is None:
        return (f"no firewall worker has reported yet (is the worker of queue firewall.{host} running?); "
                "bans wait as pending")
    minutes = int((now - row.last_seen_at).total_seconds() // 60)
    return (f"its firewall worker was last seen {minutes} min ago, at {row.last_seen_at:%Y-%m-%d %H:%M:%S %Z} "
            f"(is the worker of queue firewall.{host} running?); bans wait as pending")
