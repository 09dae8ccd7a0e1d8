"""Celery application, wired as in Celery's Django example: CELERY_* settings, tasks found in
each app's tasks.py."""

import gc
import os
from typing import Any

import click
from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Every worker starts without gossip, mingle and heartbeats: they exist for workers that watch each
# other (and for Flower), which ours never do, and cost an idle stack wake-ups and Redis traffic every
# second. `celery worker` reads its options' defaults from CELERY_WORKER_* (click's
# auto_envvar_prefix) after `-A config` has imported this module, so this covers runstack, the
# deploy units and an admin's own command alike; an admin who wants them sets these to "false".
for _option in ("WITHOUT_GOSSIP", "WITHOUT_MINGLE", "WITHOUT_HEARTBEAT"):
    os.environ.setdefault(f"CELERY_WORKER_{_option}", "true")

# DjangoTask adds delay_on_commit/apply_async_on_commit: work is enqueued only once the rows it
# needs are committed.
app = Celery("config", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The firewall worker times its own watch of the kernel (no beat message every 2 s); a step that
# stays off in any worker not consuming this host's firewall queue.
app.steps["worker"].add("bans.watching:FirewallWatch")
# Beat inside a worker's main process, on its event loop (config/beat.py: runstack's watcher worker),
# where `--beat` would fork a process of its own for it.
app.user_options["worker"].add(click.Option(
    ["--beat-in-loop"], is_flag=True, default=False,
    help="Run Celery beat in this worker's main process, on its event loop (no process of its own)."))
app.steps["worker"].add("config.beat:LoopBeat")


@worker_init.connect
def share_loaded_modules(**kwargs: Any) -> None:
    """In a worker's main process, before its pool forks: what is loaded now (Django, the apps,
    the engine) is frozen out of the cyclic collector, so the pool processes keep sharing those
    pages with the parent instead of copying them when a collection touches every object."""
    gc.freeze()


# Celery's Django fixup closes every database connection before and after each task, unless
# CELERY_DB_REUSE_MAX says otherwise (config/settings.py sets it high): a task every few seconds
# (the follow and read schedules, the firewall's syncs) then opened a new connection each time, a
# new PostgreSQL backend process or SQLite's file, schema and PRAGMAs, most of an idle worker's
# CPU. Instead, as Django does around each request, a connection is closed when it is broken (an
# error, a failed health check after a PostgreSQL restart) or older than its CONN_MAX_AGE.
@task_prerun.connect
@task_postrun.connect
def close_old_database_connections(**kwargs: Any) -> None:
    task = kwargs.get("task") or kwargs.get("sender")
    if not getattr(getattr(task, "request", None), "is_eager", False):
        close_old_connections()
