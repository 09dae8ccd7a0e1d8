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

`LoopBeat` runs beat inside a worker's main process, on its event loop (`celery worker
--beat-in-loop`, as runstack starts the watcher worker), instead of Celery's `--beat`, which forks a
process of its own for it: measured on an idle stack, that process cost 22-30 MB (PSS), a tenth of
the stack, to wake every few seconds. The loop runs one thing at a time, so a tick (a few database
reads and publishes, milliseconds) delays the worker's dispatch of tasks by as much, and a tick never
runs while the pool forks a process. The pool's processes must not inherit an SQLite connection
(SQLite forbids using one across a fork, closing it included), so on SQLite the tick closes its
connections when it ends; a PostgreSQL connection is kept (Celery closes the inherited socket in each
new pool process without a word to the server, as it does for every worker).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import beat, bootsteps
from django.db import close_old_connections, connection, connections
from django_celery_beat.schedulers import DatabaseScheduler

log = logging.getLogger(__name__)

CHANGES_EVERY_SECONDS = 10.0
GUARD_MAX_SKIP_SECONDS = 600.0
TICK_ERROR_PAUSE_SECONDS = 5.0  # after a tick that failed (the database or Redis away), before the next


class Scheduler(DatabaseScheduler):  # type: ignore[misc]  # django-celery-beat ships no type hints
    # Tries to reach the broker before a send gives up (None: Celery's broker_connection_max_retries,
    # 100 with back-off, right for beat in a process of its own). LoopBeat sets 1: its tick runs on a
    # worker's event loop, which a retry loop would hold for many minutes.
    connect_retries: int | None = None

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

    def _ensure_connected(self) -> Any:
        if self.connect_retries is None:
            return super()._ensure_connected()
        return self.connection.ensure_connection(max_retries=self.connect_retries)

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


class LoopBeat(bootsteps.StartStopStep):  # type: ignore[misc]  # celery ships no type hints
    """Beat on the worker's own event loop: `celery worker --beat-in-loop` (see the module)."""

    label = "beat in the event loop"
    # after the pool: started once it runs, stopped before it, since a stopping prefork pool fires the
    # loop's timers from a thread of its own while its tasks finish
    requires = ("celery.worker.components:Timer", "celery.worker.components:Hub", "celery.worker.components:Pool")

    def __init__(self, worker: Any, beat_in_loop: bool = False, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.enabled = bool(beat_in_loop)
        if self.enabled and not getattr(worker, "use_eventloop", False):
            raise ValueError("--beat-in-loop needs the worker's event loop (a prefork or solo pool on Redis); "
                             "use --beat, or run `celery beat` on its own")
        self.service: beat.Service | None = None
        self.timer: Any = None
        self.tref: Any = None
        self.stopping = False

    def start(self, worker: Any) -> None:
        self.timer = worker.timer
        self.service = beat.Service(worker.app, scheduler_cls=worker.app.conf.beat_scheduler)
        log.info("beat: Starting (in this worker's event loop)")
        self.tref = self.timer.call_after(0.0, self.tick, priority=10)

    def tick(self) -> None:
        """One of beat's ticks: send what is due, then come back when the next row is due. Never raises
        (the timer would drop beat for good) and always comes back, unless the worker is stopping."""
        self.tref = None
        if self.stopping or self.service is None or threading.current_thread() is not threading.main_thread():
            return  # (a stopping pool's timer thread: beat is done)
        interval: float | None = TICK_ERROR_PAUSE_SECONDS
        try:
            close_old_connections()  # as around each task: a broken or old connection is not reused
            scheduler = self.service.scheduler
            scheduler.connect_retries = 1
            interval = scheduler.tick()
            if scheduler.should_sync():
                scheduler._do_sync()
        except Exception:
            log.exception("beat: a tick failed; trying again in %g s", TICK_ERROR_PAUSE_SECONDS)
            interval = TICK_ERROR_PAUSE_SECONDS
        finally:
            with contextlib.suppress(Exception):  # (closing cannot fail in a way worth stopping beat for)
                forget_sqlite_connections()
            if not self.stopping:
                self.tref = self.timer.call_after(max(0.0, interval or 0.0), self.tick, priority=10)

    def stop(self, worker: Any) -> None:
        """Save the schedule's last runs, as beat does when it stops."""
        self.stopping = True
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        if self.service is None or "scheduler" not in vars(self.service):
            return  # no tick made the scheduler: nothing to save
        try:
            self.service.sync()
        except Exception:
            log.warning("beat: could not save the schedule's last runs", exc_info=True)
        finally:
            forget_sqlite_connections()


def forget_sqlite_connections() -> None:
    """Close this thread's SQLite connections (a fork must not inherit one); others are left open."""
    if connection.vendor == "sqlite":
        connections.close_all()
