"""bans.watching: the firewall worker's own watch timer (inline with the solo pool, queued with a
process pool, off in any other worker) and the time limits it enforces itself for inline tasks.
The worker here is a stand-in with the attributes the step reads; the real worker runs it in
tests/e2e (test_faults and test_pipeline: solo, as runstack; test_kernel_truth: a process pool)."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.concurrency.solo import TaskPool as SoloPool
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone
from pytest_django import Settings

from bans import sync, tasks, watching
from bans.firewall.recording import RecordingBackend
from bans.models import Ban
from bans.services import new_ban
from tests.factories import make_jail


def worker(queues: list[str], pool: type) -> Any:
    return SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(
        consume_from={queue: None for queue in queues}))), pool_cls=pool, use_eventloop=True)


class FakeTimer:
    """The worker's event-loop timer, as far as the step uses it: what is scheduled, in how long."""

    def __init__(self) -> None:
        self.calls: list[SimpleNamespace] = []

    def call_after(self, delay: float, fun: Any, priority: int = 0) -> SimpleNamespace:
        tref = SimpleNamespace(delay=delay, fun=fun, cancelled=False)
        tref.cancel = lambda: setattr(tref, "cancelled", True)
        self.calls.append(tref)
        return tref

    def pending(self) -> list[float]:
        """Calls neither run (the step forgets a call when it runs: watch() is what runs) nor cancelled."""
        return [round(call.delay, 1) for call in self.calls if not call.cancelled and not getattr(call, "ran", False)]


class StubWatch:
    """bans.tasks.watch_firewall as the step calls it, answering `found`."""

    name, time_limit, soft_time_limit = "bans.tasks.watch_firewall", None, None

    def __init__(self, found: dict[str, int]) -> None:
        self.found = found

    def __call__(self, host: str) -> dict[str, int]:
        return self.found


class Notices:
    """Stands in for bans.firewall.netlink.RulesetChanges: `changed` is what the next drain finds."""

    changed = False
    broken = False

    def drain(self) -> bool:
        if self.broken:
            raise OSError(9, "Bad file descriptor")
        changed, self.changed = self.changed, False
        return changed

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


@pytest.fixture
def no_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    """The step installs the limits' signal handler and task signals: not in the test process."""
    monkeypatch.setattr(watching.InlineLimits, "install", classmethod(lambda cls: None))


def test_the_watch_runs_only_in_this_hosts_firewall_worker(settings: Settings, no_signals: None) -> None:
    settings.IPS_HOST_NAME = "local"
    assert not watching.FirewallWatch(worker(["celery"], PreforkPool)).enabled
    assert not watching.FirewallWatch(worker(["firewall.other"], SoloPool)).enabled
    solo = watching.FirewallWatch(worker(["firewall.local"], SoloPool))
    assert solo.enabled and solo.inline
    pooled = watching.FirewallWatch(worker(["firewall.local"], PreforkPool))
    assert pooled.enabled and not pooled.inline
    threaded = worker(["firewall.local"], SoloPool)
    threaded.use_eventloop = False  # a timer thread: the watch would run beside a task, so it is queued
    assert not watching.FirewallWatch(threaded).inline


@pytest.mark.django_db(transaction=True)  # the watch closes stale connections, as Celery does around tasks
@pytest.mark.usefixtures("this_host", "no_broker")
def test_the_inline_watch_puts_a_flushed_ruleset_back_and_survives_errors(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, no_signals: None,
        caplog: pytest.LogCaptureFixture) -> None:
    settings.IPS_HOST_NAME = "local"
    backend = RecordingBackend()
    monkeypatch.setattr(tasks, "backend", lambda: backend)
    monkeypatch.setattr(tasks, "_checked_generation", {})
    jail = make_jail("sshd")
    new_ban("sshd", "203.0.113.7/32", 3600, now=timezone.now().timestamp(), host="local", jail=jail,
            origin=Ban.Origin.JAIL)
    sync.apply_pending("local", backend)
    step = watching.FirewallWatch(worker(["firewall.local"], SoloPool))
    step.timer = FakeTimer()
    step.watch()
    backend.simulate_ruleset_flush()
    step.watch()
    assert {str(n) for n in backend.snapshot().get("sshd", {})} == {"203.0.113.7/32"}

    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(sync, "watch", broken)
    step.watch()  # logged, not raised: the worker's loop goes on
    assert "the firewall watch failed" in caplog.text


def busy_until(deadline: float) -> None:
    """Python code running (no sleep in C): what a signal handler interrupts."""
    while time.monotonic() < deadline:
        pass


