"""config.beat.Scheduler: the database is asked whether the schedules changed at most every
CHANGES_EVERY_SECONDS, however often beat ticks; a change is still picked up after that."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from config import beat
from config.celery import app

pytestmark = pytest.mark.django_db(transaction=True)  # beat commits and closes connections itself


def test_beat_asks_for_changes_once_per_interval_and_still_sees_them(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    asked: list[int] = []
    real = PeriodicTasks.last_change.__func__

    def counted(cls: type[PeriodicTasks]) -> Any:  # (django_celery_beat has no types)
        asked.append(1)
        return real(cls)

    monkeypatch.setattr(PeriodicTasks, "last_change", classmethod(counted))
    scheduler = beat.Scheduler(app=app, lazy=True)
    scheduler.setup_schedule()
    for _ in range(5):  # ticks within one interval: one question
        scheduler.schedule_changed()
    assert len(asked) == 1
    every = IntervalSchedule.objects.create(every=7, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="new by an admin", task="bans.tasks.rollup_stats", interval=every)
    assert not scheduler.schedule_changed()  # not yet asked again
    clock[0] += beat.CHANGES_EVERY_SECONDS
    assert scheduler.schedule_changed()
    assert "new by an admin" in scheduler.all_as_schedule()
