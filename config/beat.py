"""Celery beat's scheduler: django-celery-beat's DatabaseScheduler, with two changes that keep an idle
stack idle.

1. It asks the database whether the schedules changed at most every CHANGES_EVERY_SECONDS instead of
   on every tick. With tasks due every 2 s, beat ticked about once a second, and each tick asked the
   database (a commit, a query, a comparison of every entry): half of an idle beat's CPU. An admin's
   edit in Django admin takes effect within CHANGES_EVERY_SECONDS after beat next wakes (at most
   CELERY_BEAT_MAX_LOOP_INTERVAL later; django-celery-beat still re-reads everything every 5 minutes).

2. It does not send a task that says it has nothing to do. Most scheduled tasks are safety nets that
   find nothing on an idle host (restart a follower that is running, read sources that are followed,
   apply bans when none waits); each still cost a message, its receipt by the worker and a run in a
   pool process: about 7 ms of CPU, eight times a minute, the idle stack's largest cost. A task may
   carry a `beat_guard` (a task option: a function of the schedule's own arguments, True when a run
   would do something); beat asks it (a Redis or an indexed database read, well under a millisecond)
   and skips the send when it says False. It is asked only for a row that was sent less than
   GUARD_MAX_SKIP_SECONDS ago, so every row still runs at least that often whatever its guard says
   (a guard that misses a case costs a delay, never the work), and a guard that fails is taken as a
   yes (the task's own errors are logged where it runs). The row's last run time moves on as if it
   had been sent: the next question comes one interval later.

Used through CELERY_BEAT_SCHEDULER in config/settings.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django_celery_beat.schedulers import DatabaseScheduler

log = logging.getLogger(__name__)

CHANGES_EVERY_SECONDS = 10.0
GUARD_MAX_SKIP_SECONDS = 600.0


class Scheduler(DatabaseScheduler):  # type: ignore[misc]  # django-celery-beat ships no type hints
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._next_changes_check = 0.0  # before super(): its __init__ already reads the schedule
        self._sent_at: dict[str, float] = {}  # row name -> time.monotonic() of its last send
        self.skipped: dict[str, int] = {}  # row name -> sends its guard saved (shown in the debug log)
        super().__init__(*args, **kwargs)

    def schedule_changed(self) -> bool:
        now = time.monotonic()
        if now < self._next_changes_check:
            return False
        self._next_changes_check = now + CHANGES_EVERY_SECONDS
        return bool(super().schedule_changed())

    def adjust(self, n: float | None, drift: float = 0.0) -> float | None:
        """Wake when a task is due, not 10 ms before (Celery's drift): woken early, beat found the
        entry not due yet and ticked again without sleeping until it was, some ten ticks per send."""
        return n + drift if n and n > 0 else n

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        if self.needless(entry):
            self.skipped[entry.name] = self.skipped.get(entry.name, 0) + 1
            log.debug("beat: %s has nothing to do (its guard says so); not sent (%d times so far)",
                      entry.name, self.skipped[entry.name])
            return
        self._sent_at[entry.name] = time.monotonic()
        super().apply_entry(entry, producer=producer)

    def needless(self, entry: Any) -> bool:
        """Whether the row's task says a run now would do nothing (see the module's docstring)."""
        guard = guard_of(self.app.tasks.get(entry.task))
        sent_at = self._sent_at.get(entry.name)
        if guard is None or sent_at is None or time.monotonic() - sent_at >= GUARD_MAX_SKIP_SECONDS:
            return False
        try:
            return not guard(*(entry.args or ()), **(entry.kwargs or {}))
        except Exception:
            log.warning("beat: the guard of %s failed; sending it anyway", entry.name, exc_info=True)
            return False


def guard_of(task: Any) -> Callable[..., bool] | None:
    guard = getattr(task, "beat_guard", None)
    return guard if callable(guard) else None
