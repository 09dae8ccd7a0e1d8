"""The periodic tasks Celery beat sends, built in one place from the settings, and their install.

The rows live in django-celery-beat's tables, so an admin can change an interval or switch a task
off in Django admin; `manage.py installschedules` (run by scripts/run.sh and by the beat unit in
deploy/ before beat starts) makes the rows match this host and this database without undoing such
edits:

- a missing row is created with its default interval (the product needs each of them: to stop one,
  switch it off in Django admin; a deleted row comes back at the next start);
- an existing row keeps its interval and whether it is enabled (the admin's), but its task, its
  arguments and its queue are set back to what the code needs (a row pointing at the wrong queue
  would send work nobody takes);
- the log followers: one row per shard. With IPS_FOLLOWER_SHARDS set, that many: rows of another
  shard count are switched off, not deleted. Unset (0), the follower rows are left exactly as they
  are (the admin's arrangement, enabled or not), and only a database without any gets the default:
  1 on SQLite, 2 on PostgreSQL (SQLite has one writer: a second follower only waits for the first;
  see watchers/migrations/0003);
- the firewall's rows name this host (IPS_HOST_NAME) and go to its queue, `firewall.<host>`. A row
  already scheduling this host's task under another name counts as this host's row (corrected, not
  duplicated); rows of other hosts are left alone and reported: in a fleet they are the other hosts'.

The migrations that first created these rows stay (a database migrated by an older release has
them); this module is where the schedules are defined from now on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from bans.dispatch import firewall_queue
from config.fleet import FLEET_QUEUE, watch_queue
from jails.models import Host

FOLLOW_TASK = "watchers.tasks.follow"
FIREWALL_TASKS = ("bans.tasks.sync_firewall", "bans.tasks.reconcile_firewall")
FOLLOW_EVERY = 30  # restarts a lost follower; its message expires after one interval
FOLLOW_LEASE_SECONDS = 300  # a follower hands over to a fresh task this often (watchers.follow)


@dataclass(frozen=True)
class Periodic:
    """One row as the code wants it."""

    name: str
    task: str
    every: int  # seconds, for a new row
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    expire_seconds: int | None = None


@dataclass
class InstallReport:
    created: list[str] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)
    switched_off: list[str] = field(default_factory=list)
    other_hosts: list[str] = field(default_factory=list)
    shards: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.corrected or self.switched_off)


def follower_name(shard: int, shards: int) -> str:
    return f"follow log sources (shard {shard} of {shards})"


def wanted(host: str, shards: int) -> list[Periodic]:
    """Every row this host needs, with `shards` log followers."""
    rows = [
        Periodic("read log sources", "watchers.tasks.read_all_sources", 30),
        Periodic("recidive: ban repeat offenders", "bans.tasks.run_recidive", 60),
        Periodic("roll up statistics", "bans.tasks.rollup_stats", 60),
        Periodic("clean up old history", "bans.tasks.cleanup_history", 3600),
        # the safety net of the fleet's fan-out (bans.fanout): a wake-up message that was lost
        Periodic("copy bans to the fleet's other hosts", "bans.tasks.fan_out", 30, queue=FLEET_QUEUE),
        Periodic(f"apply pending bans ({host})", "bans.tasks.sync_firewall", 30, {"host": host},
                 queue=firewall_queue(host)),
        Periodic(f"reconcile the firewall ({host})", "bans.tasks.reconcile_firewall", 300, {"host": host},
                 queue=firewall_queue(host)),
    ]
    rows += [Periodic(follower_name(shard, shards), FOLLOW_TASK, FOLLOW_EVERY,
                      {"shard": shard, "shards": shards, "lease_seconds": FOLLOW_LEASE_SECONDS},
                      expire_seconds=FOLLOW_EVERY)
             for shard in range(shards)]
    return rows


def wanted_on_agent(host: str, shards: int) -> list[Periodic]:
    """The rows of a fleet agent (docs/fleet.md), sent by the central beat to its own queues: its
    followers and fallback read (its watch queue), its firewall's sync and reconcile. The work of the
    whole fleet (recidive, statistics, cleanup, fan-out) stays the central server's."""
    watch = watch_queue(host)
    rows = [
        Periodic(f"read log sources ({host})", "watchers.tasks.read_all_sources", 30,
                 {"host": host, "shards": shards}, queue=watch),
        Periodic(f"apply pending bans ({host})", "bans.tasks.sync_firewall", 30, {"host": host},
                 queue=firewall_queue(host)),
        Periodic(f"reconcile the firewall ({host})", "bans.tasks.reconcile_firewall", 300, {"host": host},
                 queue=firewall_queue(host)),
    ]
    rows += [Periodic(f"{follower_name(shard, shards)} on {host}", FOLLOW_TASK, FOLLOW_EVERY,
                      {"shard": shard, "shards": shards, "lease_seconds": FOLLOW_LEASE_SECONDS, "host": host},
                      queue=watch, expire_seconds=FOLLOW_EVERY)
             for shard in range(shards)]
    return rows