def test_an_inline_task_gets_its_soft_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    task = SimpleNamespace(name="bans.tasks.sync_firewall", soft_time_limit=0.2, time_limit=None)
    previous = signal.signal(signal.SIGALRM, watching.InlineLimits._soft_limit_reached)
    try:
        started = time.monotonic()
        with pytest.raises(SoftTimeLimitExceeded), watching.InlineLimits.bounding(task):
            busy_until(started + 5)
        assert time.monotonic() - started < 1
        with watching.InlineLimits.bounding(task):
            pass  # returned in time: disarmed, nothing fires later
        time.sleep(0.3)
        watching.InlineLimits._soft_limit_reached(signal.SIGALRM, None)  # one already on its way: ignored
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_an_inline_task_past_its_hard_limit_ends_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    ended: list[int] = []
    monkeypatch.setattr(os, "_exit", ended.append)
    task = SimpleNamespace(name="bans.tasks.sync_firewall", soft_time_limit=None, time_limit=0.1)
    with watching.InlineLimits.bounding(task):
        time.sleep(0.3)  # stuck where no soft limit reaches
    assert ended == [watching.RESTART_STATUS]
    with watching.InlineLimits.bounding(task):
        pass
    time.sleep(0.2)
    assert ended == [watching.RESTART_STATUS]  # a task that returned in time is never ended


def test_the_hard_limit_keeps_one_thread_and_honours_an_earlier_deadline() -> None:
    ended: list[str] = []
    limit = watching.HardLimit(ended.append)
    limit.arm(60, "long")
    first = threading.enumerate()
    for _ in range(50):  # the watch every 2 s: no new thread each time
        limit.disarm()
        limit.arm(60, "long")
    assert threading.enumerate() == first
    limit.disarm()
    limit.arm(0.1, "short")  # earlier than the one the thread sleeps until: it is woken for it
    deadline = time.monotonic() + 5
    while not ended and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ended == ["short"]


def test_the_inline_watch_looks_when_the_kernel_says_something_changed(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, no_signals: None) -> None:
    """With the kernel's change notices, an idle worker looks every QUIET_WATCH_SECONDS, not every
    2 s; a change is looked at CHANGE_DELAY after its notice (at most once a CHANGE_SPACING), and
    bans waiting on time (COVERED, APPLYING) or a task that just ran bring back the 2 s clock."""
    settings.IPS_HOST_NAME = "local"
    found = {"checked": 0, "lost": 0, "strays": 0, "waiting": 0}
    monkeypatch.setattr(tasks, "watch_firewall", StubWatch(found))
    step = watching.FirewallWatch(worker(["firewall.local"], SoloPool))
    step.timer, notices = FakeTimer(), Notices()
    step.changes = notices  # type: ignore[assignment]  # Notices stands in for RulesetChanges (no netlink socket in a test)

    def look() -> None:  # what the timer does when a call is due
        if step.tref is not None:
            step.tref.ran = True
        step.watch()

    look()
    assert step.timer.pending() == [watching.QUIET_WATCH_SECONDS]
    step.on_change()  # a notice that drains to nothing (read already): no look
    assert step.timer.pending() == [watching.QUIET_WATCH_SECONDS]
    step.last_watch -= 60  # the last look was long ago
    notices.changed = True
    step.on_change()
    assert step.timer.pending() == [watching.CHANGE_DELAY]  # the sooner look replaces the quiet one
    look()
    notices.changed = True
    step.on_change()  # a second change right after a look: spaced
    assert 0.7 <= step.timer.pending()[0] <= watching.CHANGE_SPACING

    found["waiting"] = 1
    look()
    assert step.timer.pending() == [watching.WATCH_SECONDS]
    found["waiting"] = 0
    look()
    step.after_task()
    assert step.timer.pending() == [watching.WATCH_SECONDS]

    step.changes = None  # no notices (no nf_tables, IPS_FIREWALL=off): the 2 s clock
    look()
    assert step.timer.pending() == [watching.WATCH_SECONDS]

    step.hub = SimpleNamespace(remove_reader=lambda fd: None)
    step.changes = notices  # type: ignore[assignment]  # Notices stands in for RulesetChanges (no netlink socket in a test)
    notices.broken = True  # the socket fails: a look soon, then the 2 s clock, and the loop goes on
    step.last_watch -= 60
    step.on_change()
    assert step.changes is None and step.timer.pending() == [watching.CHANGE_DELAY]
