"""The watchers' default schedules (migrations 0002, 0003, 0005): where followers are scheduled the
fallback read runs every 10 s; an admin's own interval, or a stack without followers, keeps its own."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django_celery_beat.models import IntervalSchedule, PeriodicTask

pytestmark = pytest.mark.django_db

FALLBACK = importlib.import_module("watchers.migrations.0005_fallback_read_every_10s")


def read_every() -> int:
    return int(PeriodicTask.objects.get(name="read log sources").interval.every)


def reset_read_to(seconds: int) -> None:
    every = IntervalSchedule.objects.filter(every=seconds, period="seconds").first() or \
        IntervalSchedule.objects.create(every=seconds, period="seconds")
    PeriodicTask.objects.filter(name="read log sources").update(interval=every)


def test_with_followers_the_fallback_read_runs_every_10_seconds() -> None:
    assert PeriodicTask.objects.filter(task="watchers.tasks.follow", enabled=True).exists()
    assert read_every() == 10  # as migrated
    reset_read_to(2)
    FALLBACK.backwards(apps, None)
    assert read_every() == 2
    FALLBACK.forwards(apps, None)
    assert read_every() == 10


def test_an_admins_interval_and_a_stack_without_followers_keep_theirs() -> None:
    reset_read_to(5)
    FALLBACK.forwards(apps, None)
    assert read_every() == 5
    reset_read_to(2)
    PeriodicTask.objects.filter(task="watchers.tasks.follow").update(enabled=False)
    FALLBACK.forwards(apps, None)
    assert read_every() == 2  # no follower: this task is the reader
