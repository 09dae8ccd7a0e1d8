"""Following log sources with low latency: one long-running loop per shard of the enabled jails.

A follower runs inside a watcher worker (Celery task `watchers.tasks.follow`). It follows the
sources of the enabled jails whose id % shards == shard, sleeps in inotify (or polls, per the jail's
backend), and reads a changed source within milliseconds of the write, in this process, by calling
`services.read_source`: no Celery message per line, nor per read. One follower reads its sources
one after another, in order; the shards run in parallel in other worker processes.

What keeps it honest:

- every source is also read every SAFETY_READ_SECONDS, whatever the watcher said (inotify cannot
  see everything: network file systems, a log renamed away and still written to), and journal
  sources are also polled every POLL_SECONDS (the only way where inotify is unavailable);
- the jails are re-read as soon as one is added, edited or deleted (checked every RESYNC_SECONDS
  with one query), when inotify sees a file nobody follows yet, and every FULL_RESYNC_SECONDS
  anyway (new files matching a polled glob); a changed filter is recompiled by read_source itself;
- a Redis lease (SET NX PX, renewed) lets only one follower per shard run anywhere; a killed
  follower's shard is free again after LEASE_TTL_SECONDS, and beat's schedule starts a new one;
- the follower ends after `lease_seconds` (the task re-enqueues itself), so Celery redelivery,
  code upgrades and worker restarts never wait for an endless task; it also ends at once when its
  worker shuts down (`ShutdownPipe`), when it gets SIGTERM (`sigterm_pipe`) or its parent is gone.

The journal: a follower with journal sources also watches the journal's directories with inotify
(watchers.journal.watch_paths: /var/log/journal, /run/log/journal and their machine-id
subdirectories), as fail2ban's systemd backend does through sd_journal_wait. Any change there wakes
every journal source, each read from its cursor by one journalctl. journald itself signals new
entries 250-500 ms after it wrote them (see watchers/journal.py), so that is the wake's latency,
against up to POLL_SECONDS without it.

Pacing (figures from bench/latency.py, see bench/README.md): a quiet source is read the moment it
changes; a busy one at most every MIN_READ_INTERVAL_SECONDS (a log written line by line is not read
once per line), a journal source at most every JOURNAL_MIN_READ_INTERVAL_SECONDS (one journalctl
each); a read is bounded so it lasts about READ_TARGET_SECONDS (its bans reach the firewall when it
commits); on SQLite the follower rests between reads so other writers get the lock.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import resource
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import redis
from django import db
from django.conf import settings

from bans import hostaddrs
from jails.models import Jail, jails_on, logpath_on
from watchers import inotify, journal, services
from watchers.lease import LEASE_TTL_SECONDS, RENEW_SECONDS, Lease, broker_redis, in_shard, lease_key
from watchers.models import LogSource

log = logging.getLogger(__name__)

DEFAULT_SHARDS = 2
DEFAULT_LEASE_SECONDS = 300
# Under Redis' visibility timeout (1 h): a running follower's message is never redelivered to another.
MAX_LEASE_SECONDS = 1800
# How long a worker that starts waits for each of its followers' leases: a follower killed with its
# worker holds its lease until the TTL runs out.
START_WAIT_SECONDS = LEASE_TTL_SECONDS + RENEW_SECONDS
RESYNC_SECONDS = 3.0  # how often the follower asks whether a jail was added, edited or deleted (one query)
FULL_RESYNC_SECONDS = 30.0  # and re-reads every jail and source anyway (new files of a polled glob)
ADDRESSES_SECONDS = 30.0  # this host's own addresses (bans.hostaddrs: netlink and the resolver), re-read this often
SAFETY_READ_SECONDS = 2.0  # every source is read at least this often (the cadence beat used to poll at)
POLL_SECONDS = 1.0  # polling backend and journal sources (fail2ban's polling sleeps 1 s too)
UNKNOWN_RESYNC_SECONDS = 1.0  # a file nobody follows yet changed: re-read the jails, at most this often
# A source that changes again this soon after a read is read once this much time has passed since
# (see Follower.not_too_soon); a quiet source is read at once.
MIN_READ_INTERVAL_SECONDS = 0.025
# A journal source costs one journalctl per read: 5-12 ms here (5.5 ms of CPU), from 1,000 entries in
# one file to 200,000 in three (135 MiB); more on a host with many archived files. On a busy host the
# journal changes all the time: each file signals a change at most every 250-500 ms (journald's own
# timer), but there are several (system, user-N, a rotation). 250 ms between reads bounds the cost to
# 4 journalctl per second per source (about 2% of a core) where 100 ms would allow 10, and it costs
# no latency: journald gathers entries for 250-500 ms before it says anything. Measured with a
# journal changing every 2 ms: one read per 250 ms, and the follower asleep in between.
JOURNAL_MIN_READ_INTERVAL_SECONDS = 0.25
# SQLite has one writer, and the others wait by polling (sleeping up to 100 ms between tries, no
# queue): a follower reading back to back under a steady stream holds the lock nearly all the time
# and the firewall worker's writes waited seconds (bench/latency.py). On SQLite a follower rests after
# its reads as long as their transactions held the lock, so another writer finds the lock free half
# the time; at most MAX_REST_SECONDS, which is longer than a waiter's sleep, so it gets its turn after
# a long read too. The rest ends just before the next transaction begins: reading and matching hold
# no lock, so the next read's lines are read and matched during it (a flood's follower otherwise
# slept about 8% of its time).
SQLITE_REST_RATIO = 1.0
MAX_REST_SECONDS = 0.12
# A read is one transaction, and its bans reach the firewall when it commits: a follower that fell
# behind (a ban storm) must not read megabytes in one go. The bytes per read adapt, per source, so a
# read lasts about READ_TARGET_SECONDS: fewer bytes of lines that carry failures (database work),
# more of lines that do not. A line longer than a read is read whole all the same (read_new_lines);
# one longer than IPS_MAX_LINE_BYTES is skipped whole. At most MAX_READ_BYTES: a read's lines and
# what is made of them are the follower's peak memory (about 10 MB per MB read). Measured on bursts of
# 200,000 lines (bench/pipeline.py): 2 MB reads against 8 MB gave the same lines/s on sshd and Apache
# logs (which read 4-8 MB when allowed), the stack's peak 32 MB lower, 16% more CPU (more, smaller
# transactions and firewall syncs); a flood's reads last their second at about 2 MB anyway.
READ_TARGET_SECONDS = 1.0
MIN_READ_BYTES = 16 << 10
FIRST_READ_BYTES = 256 << 10
MAX_READ_BYTES = 2 << 20
MIN_FOLLOW_SECONDS = 30.0  # a follower never hands over for its memory sooner (Follower.grew_too_much)
ERROR_PAUSE_SECONDS = 1.0  # after an unexpected error, before trying again (bounded by the deadline)

Reader = Callable[..., services.ReadReport]


class Outcome(enum.StrEnum):
    TIME_UP = "time up"  # hand over: the task re-enqueues itself
    GREW = "grew past the memory limit"  # hand over, as TIME_UP, and the pool replaces this process
    LEASE_LOST = "lease lost"  # another follower owns the shard now
    BUSY = "busy"  # another follower held the shard already
    STOPPING = "worker stopping"
    DECLINED = "declined"  # the worker has too few processes to give one to a follower


# --- knowing when the worker stops ------------------------------------------------------------------


class ShutdownPipe:
    """Tells a worker's pool processes that the worker is shutting down (or died), within milliseconds.

    Celery's warm shutdown waits for running tasks and tells the pool processes nothing, so a follower
    would hold the worker up for the rest of its lease. The worker's main process makes a pipe before
    forking its pool (`open`, from the worker_init signal); each pool process closes its copy of the
    write end (`forget_writer`, worker_process_init); the main process closes the last one when it
    starts shutting down (`close_writer`, worker_shutting_down) or when it dies. The read end then
    reads EOF: a follower polls it with its inotify descriptors and stops."""

    def __init__(self) -> None:
        self.read_fd: int | None = None
        self.write_fd: int | None = None
        self.owner_pid = 0

    def open(self) -> None:
        if self.read_fd is None:
            self.read_fd, self.write_fd = os.pipe()
            self.owner_pid = os.getpid()

    def forget_writer(self) -> None:
        """In a pool process: only the main process may keep the pipe open (a solo pool IS the main process)."""
        if self.write_fd is not None and os.getpid() != self.owner_pid:
            os.close(self.write_fd)
            self.write_fd = None

    def close_writer(self) -> None:
        if self.write_fd is not None and os.getpid() == self.owner_pid:
            os.close(self.write_fd)
            self.write_fd = None

    def stopping(self) -> bool:
        if self.read_fd is None:
            return False
        readable, _, _ = select.select([self.read_fd], [], [], 0)
        return bool(readable)


SHUTDOWN = ShutdownPipe()


@contextmanager
def sigterm_pipe() -> Iterator[int | None]:
    """A descriptor that turns readable when this process gets SIGTERM while the block runs.

    systemd stops a service by sending SIGTERM to all its processes: a pool process running a follower
    then releases its shard and returns, instead of dying with it (its lease would keep the shard from
    every other reader for LEASE_TTL_SECONDS). The previous handler is put back afterwards. None outside
    the main thread, where Python cannot set a handler."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def note(signum: int, frame: FrameType | None) -> None:
        with suppress(OSError):  # the pipe is full: it is readable already
            os.write(write_fd, b"x")

    previous = signal.signal(signal.SIGTERM, note)
    try:
        yield read_fd
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(read_fd)
        os.close(write_fd)


