"""The watchers' default schedules (migrations 0002, 0003, 0005, 0006): where followers are scheduled
the follower restart and the fallback read run every 30 s; an admin's own interval, or a stack
without followers, keeps its own."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django_celery_beat.models import IntervalSchedule, PeriodicTask

pytestmark = pytest.mark.django_db

FALLBACK = importlib.import_module("watchers.migrations.0005_fallback_read_every_10s")
EVERY_30 = importlib.import_module("watchers.migrations.0006_follow_and_fallback_every_30s")


def read_every() -> int:
    return int(PeriodicTask.objects.get(name="read log sources").interval.every)


def follow_every() -> set[tuple[int, int | None]]:
    return {(int(row.interval.every), row.expire_seconds)
            for row in PeriodicTask.objects.filter(task="watchers.tasks.follow")}


def reset_to(seconds: int, **which: str) -> None:
    every = IntervalSchedule.objects.filter(every=seconds, period="seconds").first() or \
        IntervalSchedule.objects.create(every=seconds, period="seconds")
    PeriodicTask.objects.filter(**which).update(interval=every)


def test_with_followers_the_restart_and_the_fallback_read_run_every_30_seconds() -> None:
    assert PeriodicTask.objects.filter(task="watchers.tasks.follow", enabled=True).exists()
    assert read_every() == 30 and follow_every() == {(30, 30)}  # as migrated
    EVERY_30.backwards(apps, None)
    assert read_every() == 10 and follow_every() == {(10, 10)}
    reset_to(2, name="read log sources")
    FALLBACK.forwards(apps, None)
    assert read_every() == 10
    EVERY_30.forwards(apps, None)
    assert read_every() == 30 and follow_every() == {(30, 30)}


def test_an_admins_interval_and_a_stack_without_followers_keep_theirs() -> None:
    reset_to(5, name="read log sources")
    reset_to(7, task="watchers.tasks.follow")
    FALLBACK.forwards(apps, None)
    EVERY_30.forwards(apps, None)
    assert read_every() == 5 and {every for every, _ in follow_every()} == {7}
    reset_to(2, name="read log sources")
    PeriodicTask.objects.filter(task="watchers.tasks.follow").update(enabled=False)
    FALLBACK.forwards(apps, None)
    EVERY_30.forwards(apps, None)
    assert read_every() == 2  # no follower: this task is the reader
