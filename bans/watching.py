"""The firewall worker watches its own kernel, and bounds its own tasks when it runs them inline.

The watch (bans.sync.watch: has the kernel lost our bans, or does it hold strays?) runs every
WATCH_SECONDS. Beat used to send it as a message: every 2 s a publish, a receipt and a run in a
pool process, the largest part of an idle stack's CPU. Now the firewall worker times it itself,
with a timer of its own event loop (`FirewallWatch`, a worker bootstep):

- with the solo pool (as runstack starts it: one process, so one less in the stack), the timer runs
  the watch inline. The loop runs one thing at a time, so the watch never overlaps a task, which
  bans.sync.watch requires (bans being applied are then its own or a dead worker's), and a long
  task delays the next watch instead of piling them up;
- with a process pool (a worker started by hand), the timer sends the watch to the worker's own
  queue, expiring after WATCH_SECONDS, as beat did: with --concurrency 1 its one pool process
  keeps the tasks and the watch in order (the firewall worker must run one task at a time).
- without an event loop (a broker Celery cannot wait on asynchronously), the timer is a thread of
  its own: the watch is queued then too, never run beside a task.

The solo pool runs tasks in the worker's main thread, where Celery enforces no time limits, so
`InlineLimits` does it for the firewall tasks: the soft limit by SIGALRM (SoftTimeLimitExceeded in
the task, which gives up as at any other error), the hard one by ending the process with
RESTART_STATUS should the task not return even then: runstack's supervisor starts that worker
again (watchers/supervise.py), as systemd's Restart=always does for the deploy unit, and the bans
it was applying are settled by the next one's watch. Every firewall step has its own bound
already (IPS_FIREWALL_TIMEOUT_SECONDS); these are the last word.

Registered on the worker's blueprint in config/celery.py; enabled only in a worker consuming this
host's firewall queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from celery import bootsteps
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)

WATCH_SECONDS = 2.0
RESTART_STATUS = 70  # watchers/supervise.py starts a child that ends with it again


def firewall_queue_consumed(worker: Any) -> str | None:
    """The firewall queue of this host, when `worker` consumes it."""
    from bans.tasks import firewall_queue

    queue = firewall_queue(settings.IPS_HOST_NAME)
    return queue if queue in (worker.app.amqp.queues.consume_from or {}) else None


def is_solo(worker: Any) -> bool:
    return str(getattr(worker.pool_cls, "__module__", "")).endswith(".solo")


class FirewallWatch(bootsteps.StartStopStep):  # type: ignore[misc]  # celery ships no type hints
    """The watch every WATCH_SECONDS, from the firewall worker's own event loop (see the module)."""

    label = "firewall watch"
    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.queue = firewall_queue_consumed(worker)
        self.enabled = self.queue is not None
        self.inline = is_solo(worker) and bool(getattr(worker, "use_eventloop", False))
        self.tref: Any = None
        if self.enabled and self.inline:
            InlineLimits.install()

    def start(self, worker: Any) -> None:
        self.tref = worker.timer.call_repeatedly(WATCH_SECONDS, self.watch if self.inline else self.send, priority=10)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def watch(self) -> None:
        from bans.tasks import UNAVAILABLE, watch_firewall

        close_old_connections()  # as Celery does around each task
        try:
            with InlineLimits.bounding(watch_firewall):
                watch_firewall(settings.IPS_HOST_NAME)
        except UNAVAILABLE:
            pass  # said once per process, and on every page (bans.tasks.watched_backend)
        except Exception:
            log.exception("the firewall watch failed; trying again in %g s", WATCH_SECONDS)
        finally:
            close_old_connections()

    def send(self) -> None:
        from bans.tasks import watch_firewall

        try:
            watch_firewall.apply_async(kwargs={"host": settings.IPS_HOST_NAME}, queue=self.queue,
                                       expires=WATCH_SECONDS)
        except Exception as exc:  # Redis away: the next tick tries again, the worker reconnects meanwhile
            log.warning("the firewall watch could not be queued: %s", exc)


class InlineLimits:
    """Celery's soft and hard time limits for tasks run inline (the solo pool), from each task's own
    soft_time_limit and time_limit. One task at a time, in the main thread: one timer of each.
    An alarm that was already on its way when the task returned finds nothing armed and does
    nothing (raised there, it would fail Celery's bookkeeping or the worker's loop)."""

    _hard: threading.Timer | None = None
    _armed = False

    @classmethod
    def install(cls) -> None:
        signal.signal(signal.SIGALRM, cls._soft_limit_reached)
        task_prerun.connect(cls._on_prerun, weak=False)
        task_postrun.connect(cls._on_postrun, weak=False)

    @classmethod
    def arm(cls, task: Any) -> None:
        cls.disarm()  # never two of either
        if task.time_limit:
            cls._hard = threading.Timer(float(task.time_limit), cls._hard_limit_reached, args=(task.name,))
            cls._hard.daemon = True
            cls._hard.start()
        if task.soft_time_limit:
            cls._armed = True
            signal.setitimer(signal.ITIMER_REAL, float(task.soft_time_limit))

    @classmethod
    def disarm(cls) -> None:
        cls._armed = False  # first: an alarm arriving from here on is ignored
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            hard, cls._hard = cls._hard, None
            if hard is not None:
                hard.cancel()

    @classmethod
    @contextlib.contextmanager
    def bounding(cls, task: Any) -> Iterator[None]:
        """`with InlineLimits.bounding(task):` the limits around a call that is not a Celery task run."""
        cls.arm(task)
        try:
            yield
        finally:
            cls.disarm()

    @classmethod
    def _soft_limit_reached(cls, signum: int, frame: FrameType | None) -> None:
        if cls._armed:
            cls._armed = False
            raise SoftTimeLimitExceeded("soft time limit reached")

    @staticmethod
    def _hard_limit_reached(name: str) -> None:
        # From this thread (the main one is stuck), straight to the file descriptor: the logging
        # module's lock may be held by the stuck thread.
        message = (f"CRITICAL {name} did not return within its hard time limit, even after its soft limit: "
                   f"ending the firewall worker to be started again (bans it was applying are settled then)\n")
        with contextlib.suppress(OSError):
            os.write(2, message.encode())
        os._exit(RESTART_STATUS)

    @classmethod
    def _on_prerun(cls, sender: Any = None, **kwargs: Any) -> None:
        if sender is not None:
            cls.arm(sender)

    @classmethod
    def _on_postrun(cls, sender: Any = None, **kwargs: Any) -> None:
        cls.disarm()

