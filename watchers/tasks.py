"""Celery tasks of the watchers app: follow the enabled jails' sources, or read them on a schedule.

Only what matched leaves the matcher: sources are read where they are followed (or by a task that
reads a whole source), and the database receives failures and bans, never a message per line.

`follow` is the low-latency path (watchers.follow): one long-running follower per shard of the
jails, asked for by the watcher worker when it starts (`start_followers`), kept across a Redis
restart by their lease (watchers.lease.Lease.keep), and restarted by beat every 30 s should one be
lost another way (watchers/migrations/0003_follow_schedule.py, 0006). `read_all_sources` is the
safety net for the shards no follower holds (no follower scheduled, or a worker with too few
processes): beat runs it every 30 s where followers are scheduled, else every 2 s
(watchers/migrations/0005, 0006).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from celery import shared_task
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutting_down
from django import db
from django.conf import settings
from django_celery_beat.models import PeriodicTask
from kombu.exceptions import OperationalError as KombuOperationalError

from jails.models import jails_on
from watchers import follow as following
from watchers import lease, services

log = logging.getLogger(__name__)

# Processes of this worker's pool, learned in the main process before the pool forks (None: unknown).
_pool_size: int | None = None


@worker_init.connect
def prepare_followers(sender: Any = None, **kwargs: Any) -> None:
    """In the worker's main process, before its pool forks: the shutdown pipe, and the pool's size."""
    global _pool_size
    following.SHUTDOWN.open()
    concurrency = getattr(sender, "concurrency", None)
    _pool_size = concurrency if isinstance(concurrency, int) and concurrency > 0 else None


@worker_process_init.connect
def forget_shutdown_writer(**kwargs: Any) -> None:
    following.SHUTDOWN.forget_writer()


@worker_shutting_down.connect
def stop_followers(**kwargs: Any) -> None:
    """Warm shutdown waits for running tasks: tell the followers now instead of after their lease."""
    following.SHUTDOWN.close_writer()


@worker_ready.connect
def start_followers(sender: Any = None, **kwargs: Any) -> None:
    """A watcher worker that starts (or starts again after it was killed) asks for its followers at
    once, each willing to wait for a dead follower's lease to run out, instead of waiting for beat's
    next `follow` (every 30 s: it only brings back a follower lost some other way)."""
    if settings.IPS_FLEET_ROLE == "agent":
        return  # beat's schedules are the central server's (an agent's role may not read them)
    app = getattr(sender, "app", None)
    consumed = set(app.amqp.queues.consume_from or ()) if app is not None else set()  # empty: every queue
    try:
        rows = list(PeriodicTask.objects.filter(task="watchers.tasks.follow", enabled=True))
    except Exception as exc:  # a convenience at start: beat's schedule still starts them
        log.warning("follow: could not read the follower schedules at start (%s); beat will start them", exc)
        return
    finally:
        db.connections.close_all()  # not inherited by pool processes forked later
    for row in rows:
        queue = row.queue or "celery"
        if consumed and queue not in consumed:
            continue  # another worker's followers (the firewall worker consumes only its own queue)
        try:
            arguments = {**json.loads(row.kwargs or "{}"), "wait_seconds": following.START_WAIT_SECONDS}
            follow.apply_async(args=json.loads(row.args or "[]"), kwargs=arguments, queue=row.queue or None,
                               expires=following.START_WAIT_SECONDS)
        except (ValueError, TypeError, KombuOperationalError) as exc:
            log.warning("follow: could not ask for the follower of %r at start (%s); beat will", row.name, exc)


# beat_guard (config/beat.py): beat sends these safety nets only when they would do something; a
# task option becomes a class attribute, hence staticmethod (a plain function would be bound to the task)
@shared_task(bind=True, acks_late=True, beat_guard=staticmethod(lease.shard_unheld))
def follow(self: Any, shard: int, shards: int, lease_seconds: int = following.DEFAULT_LEASE_SECONDS,
           wait_seconds: float = 0.0, host: str | None = None) -> str:
    """Follow the sources of the jails whose id % shards == shard for `lease_seconds`, then hand over
    to a fresh task (so redelivery and upgrades never wait on an endless task). A second follower of a
    shard that is held returns at once (after `wait_seconds`, at most a lease's lifetime): beat may
    (re)start followers as often as it likes. `host`: the fleet host whose followers beat asks for
    (the guard reads its lease); a worker follows only its own host's logs."""
    if host is not None and host != settings.IPS_HOST_NAME:
        log.error("follow shard %d/%d: asked for host %s, but this is %s (IPS_HOST_NAME); not following",
                  shard, shards, host, settings.IPS_HOST_NAME)
        return str(following.Outcome.DECLINED)
    if _pool_size is not None and _pool_size < shards + 1:
        log.error("follow shard %d/%d: this worker has %d process(es); following %d shards needs at least %d "
                  "(the others run ordinary tasks). Sources are read by read_all_sources instead "
                  "(the 'read log sources' schedule).",
                  shard, shards, _pool_size, shards, shards + 1)
        return str(following.Outcome.DECLINED)
    with following.sigterm_pipe() as terminated:
        stop_fds = tuple(fd for fd in (following.SHUTDOWN.read_fd, terminated) if fd is not None)
        outcome = following.follow_shard(shard, shards, lease_seconds, stop_fds=stop_fds, wait_seconds=wait_seconds)
    if outcome in (following.Outcome.TIME_UP, following.Outcome.GREW):
        queue = (self.request.delivery_info or {}).get("routing_key") or None
        again = {"shard": shard, "shards": shards, "lease_seconds": lease_seconds}
        follow.apply_async(kwargs=again if host is None else {**again, "host": host}, queue=queue)
    return str(outcome)


@shared_task(acks_late=True, beat_guard=staticmethod(lease.some_source_unfollowed))
def read_all_sources(host: str | None = None, shards: int | None = None) -> int:
    """Scheduled by beat: re-expand the logpath globs of every enabled jail of this host and read each
    source that no follower holds (all of them when Redis cannot say). `host` and `shards`: a fleet
    agent's (its followers' leases are looked up by name; a worker reads only its own host's logs)."""
    if host is not None and host != settings.IPS_HOST_NAME:
        log.error("read_all_sources: asked for host %s, but this is %s (IPS_HOST_NAME)", host, settings.IPS_HOST_NAME)
        return 0
    try:
        held = lease.live_shards(lease.broker_redis(), shards=shards)
    except redis.RedisError as exc:
        log.warning("read_all_sources: cannot see the followers' leases (%s); reading every source", exc)
        held = set()
    count = 0
    for jail in jails_on(settings.IPS_HOST_NAME).filter(enabled=True):
        if lease.followed(jail.pk, held):
            continue
        for source in services.sync_sources(jail, settings.IPS_HOST_NAME):
            read_source.delay(source.pk)
            count += 1
    return count


@shared_task(acks_late=True)
def read_source(source_id: int, backlog: bool = False) -> int:
    """Read one source from its saved position; a backlog is read in chunks, one task each."""
    report = services.read_source(source_id, backlog=backlog)
    if report.more:
        read_source.delay(source_id, backlog=True)
    return report.lines