# --- the follower ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Followed:
    """One source as the follower knows it."""

    source_id: int
    jail_id: int
    path: str  # absolute; empty for the journal
    group: str  # which watcher tells us about it: a backend name, or JOURNAL


JOURNAL = "journal"


def rest_ratio_for(vendor: str) -> float:
    return SQLITE_REST_RATIO if vendor == "sqlite" else 0.0


def jails_stamp() -> tuple[Any, ...]:
    """Changes whenever a jail is added, deleted or saved (Jail.updated_at is auto_now). An idle
    follower asks every RESYNC_SECONDS: in plain SQL, since building the ORM's aggregate cost 15
    times the query itself (0.4 ms against 25 us), most of an idle follower's CPU."""
    quote = db.connection.ops.quote_name
    table, column = quote(Jail._meta.db_table), quote(Jail._meta.get_field("updated_at").attname)
    with db.connection.cursor() as cursor:
        # S608: names from the model's metadata, quoted by the backend; no value is interpolated
        cursor.execute(f"SELECT COUNT(*), MAX({column}) FROM {table}")  # noqa: S608
        return tuple(cursor.fetchone())


def watcher_group(jail: Jail) -> str:
    """fail2ban's backend names, reduced to the watchers that serve them (options in brackets ignored)."""
    name = jail.backend.strip().lower().partition("[")[0].strip()
    if name.startswith("systemd"):
        return JOURNAL
    return "inotify" if name == "pyinotify" else name