def install_agent(host: str, shards: int = 1) -> InstallReport:
    """Make an agent's rows match (hostctl add); its earlier rows that are not wanted go."""
    report = InstallReport(shards=shards)
    with transaction.atomic():
        taken = {_install_one(row, report) for row in wanted_on_agent(host, shards)}
        stale = agent_rows(host).exclude(pk__in=taken)
        report.switched_off = list(stale.values_list("name", flat=True))
        stale.delete()
        PeriodicTasks.update_changed()
    return report


def agent_rows(host: str) -> Any:
    """Every row that sends work to the agent `host`'s queues."""
    return PeriodicTask.objects.filter(queue__in=[watch_queue(host), firewall_queue(host)])


def remove_agent(host: str) -> int:
    """A removed agent's rows go (hostctl remove); returns how many."""
    with transaction.atomic():
        count, _ = agent_rows(host).delete()
        PeriodicTasks.update_changed()
    return int(count)


def agent_queues() -> list[str]:
    """The queues of the fleet's agents (their rows are theirs, not left over from another host)."""
    names = Host.objects.filter(kind=Host.Kind.AGENT).values_list("name", flat=True)
    return [queue for name in names for queue in (watch_queue(name), firewall_queue(name))]


def central_followers() -> Any:
    """The follower rows of this (central) server: those on its own queue, not an agent's."""
    return PeriodicTask.objects.filter(task=FOLLOW_TASK).filter(Q(queue__isnull=True) | Q(queue__in=["", "celery"]))


def default_shards(vendor: str) -> int:
    """Followers for a new install: one on SQLite (a single writer), two on PostgreSQL."""
    return 1 if vendor == "sqlite" else 2


def shards_to_run(configured: int, vendor: str) -> int | None:
    """IPS_FOLLOWER_SHARDS when set (> 0); None to leave existing follower rows as they are; the
    default for a database without any."""
    if configured > 0:
        return configured
    if central_followers().exists():
        return None
    return default_shards(vendor)


def install(host: str, shards: int | None) -> InstallReport:
    """Make the rows match (see the module's docstring); idempotent. One transaction. shards=None
    leaves the follower rows alone."""
    report = InstallReport(shards=shards or central_followers().filter(enabled=True).count())
    rows = wanted(host, shards or 0)
    with transaction.atomic():
        taken: set[int] = set()
        for row in rows:
            taken.add(_install_one(row, report))
        if shards is not None:
            for task in central_followers().filter(enabled=True).exclude(pk__in=taken):
                task.enabled = False
                task.save(update_fields=["enabled"])
                report.switched_off.append(task.name)
        report.other_hosts = sorted(PeriodicTask.objects.filter(task__in=FIREWALL_TASKS).exclude(pk__in=taken)
                                    .exclude(queue__in=agent_queues()).values_list("name", flat=True))
        if report.changed:
            PeriodicTasks.update_changed()  # a running beat re-reads the schedule
    return report


def _existing(row: Periodic) -> PeriodicTask | None:
    """The row by its name; for a host's firewall task, any row already scheduling it for this host."""
    task = PeriodicTask.objects.filter(name=row.name).first()
    if task is not None or "host" not in row.kwargs:
        return task
    for candidate in PeriodicTask.objects.filter(task=row.task):
        if _current(candidate, "kwargs") == row.kwargs:
            return candidate
    return None


def _install_one(row: Periodic, report: InstallReport) -> int:
    """Create or correct the row; its id."""
    task = _existing(row)
    if task is None:
        created = PeriodicTask.objects.create(name=row.name, task=row.task, interval=_interval(row.every),
                                              kwargs=json.dumps(row.kwargs), queue=row.queue,
                                              expire_seconds=row.expire_seconds)
        report.created.append(row.name)
        return int(created.pk)
    wrong = [name for name, value in _identity(row).items() if _current(task, name) != value]
    if wrong:
        for name in wrong:
            setattr(task, name, json.dumps(row.kwargs) if name == "kwargs" else _identity(row)[name])
        task.save(update_fields=wrong)
        report.corrected.append(f"{task.name} ({', '.join(wrong)})")
    return int(task.pk)


def _identity(row: Periodic) -> dict[str, Any]:
    """What a row must say for the code to work, whatever the admin changed."""
    return {"task": row.task, "kwargs": row.kwargs, "queue": row.queue}


def _current(task: PeriodicTask, name: str) -> Any:
    if name == "kwargs":
        try:
            return json.loads(task.kwargs or "{}")
        except ValueError:
            return None
    return getattr(task, name) or None


def _interval(seconds: int) -> IntervalSchedule:
    # get_or_create would fail on the duplicates Django admin allows
    every = IntervalSchedule.objects.filter(every=seconds, period=IntervalSchedule.SECONDS).first()
    return every or IntervalSchedule.objects.create(every=seconds, period=IntervalSchedule.SECONDS)


def describe(report: InstallReport) -> Iterable[str]:
    """The report as lines for the command's output."""
    yield f"Log followers: {report.shards} scheduled."
    for title, names in (("Created", report.created), ("Corrected", report.corrected),
                         ("Switched off (another shard count)", report.switched_off)):
        for name in names:
            yield f"{title}: {name}"
    if report.other_hosts:
        yield ("Left alone (another host's firewall rows; in a one-server setup whose IPS_HOST_NAME changed, "
               "switch them off in Django admin): " + ", ".join(report.other_hosts))
    if not report.changed:
        yield "The schedules were already in place."
