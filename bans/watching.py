"""The firewall worker watches its own kernel, and bounds its own tasks when it runs them inline.

The watch (bans.sync.watch: has the kernel lost our bans, or does it hold strays?) runs every
WATCH_SECONDS. Beat used to send it as a message: every 2 s a publish, a receipt and a run in a
pool process, the largest part of an idle stack's CPU. Now the firewall worker times it itself,
with a timer of its own event loop (`FirewallWatch`, a worker bootstep):

- with the solo pool (as runstack starts it: one process, so one less in the stack), the timer runs
  the watch inline. The loop runs one thing at a time, so the watch never overlaps a task, which
  bans.sync.watch requires (bans being applied are then its own or a dead worker's), and a long
  task delays the next watch instead of piling them up. The loop also listens to the kernel's
  nftables change notices (bans.firewall.netlink.RulesetChanges): a change is looked at CHANGE_DELAY after
  its notice, and the clock runs at WATCH_SECONDS only while bans wait on time (COVERED behind a
  wider ban, APPLYING) or after a task; otherwise an idle worker looks every QUIET_WATCH_SECONDS.
  Without notices (no nf_tables, IPS_FIREWALL=off), every WATCH_SECONDS;
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
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from celery import bootsteps
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.db import close_old_connections

from bans import tasks
from bans.dispatch import firewall_queue
from bans.firewall import netlink

log = logging.getLogger(__name__)

WATCH_SECONDS = 2.0
# With the kernel's change notices: how long after one the watch looks (a burst of changes is one
# look), at most how often, and how often it looks when nothing changed and nothing waits on time
# (the safety net should a notice be missed; it also says the worker is alive: bans.status).
CHANGE_DELAY = 0.2
CHANGE_SPACING = 1.0
QUIET_WATCH_SECONDS = 30.0
RESTART_STATUS = 70  # watchers/supervise.py starts a child that ends with it again


def firewall_queue_consumed(worker: Any) -> str | None:
    """The firewall queue of this host, when `worker` consumes it."""
    queue = firewall_queue(settings.IPS_HOST_NAME)
    return queue if queue in (worker.app.amqp.queues.consume_from or {}) else None


def is_solo(worker: Any) -> bool:
    return str(getattr(worker.pool_cls, "__module__", "")).endswith(".solo")


class FirewallWatch(bootsteps.StartStopStep):  # type: ignore[misc]  # celery ships no type hints
    """The watch of this host's kernel, from the firewall worker's own event loop (see the module)."""

    label = "firewall watch"
    requires = ("celery.worker.components:Timer", "celery.worker.components:Hub")

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.queue = firewall_queue_consumed(worker)
        self.enabled = self.queue is not None
        self.inline = is_solo(worker) and bool(getattr(worker, "use_eventloop", False))
        self.timer: Any = None
        self.tref: Any = None
        self.due = 0.0  # monotonic time of the next inline watch
        self.last_watch = 0.0
        self.changes: netlink.RulesetChanges | None = None
        self.hub: Any = None
        if self.enabled and self.inline:
            InlineLimits.install()

    def start(self, worker: Any) -> None:
        self.timer = worker.timer
        if not self.inline:
            self.tref = self.timer.call_repeatedly(WATCH_SECONDS, self.send, priority=10)
            return
        self.hub = getattr(worker, "hub", None)
        self.changes = self.subscribe()
        task_postrun.connect(self.after_task, weak=False)
        self.schedule(WATCH_SECONDS)

    def stop(self, worker: Any) -> None:
        task_postrun.disconnect(self.after_task)
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        self.unsubscribe()

    def subscribe(self) -> netlink.RulesetChanges | None:
        """The kernel's change notices on the worker's event loop; None (watch every WATCH_SECONDS)
        where they cannot be had (no nf_tables, IPS_FIREWALL=off: the watch then says why, once)."""
        if self.hub is None or settings.IPS_FIREWALL != "nftables":
            return None
        try:
            changes = netlink.RulesetChanges()
        except OSError as exc:
            log.info("no nftables change notices (%s): the firewall is watched every %g s", exc, WATCH_SECONDS)
            return None
        self.hub.add_reader(changes.fileno(), self.on_change)
        return changes

    def schedule(self, delay: float) -> None:
        """The next watch in `delay` seconds, unless one is due sooner already."""
        due = time.monotonic() + delay
        if self.tref is not None and self.due <= due:
            return
        if self.tref is not None:
            self.tref.cancel()
        self.due = due
        self.tref = self.timer.call_after(delay, self.watch, priority=10)

    def on_change(self, *args: Any) -> None:
        """Something changed the ruleset (ours or anyone's): look soon, at most once a CHANGE_SPACING."""
        if self.changes is None:
            return
        try:
            changed = self.changes.drain()
        except OSError as exc:  # the socket failed: back to the 2 s clock rather than out of the event loop
            log.warning("nftables change notices stopped (%s): the firewall is watched every %g s", exc, WATCH_SECONDS)
            self.unsubscribe()
            changed = True
        if changed:
            self.schedule(max(CHANGE_DELAY, self.last_watch + CHANGE_SPACING - time.monotonic()))

    def unsubscribe(self) -> None:
        if self.changes is not None:
            with contextlib.suppress(Exception):
                self.hub.remove_reader(self.changes.fileno())
            self.changes.close()
            self.changes = None

    def after_task(self, *args: Any, **kwargs: Any) -> None:
        """A sync or reconcile ran: bans may now wait on time (COVERED, APPLYING); look on the fast clock."""
        self.schedule(WATCH_SECONDS)

    def watch(self) -> None:
        self.tref = None
        self.last_watch = time.monotonic()
        following = WATCH_SECONDS
        close_old_connections()  # as around each task
        try:
            with InlineLimits.bounding(tasks.watch_firewall):
                found = tasks.watch_firewall(settings.IPS_HOST_NAME)
            if self.changes is not None and not found.get("waiting"):
                following = QUIET_WATCH_SECONDS  # the kernel tells us of changes; nothing waits on time
        except tasks.UNAVAILABLE:
            pass  # said once per process, and on every page (bans.tasks.watched_backend)
        except Exception:
            log.exception("the firewall watch failed; trying again in %g s", WATCH_SECONDS)
        finally:
            close_old_connections()
            self.schedule(following)

    def send(self) -> None:
        try:
            tasks.watch_firewall.apply_async(kwargs={"host": settings.IPS_HOST_NAME}, queue=self.queue,
                                       expires=WATCH_SECONDS)
        except Exception as exc:  # Redis away: the next tick tries again, the worker reconnects meanwhile
            log.warning("the firewall watch could not be queued: %s", exc)


class HardLimit:
    """The hard limit's clock: one thread for the life of the process, armed and disarmed around each
    task. A thread started per task (threading.Timer) cost the idle firewall worker a thread every
    WATCH_SECONDS; this one sleeps until the earliest deadline it was given and is woken only when
    an earlier one arrives, so a watch every 2 s costs it no wake-up at all."""

    def __init__(self, on_expiry: Callable[[str], None]) -> None:
        self._on_expiry = on_expiry
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._name = ""
        self._sleeping_until: float | None = None  # None: until woken
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, name: str) -> None:
        with self._cond:
            self._deadline, self._name = time.monotonic() + seconds, name
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hard time limit", daemon=True)
                self._thread.start()
            elif self._sleeping_until is None or self._deadline < self._sleeping_until:
                self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None  # the thread finds it so when it wakes; no need to wake it now

    def _run(self) -> None:
        with self._cond:
            while True:
                if self._deadline is None:
                    self._sleeping_until = None
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left <= 0:
                    self._on_expiry(self._name)
                    self._deadline = None
                    continue
                self._sleeping_until = self._deadline
                self._cond.wait(left)


