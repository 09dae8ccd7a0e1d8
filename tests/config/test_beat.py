"""config.beat.Scheduler: the database is asked whether the schedules changed at most every
CHANGES_EVERY_SECONDS, however often beat ticks; a change is still picked up after that."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks
from django_celery_beat.schedulers import DatabaseScheduler

from bans import periodic
from config import beat
from config.celery import app
from tests.paths import REPO
from tests.procfs import child_pids, holds_open, title

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


# --- guards: a scheduled task that says it has nothing to do is not sent --------------------------------


class Entry:
    """What the scheduler hands apply_entry (django-celery-beat's ModelEntry), reduced to what it reads."""

    def __init__(self, name: str, task: str, kwargs: dict[str, Any] | None = None) -> None:
        self.name, self.task, self.args, self.kwargs = name, task, (), kwargs or {}


def test_beat_skips_a_run_its_guard_says_is_needless_but_sends_one_at_least_every_max_skip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    answers: list[Any] = []
    asked: list[dict[str, Any]] = []

    def guard(**kwargs: Any) -> bool:
        asked.append(kwargs)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    @app.task(name="tests.config.guarded", beat_guard=staticmethod(guard))  # type: ignore[untyped-decorator]
    def guarded(shard: int) -> None: ...

    sent: list[str] = []
    monkeypatch.setattr(DatabaseScheduler, "apply_entry",
                        lambda self, entry, producer=None: sent.append(entry.name))
    scheduler = beat.Scheduler(app=app, lazy=True)
    entry = Entry("guarded row", "tests.config.guarded", {"shard": 3})

    scheduler.apply_entry(entry)  # the first send after beat starts is never skipped
    assert sent == ["guarded row"] and asked == []
    answers[:] = [False, True, RuntimeError("Redis is down")]
    for _ in range(3):
        clock[0] += 30
        scheduler.apply_entry(entry)
    assert asked == [{"shard": 3}] * 3  # the row's own arguments
    assert sent == ["guarded row"] * 3  # skipped once; sent when needed; sent when the guard failed
    assert scheduler.skipped == {"guarded row": 1}
    answers[:] = [False] * 100
    while clock[0] < 1090 + beat.GUARD_MAX_SKIP_SECONDS - 30:
        clock[0] += 30
        scheduler.apply_entry(entry)
    assert sent == ["guarded row"] * 3  # nothing to do: nothing sent...
    clock[0] += 30
    scheduler.apply_entry(entry)
    assert sent == ["guarded row"] * 4  # ...but once GUARD_MAX_SKIP_SECONDS have passed, it runs anyway
    unguarded = Entry("unguarded row", "bans.tasks.cleanup_history")
    scheduler.apply_entry(unguarded)
    scheduler.apply_entry(unguarded)
    assert sent[-2:] == ["unguarded row"] * 2


def test_every_scheduled_task_but_the_hourly_and_five_minute_ones_carries_a_guard() -> None:
    app.loader.import_default_modules()
    unguarded = {row.task for row in periodic.wanted("local", 2) if beat.guard_of(app.tasks[row.task]) is None}
    assert unguarded == {"bans.tasks.cleanup_history", "bans.tasks.reconcile_firewall"}


def test_beat_wakes_when_a_task_is_due_not_before() -> None:
    scheduler = beat.Scheduler(app=app, lazy=True)
    assert scheduler.adjust(2.5) == 2.5  # Celery's own wakes 10 ms early, then ticks until it is due
    assert scheduler.adjust(0) == 0 and scheduler.adjust(None) is None


# --- beat on a worker's event loop (runstack's watcher worker) -------------------------------------------


@pytest.mark.worker
def test_a_worker_with_beat_in_loop_sends_what_is_due_and_keeps_no_sqlite_connection_between_ticks(
        settings_db_env: dict[str, str], tmp_path: Path) -> None:
    """A real worker (real Redis) with --beat-in-loop and no beat process: an every-second row is sent
    again and again, its runs saved when the worker stops; on SQLite the worker's main process, which
    forks the pool's processes, holds the database file open only during a tick."""
    PeriodicTask.objects.all().delete()  # the migrations' rows would make noise; this row alone counts
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="every second", task="bans.tasks.cleanup_history", interval=every)
    log = tmp_path / "worker.log"
    redis_url = f"redis://127.0.0.1:6379/{os.environ.get('IPS_E2E_REDIS_DB', '15')}"
    with log.open("w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "--beat-in-loop",
                                   "--concurrency", "1", "--queues", "beat-in-loop-test", "--loglevel", "INFO",
                                   "--hostname", f"beat-in-loop-{os.getpid()}@%h"],
                                  cwd=REPO, env={**settings_db_env, "IPS_REDIS_URL": redis_url, "IPS_FIREWALL": "off"},
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "beat: Starting (in this worker's event loop)" not in log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        open_between_ticks = []
        for _ in range(20):  # 4 s: about four ticks
            time.sleep(0.2)
            open_between_ticks.append(holds_file(worker.pid, settings_db_env["DATABASE_URL"]))
        assert "celery beat" not in " ".join(title(pid) for pid in child_pids(worker.pid))  # no beat process
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
    assert PeriodicTask.objects.get(name="every second").total_run_count >= 3, log.read_text()
    if settings_db_env["DATABASE_URL"].startswith("sqlite:"):
        assert open_between_ticks.count(True) <= 2, open_between_ticks  # (a sample may land in a tick)


def holds_file(pid: int, url: str) -> bool:
    """Whether the process has the SQLite database of `url` open (False for PostgreSQL)."""
    return url.startswith("sqlite:///") and holds_open(pid, url.removeprefix("sqlite://"))


class RecordingTimer:
    """The worker's timer as LoopBeat uses it (call_after), recording instead of running."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def call_after(self, seconds: float, fun: Any, priority: int = 0) -> object:
        self.calls.append(seconds)
        return object()


class FailingScheduler:
    connect_retries: int | None = None

    def tick(self) -> float:
        raise ConnectionError("the broker is away")


def loop_beat_with(scheduler: FailingScheduler) -> tuple[beat.LoopBeat, RecordingTimer]:
    step = beat.LoopBeat.__new__(beat.LoopBeat)  # (its __init__ wants a worker; the tick needs none)
    step.timer, step.tref, step.stopping = RecordingTimer(), None, False
    step.service = type("Service", (), {"scheduler": scheduler})()
    return step, step.timer


def test_a_failed_tick_comes_back_after_a_pause_and_a_stopping_worker_ends_beat() -> None:
    # (the worker's timer is recorded here, not run: this is about what the tick asks of it)
    scheduler = FailingScheduler()
    step, timer = loop_beat_with(scheduler)
    step.tick()
    assert timer.calls == [beat.TICK_ERROR_PAUSE_SECONDS]  # not dropped: kombu's timer would forget it
    assert scheduler.connect_retries == 1  # a send never holds the loop in Celery's retry loop
    step.stopping = True
    step.tick()
    assert timer.calls == [beat.TICK_ERROR_PAUSE_SECONDS]


def test_a_tick_fired_from_another_thread_does_nothing() -> None:
    # a stopping prefork pool fires the loop's timers from a thread of its own
    step, timer = loop_beat_with(FailingScheduler())
    worker_thread = threading.Thread(target=step.tick)
    worker_thread.start()
    worker_thread.join()
    assert timer.calls == []
