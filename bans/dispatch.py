"""Asking a host's firewall worker to act: its queue, and the bounded publish of a sync request;
and finding any task of bans.tasks by name for the modules it builds on (a replay's start).

The services (a ban made in a view, by jailctl, by a watcher's read) ask for a sync when their
transaction commits (bans.services.request_firewall_sync); the task itself lives in bans.tasks,
which builds on the services. The request finds the task by its name instead of importing it, so
the arrows run one way: tasks -> services -> dispatch.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from celery.exceptions import NotRegistered
from kombu.entity import Queue

from config.fleet import FLEET_QUEUE, firewall_queue

__all__ = ["firewall_queue", "registered_task", "request_sync", "sync_task"]

SYNC_TASK = "bans.tasks.sync_firewall"
FAN_OUT_TASK = "bans.tasks.fan_out"
# The central fleet queue: declared by the central worker that consumes it, never by a publisher (an
# agent's Redis user may only push to it: jails/fleet/redis_acl.py), through the anonymous exchange.
FLEET = Queue(FLEET_QUEUE, exchange="", routing_key=FLEET_QUEUE, no_declare=True)

# Asking a firewall worker must never hang its asker (a view, jailctl, a watcher's transaction): a
# Redis that is down, or unreachable because a ban dropped its packets, costs at most a few seconds.
PUBLISH_TRANSPORT = {"socket_connect_timeout": 2, "socket_timeout": 2}
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 0.5}


def request_sync(host: str) -> None:
    """Queue a sync for `host`'s firewall worker; kombu's OperationalError within ~5 s if Redis does not
    take it (the ban stays PENDING: beat's sync, or `jailctl`'s direct apply, picks it up)."""
    task = sync_task()
    with current_app.connection_for_write(transport_options=PUBLISH_TRANSPORT) as connection:
        task.apply_async(kwargs={"host": host}, queue=firewall_queue(host), connection=connection, retry=True,
                         retry_policy=PUBLISH_RETRY)


def request_fan_out() -> None:
    """Wake the central worker to copy the originals waiting for it to the other hosts of the fleet
    (bans.fanout); bounded like request_sync."""
    task = registered_task(FAN_OUT_TASK)
    with current_app.connection_for_write(transport_options=PUBLISH_TRANSPORT) as connection:
        task.apply_async(queue=FLEET, connection=connection, retry=True, retry_policy=PUBLISH_RETRY)


def sync_task() -> Any:
    return registered_task(SYNC_TASK)


def registered_task(name: str) -> Any:
    """A task by its name in Celery's registry, as bans.tasks defines it. The registry is filled by
    autodiscovery, which Celery runs lazily: a worker runs it at start, and a process that has not
    imported bans.tasks yet (a management command, a test) runs it here, as the worker would."""
    try:
        return current_app.tasks[name]
    except NotRegistered:
        current_app.loader.import_default_modules()
        return current_app.tasks[name]