class InlineLimits:
    """Celery's soft and hard time limits for tasks run inline (the solo pool), from each task's own
    soft_time_limit and time_limit. One task at a time, in the main thread: one limit of each.
    An alarm that was already on its way when the task returned finds nothing armed and does
    nothing (raised there, it would fail Celery's bookkeeping or the worker's loop)."""

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
            _hard_limit.arm(float(task.time_limit), task.name)
        if task.soft_time_limit:
            cls._armed = True
            signal.setitimer(signal.ITIMER_REAL, float(task.soft_time_limit))

    @classmethod
    def disarm(cls) -> None:
        cls._armed = False  # first: an alarm arriving from here on is ignored
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            _hard_limit.disarm()

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

    @classmethod
    def _on_prerun(cls, sender: Any = None, **kwargs: Any) -> None:
        if sender is not None:
            cls.arm(sender)

    @classmethod
    def _on_postrun(cls, sender: Any = None, **kwargs: Any) -> None:
        cls.disarm()



def end_the_worker(name: str) -> None:
    """The hard limit passed: the task did not return even after its soft limit. From the limit's
    thread (the main one is stuck), straight to the file descriptor: the logging module's lock may
    be held by the stuck thread."""
    message = (f"CRITICAL {name} did not return within its hard time limit, even after its soft limit: "
               f"ending the firewall worker to be started again (bans it was applying are settled then)\n")
    with contextlib.suppress(OSError):
        os.write(2, message.encode())
    os._exit(RESTART_STATUS)


_hard_limit = HardLimit(end_the_worker)