@dataclass
class Follower:
    """Follows the sources of one shard; `run` until a deadline, or drive it with `start` and `step`."""

    shard: int
    shards: int
    reader: Reader = services.read_source
    stop_fds: tuple[int, ...] = ()  # readable (or EOF): stop now
    poll_seconds: float = POLL_SECONDS
    safety_seconds: float = SAFETY_READ_SECONDS
    resync_seconds: float = RESYNC_SECONDS
    min_read_interval: float = MIN_READ_INTERVAL_SECONDS
    journal_min_read_interval: float = JOURNAL_MIN_READ_INTERVAL_SECONDS
    # read when the follower is made, so that a test may point it at a directory of its own
    journal_directories: tuple[str, ...] = field(default_factory=lambda: journal.JOURNAL_DIRECTORIES)
    rest_ratio: float = field(default_factory=lambda: rest_ratio_for(db.connection.vendor))
    sources: dict[int, Followed] = field(default_factory=dict)
    by_path: dict[str, set[int]] = field(default_factory=dict)
    watchers: dict[str, inotify.Watcher] = field(default_factory=dict)
    patterns: dict[str, list[str]] = field(default_factory=dict)
    journal_watcher: inotify.DirectoryWatcher | None = None  # while some source reads the journal
    journal_watched: list[str] = field(default_factory=list)  # what it watches (watchers.journal.watch_paths)
    journal_unwatchable: str = ""  # why inotify cannot watch the journal (it is then only polled)
    backlog: set[int] = field(default_factory=set)
    last_read: dict[int, float] = field(default_factory=dict)  # source -> when its last read started
    deferred: dict[int, float] = field(default_factory=dict)  # source -> when it may be read again
    read_bytes: dict[int, int] = field(default_factory=dict)  # source -> the most its next read takes
    # source -> ((device, inode, size, mtime_ns) of its file when a read reached its end, when)
    quiet: dict[int, tuple[tuple[int, int, int, int], float]] = field(default_factory=dict)
    full_resync_seconds: float = FULL_RESYNC_SECONDS
    own_addresses: list[str] = field(default_factory=list)
    jails_seen: tuple[Any, ...] | None = None  # jails_stamp() at the last full resync
    next_resync: float = 0.0
    next_full_resync: float = 0.0
    next_poll: float = 0.0
    next_safety: float = 0.0
    last_unknown_resync: float = 0.0
    rest_until: float = 0.0
    stop_requested: bool = False
    # the peak RSS (KiB, ru_maxrss) past which the follower hands over once its backlog is read, so that
    # the pool replaces its process (Celery's worker_max_memory_per_child, the same limit); 0: never
    memory_limit_kb: int = field(default_factory=lambda: int(settings.CELERY_WORKER_MAX_MEMORY_PER_CHILD or 0))
    started_at: float = field(default_factory=time.monotonic)

    # --- the loop

    def run(self, deadline: float, lease: Lease | None = None) -> Outcome:
        """Follow until `deadline` (time.monotonic()), the lease is lost or the worker stops."""
        parent = os.getppid()
        try:
            self.start()
            while True:
                if self.stop_requested or os.getppid() != parent:
                    return Outcome.STOPPING
                if time.monotonic() >= deadline:
                    return Outcome.TIME_UP
                if lease is not None and not lease.keep():
                    return Outcome.LEASE_LOST
                if self.grew_too_much():
                    return Outcome.GREW
                self.guarded_step(deadline)
        finally:
            self.close()

    def grew_too_much(self) -> bool:
        """Whether this process has held more than the pool's memory limit, with nothing left to read.

        A flood leaves a follower's process some 50 MB bigger for good (memory Python's and the C
        allocator keep after the reads are done, not live objects). Handing over then gives it back:
        the pool replaces a process past worker_max_memory_per_child when its task returns, and the
        next follower starts in a fresh fork. Not within MIN_FOLLOW_SECONDS of starting, so a limit
        set below a fresh process's size cannot make followers hand over in a loop."""
        if not self.memory_limit_kb or self.backlog or time.monotonic() - self.started_at < MIN_FOLLOW_SECONDS:
            return False
        return peak_rss_kb() > self.memory_limit_kb

    def guarded_step(self, deadline: float) -> None:
        """One step; an unexpected error (the database went away...) is logged and retried later,
        it does not end the follower (its sources would go unread until beat restarted it)."""
        try:
            self.step(max(0.0, deadline - time.monotonic()))
        except Exception:
            log.exception("follow shard %d/%d: unexpected error; retrying", self.shard, self.shards)
            db.connection.close()  # a broken connection is reopened by the next query
            self.pause(min(ERROR_PAUSE_SECONDS, max(0.0, deadline - time.monotonic())))

    def start(self) -> None:
        """Find the sources and read them all (what was written while nobody followed: catching up,
        as a backlog is, so failures keep their own time and those older than findtime do not count)."""
        self.resync()
        self.backlog |= set(self.sources)
        self.read(set(self.sources))
        now = time.monotonic()
        self.next_safety = now + self.safety_seconds
        self.next_poll = now + self.poll_seconds

    def step(self, longest: float) -> set[int]:
        """Wait at most `longest` seconds for a change, then read what changed; returns the sources read."""
        if time.monotonic() >= self.next_resync:
            self.backlog |= self.resync(changed_only=True)  # new sources are read at once
        now = time.monotonic()
        due = min(self.next_safety, self.next_resync, self.next_poll if self.polls() else self.next_safety,
                  min(self.deferred.values(), default=self.next_safety))
        timeout = 0.0 if self.backlog else max(0.0, min(longest, due - now))
        changed, journal_changed = self.wait(timeout)
        now = time.monotonic()
        if now >= self.next_safety:
            # the safety net: every source, whatever the watchers said (but not a file whose
            # identity, size and time show it has not changed since a read reached its end)
            self.next_safety = now + self.safety_seconds
            return self.read({source_id for source_id in self.sources if not self.unchanged(source_id, now)})
        wanted = self.sources_of(changed)
        if journal_changed:
            wanted |= self.journal_woken(journal_changed)
        if self.polls() and now >= self.next_poll:
            self.next_poll = now + self.poll_seconds
            wanted |= self.sources_of(self.poll_watchers())
            wanted |= self.journal_sources()
        return self.read(self.backlog | self.not_too_soon(wanted, now))

    def not_too_soon(self, wanted: set[int], now: float) -> set[int]:
        """The sources to read now: a source read less than `min_read_interval` ago waits for the rest
        of it (and is then read once for every write in between). A log written line by line would
        otherwise be read once per line: under a steady stream each read's fixed cost (a transaction,
        the file's identity checks) would outweigh its lines, and the reader's back-to-back write
        transactions would starve every other writer of an SQLite database."""
        for source_id in wanted:
            followed_source = self.sources.get(source_id)
            interval = (self.journal_min_read_interval if followed_source and followed_source.group == JOURNAL
                        else self.min_read_interval)
            not_before = self.last_read.get(source_id, -math.inf) + interval
            self.deferred[source_id] = min(self.deferred.get(source_id, math.inf), not_before)
        ready = {source_id for source_id, not_before in self.deferred.items() if not_before <= now}
        for source_id in ready:
            del self.deferred[source_id]
        return ready

    def polls(self) -> bool:
        """Whether some source is only known to change by looking (polling backend, the journal)."""
        return any(not hasattr(w, "fileno") for w in self.watchers.values()) or any(
            f.group == JOURNAL for f in self.sources.values())

    def read(self, source_ids: set[int]) -> set[int]:
        """Read each source in turn; one whose backlog is not finished is read again without waiting."""
        self.backlog &= set(self.sources)
        wanted = sorted(source_ids & set(self.sources))
        if not wanted:
            return set()
        if self.journal_watcher is not None and any(self.sources[i].group == JOURNAL for i in wanted):
            # the journal's changes so far are this read's: they must not wake the next one too
            self.journal_woken(self.journal_watcher.wait(0))
        writing = 0.0
        done = set()
        for source_id in wanted:
            self.last_read[source_id] = time.monotonic()
            self.deferred.pop(source_id, None)
            report = self.reader(source_id, own_addresses=self.own_addresses,
                                 max_bytes=self.read_bytes.get(source_id, FIRST_READ_BYTES),
                                 backlog=source_id in self.backlog, wait_turn=self.wait_turn)
            self.adapt(source_id, report, time.monotonic() - self.last_read[source_id])
            if report.more:
                self.backlog.add(source_id)
            else:
                self.backlog.discard(source_id)
            self.note_quiet(source_id, report)
            writing += report.write_seconds
            done.add(source_id)
        # rest for as long as the database was held (not the reading and matching: no lock then); a
        # read that wrote nothing (no new line, an error) leaves a rest not yet taken as it was
        self.rest_until = max(self.rest_until, time.monotonic() + min(MAX_REST_SECONDS, writing * self.rest_ratio))
        return done

    def wait_turn(self) -> None:
        """The rest after the last read's transactions (rest_until), taken by the reader just before
        its own transaction begins."""
        self.pause(self.rest_until - time.monotonic())

    def note_quiet(self, source_id: int, report: services.ReadReport) -> None:
        """Remember the file's (device, inode, size, mtime) when a read reached its end and the saved
        position is in that very file: until one of them changes, a safety read has nothing to find.
        Not after a rotation whose old file is still being drained (the position is in another file),
        which is what the safety net is for."""
        followed_source = self.sources.get(source_id)
        self.quiet.pop(source_id, None)
        if followed_source is None or not followed_source.path or report.more or report.position is None:
            return
        try:
            st = os.stat(followed_source.path)
        except OSError:
            return
        device, inode, offset = report.position
        if (st.st_dev, st.st_ino, st.st_size) == (device, inode, offset):
            self.quiet[source_id] = ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), time.monotonic())

    def unchanged(self, source_id: int, now: float) -> bool:
        """Whether a file source is as its last read left it (read anyway once a minute: the read
        notes that the source is still followed, LogSource.last_read_at)."""
        known = self.quiet.get(source_id)
        followed_source = self.sources.get(source_id)
        if known is None or followed_source is None or now - known[1] >= services.IDLE_TOUCH_SECONDS:
            return False
        try:
            st = os.stat(followed_source.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == known[0]

    def adapt(self, source_id: int, report: services.ReadReport, took: float) -> None:
        self.read_bytes[source_id] = next_read_bytes(self.read_bytes.get(source_id, FIRST_READ_BYTES),
                                                     report.more, took)

    def pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        readable, _, _ = select.select(list(self.stop_fds), [], [], seconds)
        self.stop_requested = self.stop_requested or bool(readable)

    def close(self) -> None:
        for watcher in self.watchers.values():
            watcher.close()
        self.watchers.clear()
        self.update_journal_watcher(False)

    # --- waiting

    def wait(self, timeout: float) -> tuple[set[str], set[str]]:
        """Paths inotify saw change, of the logs and of the journal, waiting at most `timeout` seconds
        (woken within milliseconds)."""
        poller = select.poll()
        for watcher in self.watchers.values():
            fileno = getattr(watcher, "fileno", None)
            if fileno is not None:
                poller.register(fileno(), select.POLLIN)
        journal_watcher = self.journal_watcher if self.journal_waits() else None
        if journal_watcher is not None:
            poller.register(journal_watcher.fileno(), select.POLLIN)
        for stop_fd in self.stop_fds:
            poller.register(stop_fd, select.POLLIN)
        # poll() takes milliseconds: round up, or a short timeout becomes a busy loop
        ready = poller.poll(math.ceil(timeout * 1000))
        if any(fd in self.stop_fds for fd, _ in ready):
            self.stop_requested = True
        changed: set[str] = set()
        for watcher in self.watchers.values():
            if hasattr(watcher, "fileno"):
                changed |= watcher.wait(0)
        # wait(0) also watches a journal directory that did not exist before, and reports its names
        journal_changed = journal_watcher.wait(0) if journal_watcher is not None else set()
        return changed, journal_changed

    def journal_waits(self) -> bool:
        """Whether a change in the journal would make a read happen sooner. Not while every journal
        source already waits for its next read (not_too_soon): on a busy host the journal changes
        several times a second, and each change would wake the follower for nothing. Its events wait
        in the kernel's queue meanwhile, and that read takes them (see `read`)."""
        return self.journal_watcher is not None and any(
            f.group == JOURNAL and f.source_id not in self.deferred for f in self.sources.values())

    def poll_watchers(self) -> set[str]:
        changed: set[str] = set()
        for watcher in self.watchers.values():
            if not hasattr(watcher, "fileno"):
                changed |= watcher.wait(0)
        return changed

    def sources_of(self, paths: set[str]) -> set[int]:
        """The sources of the changed paths; a path nobody follows (a new file matching a glob) makes
        the jails be read again first."""
        unknown = {path for path in paths if os.path.abspath(path) not in self.by_path}
        now = time.monotonic()
        if unknown and now - self.last_unknown_resync >= UNKNOWN_RESYNC_SECONDS:
            self.last_unknown_resync = now
            self.backlog |= self.resync()
        found: set[int] = set()
        for path in paths:
            found |= self.by_path.get(os.path.abspath(path), set())
        return found

    def journal_sources(self) -> set[int]:
        return {f.source_id for f in self.sources.values() if f.group == JOURNAL}

    def journal_woken(self, paths: set[str]) -> set[int]:
        """The journal changed: every journal source may have something new (journalctl finds out).
        A new name in a journal directory itself (journald started, a new machine id) is a
        subdirectory to watch from now on."""
        tops = {os.path.abspath(directory) for directory in self.journal_directories}
        if any(os.path.dirname(path) in tops for path in paths):
            self.update_journal_watcher(True)
        return self.journal_sources()

    # --- which sources

    def resync(self, *, changed_only: bool = False) -> set[int]:
        """Re-read the shard's enabled jails and their sources; returns the sources new to us.
        `changed_only` (the periodic check): only if a jail was added, edited or deleted since the last
        re-read, or FULL_RESYNC_SECONDS have passed; an idle follower then costs one query."""
        now = time.monotonic()
        self.next_resync = now + self.resync_seconds
        # for every read until the next resync, not once per read; read afresh at most this often
        self.own_addresses = hostaddrs.addresses(max_age=ADDRESSES_SECONDS)
        stamp = jails_stamp()  # before the jails are read: an edit made meanwhile shows next time
        if changed_only and stamp == self.jails_seen and now < self.next_full_resync:
            return set()
        self.jails_seen, self.next_full_resync = stamp, now + self.full_resync_seconds
        sources: dict[int, Followed] = {}
        patterns: dict[str, list[str]] = {}
        host = settings.IPS_HOST_NAME
        for jail in jails_on(host).filter(enabled=True).order_by("pk"):
            if not in_shard(jail.pk, self.shard, self.shards):
                continue
            group = watcher_group(jail)
            for source in services.sync_sources(jail, host):
                path = os.path.abspath(source.path) if source.kind == LogSource.Kind.FILE else ""
                sources[source.pk] = Followed(source.pk, jail.pk, path, group)
            if group != JOURNAL:
                patterns.setdefault(group, []).extend(os.path.abspath(p) for p in logpath_on(jail, host))
        new = set(sources) - set(self.sources)
        self.sources = sources
        self.by_path = {}
        for followed_source in sources.values():
            if followed_source.path:
                self.by_path.setdefault(followed_source.path, set()).add(followed_source.source_id)
        self.backlog &= set(sources)
        self.deferred = {source_id: due for source_id, due in self.deferred.items() if source_id in sources}
        self.update_watchers(patterns)
        self.update_journal_watcher(any(f.group == JOURNAL for f in sources.values()))
        return new

    def update_watchers(self, patterns: dict[str, list[str]]) -> None:
        for group in set(self.watchers) - set(patterns):
            self.watchers.pop(group).close()
            self.patterns.pop(group, None)
        for group, paths in patterns.items():
            paths = sorted(set(paths))
            if group not in self.watchers:
                self.watchers[group] = self.make_watcher(group, paths)
            elif self.patterns.get(group) != paths:
                self.watchers[group].set_paths(paths)
            self.patterns[group] = paths

    def update_journal_watcher(self, wanted: bool) -> None:
        """inotify on the journal's directories while some source reads the journal; without it (no
        inotify here) the journal is only polled. Called on each resync, so subdirectories that
        appeared are watched within RESYNC_SECONDS even if their creation was missed."""
        if not wanted:
            if self.journal_watcher is not None:
                self.journal_watcher.close()
            self.journal_watcher, self.journal_watched = None, []
            return
        paths = journal.watch_paths(self.journal_directories)
        if self.journal_watcher is not None:
            if paths != self.journal_watched:
                self.journal_watcher.set_paths(paths)
        else:
            try:
                self.journal_watcher = inotify.DirectoryWatcher(paths, events=journal.CHANGE_EVENTS)
            except inotify.WatcherUnavailable as exc:  # tried again on the next resync
                if exc.reason != self.journal_unwatchable:
                    log.warning("follow: cannot watch the journal (%s); polling it every %g s", exc.reason,
                                self.poll_seconds)
                self.journal_unwatchable = exc.reason
                return
            self.journal_unwatchable = ""
        self.journal_watched = paths

    def make_watcher(self, group: str, paths: list[str]) -> inotify.Watcher:
        try:
            return inotify.make_watcher(group, paths, poll_interval=self.poll_seconds)
        except inotify.WatcherUnavailable as exc:
            # backend "inotify" asked for explicitly: reading late beats not reading at all
            log.error("follow: backend %s is unavailable (%s); polling every %g s instead", group, exc.reason,
                      self.poll_seconds)
            return inotify.PollingWatcher(paths, interval=self.poll_seconds)


def next_read_bytes(size: int, more: bool, took: float) -> int:
    """The most the next read of a source takes: half when this one took too long, double when it
    left lines unread and was quick (READ_TARGET_SECONDS), within MIN_READ_BYTES..MAX_READ_BYTES."""
    if took > 2 * READ_TARGET_SECONDS:
        return max(MIN_READ_BYTES, size // 2)
    if more and took < READ_TARGET_SECONDS / 2:
        return min(MAX_READ_BYTES, size * 2)
    return size


def peak_rss_kb() -> int:
    """The most this process has held in RAM (KiB): what Celery's pool compares with its limit."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def follow_shard(shard: int, shards: int, lease_seconds: int, *, stop_fds: tuple[int, ...] = (),
                 client: redis.Redis | None = None, wait_seconds: float = 0.0) -> Outcome:
    """Take the shard's lease and follow its sources for `lease_seconds` (what the Celery task runs).
    `wait_seconds`: how long to wait for a lease that is held (a worker starting again after it was
    killed waits for its dead follower's lease to run out)."""
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: expected 0 <= shard < shards")
    if not 1 <= lease_seconds <= MAX_LEASE_SECONDS:
        raise ValueError(f"lease_seconds {lease_seconds}: expected 1 to {MAX_LEASE_SECONDS}")
    lease = Lease(client or broker_redis(), lease_key(shard, shards))
    if not lease.wait_acquire(min(wait_seconds, START_WAIT_SECONDS), stop_fds=stop_fds):
        return Outcome.BUSY
    log.info("follow shard %d/%d: following for %d s", shard, shards, lease_seconds)
    follower = Follower(shard, shards, stop_fds=stop_fds)
    outcome = Outcome.LEASE_LOST
    try:
        outcome = follower.run(time.monotonic() + lease_seconds, lease)
    finally:
        if outcome != Outcome.LEASE_LOST:
            lease.release()
    log.info("follow shard %d/%d: %s (%d sources)", shard, shards, outcome, len(follower.sources))
    return outcome
