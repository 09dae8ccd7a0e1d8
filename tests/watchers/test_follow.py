"""watchers.follow: a follower reads an appended line within milliseconds (inotify) or within its
polling interval, follows files that appear later and jails that change, holds its shard alone, and
stops at once when its worker shuts down. Real files in tmp_path; the database as in
test_read_source.py; real Redis for the lease; a real Celery worker for the task itself."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pytest_django import DjangoAssertNumQueries

from bans.models import Ban, Failure, Ignored
from jails import changes
from jails.access.audit import Actor
from jails.models import Filter, Jail
from tests.factories import make_jail
from tests.paths import REPO
from watchers import inotify
from watchers.follow import (
    MIN_FOLLOW_SECONDS,
    Followed,
    Follower,
    Outcome,
    ShutdownPipe,
    follow_shard,
    sigterm_pipe,
)
from watchers.lease import (
    LEASE_PREFIX,
    Lease,
    followed,
    lease_key,
    live_shards,
    redis_client,
    shard_unheld,
    some_source_unfollowed,
)
from watchers.models import LogSource
from watchers.services import ReadReport, read_source

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('IPS_E2E_REDIS_DB', '15')}"
ATTACKER = "203.0.113.9"


def failure(address: str = ATTACKER, port: int = 40000) -> str:
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    return f"{stamp} srv sshd[{port}]: Failed password for root from {address} port {port} ssh2\n"


def benign() -> str:
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    return f"{stamp} srv sshd[1]: Accepted publickey for deploy from 192.0.2.50 port 40100 ssh2: ED25519 SHA256:x\n"


def append(path: Path, text: str) -> None:
    with path.open("a") as out:
        out.write(text)


class Spy:
    """read_source, with the time and the source of each read."""

    def __init__(self) -> None:
        self.reads: list[tuple[float, int]] = []

    def __call__(self, source_id: int, **kwargs: Any) -> ReadReport:
        self.reads.append((time.monotonic(), source_id))
        return read_source(source_id, **kwargs)

    def since(self, moment: float) -> list[int]:
        return [source_id for when, source_id in self.reads if when >= moment]


def follower(shard: int = 0, shards: int = 1, **options: Any) -> tuple[Follower, Spy]:
    spy = Spy()
    # the safety net and the re-sync are pushed far away unless a test wants them: what is measured is the wake
    settings: dict[str, Any] = {"safety_seconds": 60.0, "resync_seconds": 60.0, "poll_seconds": 0.2, **options}
    return Follower(shard, shards, reader=spy, **settings), spy


def step_until(flw: Follower, done: Any, timeout: float = 5.0) -> float:
    """Step the follower until `done()`; returns the seconds it took (bounded by `timeout`)."""
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < timeout, "the follower did not read the line in time"
        flw.step(0.5)
    return time.monotonic() - started


def banned(address: str = ATTACKER) -> bool:
    return Ban.objects.filter(network=f"{address}/32").exists()


# --- following ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_reads_an_appended_line_within_milliseconds(sshd: Filter, tmp_path: Path, no_broker: None) -> None:
    log = tmp_path / "auth.log"
    log.write_text(benign())
    jail = make_jail("sshd", flt=sshd, logpath=[str(log)], maxretry=1)
    other = tmp_path / "other.log"
    other.write_text(benign())
    make_jail("other", flt=sshd, logpath=[str(other)], maxretry=1)
    flw, spy = follower()
    flw.start()
    assert len(flw.sources) == 2 and not Ban.objects.exists()
    assert flw.watchers["auto"].backend == "inotify"
    written = time.monotonic()
    append(log, failure())
    took = step_until(flw, banned)
    flw.close()
    assert took < 1.0  # inotify: milliseconds (the bound allows for a loaded machine)
    # only the changed source was read: the other one and the safety net were not involved
    assert set(spy.since(written)) == {LogSource.objects.get(jail=jail).pk}


@pytest.mark.django_db
def test_it_follows_a_file_created_later_that_matches_a_glob(sshd: Filter, tmp_path: Path, no_broker: None) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    make_jail("web", flt=sshd, logpath=[str(logs / "*.log")], maxretry=1)
    flw, _ = follower()
    flw.start()
    assert {f.path for f in flw.sources.values()} == {str(logs / "*.log")}  # waiting for a file
    append(logs / "site.log", benign())  # a new file: its history is read as history...
    step_until(flw, lambda: str(logs / "site.log") in {f.path for f in flw.sources.values()})
    append(logs / "site.log", failure())  # ...and what comes next as it comes
    assert step_until(flw, banned) < 1.0
    flw.close()


@pytest.mark.django_db
def test_it_resyncs_new_and_disabled_jails(sshd: Filter, tmp_path: Path, no_broker: None) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    for log in (first, second):
        log.write_text(benign())
    old = make_jail("old", flt=sshd, logpath=[str(first)], maxretry=1)
    flw, _ = follower(resync_seconds=0.2)
    flw.start()
    Jail.objects.filter(pk=old.pk).update(enabled=False)
    make_jail("new", flt=sshd, logpath=[str(second)], maxretry=1)
    step_until(flw, lambda: {f.path for f in flw.sources.values()} == {str(second)})
    append(first, failure("203.0.113.1"))  # the disabled jail's log is not read any more
    append(second, failure("203.0.113.2"))
    step_until(flw, lambda: banned("203.0.113.2"))
    flw.close()
    assert not banned("203.0.113.1")


@pytest.mark.django_db
def test_it_stops_counting_an_address_as_soon_as_the_global_ignore_list_holds_it(
        sshd: Filter, tmp_path: Path, no_broker: None) -> None:
    log = tmp_path / "auth.log"
    log.write_text(benign())
    make_jail("sshd", flt=sshd, logpath=[str(log)], maxretry=5)
    flw, _ = follower()  # its check for changed jails is a minute away: the list needs none
    flw.start()
    append(log, failure(port=40001))
    step_until(flw, lambda: Failure.objects.filter(address=ATTACKER).count() == 1)

    changes.add_global_ignored(["203.0.113.0/24"], Actor.system())
    append(log, failure(port=40002))
    took = step_until(flw, lambda: Ignored.objects.filter(address=ATTACKER).exists())
    assert took < 2.0  # the next read of the log honours it (inotify: milliseconds)
    assert Failure.objects.filter(address=ATTACKER).count() == 1
    assert Ignored.objects.get().reason == "listed in the global ignore list as 203.0.113.0/24"

    changes.remove_global_ignored("203.0.113.0/24", Actor.system())
    append(log, failure(port=40003))
    assert step_until(flw, lambda: Failure.objects.filter(address=ATTACKER).count() == 2) < 2.0
    flw.close()


@pytest.mark.django_db
def test_an_idle_followers_resync_is_one_query_until_a_jail_changes(
        sshd: Filter, tmp_path: Path, no_broker: None, django_assert_num_queries: DjangoAssertNumQueries) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    jail = make_jail("sshd", flt=sshd, logpath=[str(first)], maxretry=1)
    flw, _ = follower()
    flw.resync()
    with django_assert_num_queries(1):  # the jails' stamp, nothing else (host addresses: not yet due)
        assert flw.resync(changed_only=True) == set()
    jail.logpath = [str(first), str(second)]
    jail.save()  # any edit through the panel, importconf or Django admin saves the row
    assert {f.path for f in flw.sources.values()} == {str(first)}
    new = flw.resync(changed_only=True)
    assert {flw.sources[i].path for i in new} == {str(second)}
    flw.next_full_resync = 0.0  # and every FULL_RESYNC_SECONDS whatever the stamp says
    with CaptureQueriesContext(connection) as full:
        flw.resync(changed_only=True)
    assert len(full.captured_queries) > 1 and flw.next_full_resync > 0.0
    flw.close()


@pytest.mark.django_db
def test_it_follows_only_the_jails_of_its_shard(sshd: Filter, tmp_path: Path, no_broker: None) -> None:
    jails = [make_jail(f"j{i}", flt=sshd, logpath=[str(tmp_path / f"{i}.log")], maxretry=1) for i in range(4)]
    flw, _ = follower(shard=1, shards=2)
    flw.resync()
    flw.close()
    assert {f.jail_id for f in flw.sources.values()} == {j.pk for j in jails if j.pk % 2 == 1}
    assert [followed(j.pk, {(1, 2)}) for j in jails] == [j.pk % 2 == 1 for j in jails]
    assert not any(followed(j.pk, set()) for j in jails)


@pytest.mark.django_db
def test_it_polls_a_jail_whose_backend_is_polling(sshd: Filter, tmp_path: Path, no_broker: None) -> None:
    log = tmp_path / "auth.log"
    log.write_text(benign())
    make_jail("sshd", flt=sshd, logpath=[str(log)], maxretry=1, backend=Jail.Backend.POLLING)
    flw, _ = follower(poll_seconds=0.2)
    flw.start()
    assert flw.watchers["polling"].backend == "polling"
    append(log, failure())
    assert step_until(flw, banned) < 2.0  # within the polling interval, not the 60 s safety net
    flw.close()


@pytest.mark.django_db
def test_it_falls_back_to_polling_when_inotify_is_unavailable(sshd: Filter, tmp_path: Path, no_broker: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def no_inotify(self: object) -> None:
        raise inotify.WatcherUnavailable("the per-user limit of inotify instances is reached")

    monkeypatch.setattr(inotify._Libc, "__init__", no_inotify)
    log = tmp_path / "auth.log"
    log.write_text(benign())
    make_jail("auto", flt=sshd, logpath=[str(log)], maxretry=1)
    make_jail("explicit", flt=sshd, logpath=[str(tmp_path / "other.log")], maxretry=1, backend=Jail.Backend.INOTIFY)
    flw, _ = follower(poll_seconds=0.2)
    flw.start()
    assert {group: w.backend for group, w in flw.watchers.items()} == {"auto": "polling", "inotify": "polling"}
    assert "inotify is unavailable" in (flw.watchers["auto"].fallback_reason or "")
    append(log, failure())
    assert step_until(flw, banned) < 2.0
    flw.close()


@pytest.mark.django_db
def test_it_reads_every_source_when_the_safety_net_is_due(sshd: Filter, tmp_path: Path, no_broker: None) -> None:
    log = tmp_path / "auth.log"
    log.write_text(benign())
    make_jail("sshd", flt=sshd, logpath=[str(log)], maxretry=1)
    flw, spy = follower(safety_seconds=0.3)
    flw.start()
    flw.watchers.clear()  # inotify sees nothing: only the safety net reads, every 0.3 s
    before = time.monotonic()
    for _ in range(4):
        append(log, benign())  # (a file that did not change is not read: the next test)
        flw.step(5.0)
    flw.close()
    times = [when for when, _ in spy.reads if when >= before]
    assert len(times) == 4
    assert all(later - earlier >= 0.25 for earlier, later in zip([before, *times], times, strict=False))


@pytest.mark.django_db
def test_it_stops_at_once_when_its_worker_shuts_down(sshd: Filter, tmp_path: Path, no_broker: None) -> None:
    make_jail("sshd", flt=sshd, logpath=[str(tmp_path / "auth.log")], maxretry=1)
    pipe = ShutdownPipe()
    pipe.open()
    assert pipe.read_fd is not None
    flw, _ = follower(stop_fds=(pipe.read_fd,))
    threading.Timer(0.3, pipe.close_writer).start()
    started = time.monotonic()
    assert flw.run(time.monotonic() + 30) == Outcome.STOPPING
    assert time.monotonic() - started < 3
    assert pipe.read_fd is not None
    os.close(pipe.read_fd)


@pytest.mark.django_db
def test_it_stops_at_once_on_sigterm_and_puts_the_handler_back(sshd: Filter, tmp_path: Path, no_broker: None) -> None:
    make_jail("sshd", flt=sshd, logpath=[str(tmp_path / "auth.log")], maxretry=1)
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_pipe() as terminated:
        assert terminated is not None
        flw, _ = follower(stop_fds=(terminated,))
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        assert flw.run(time.monotonic() + 30) == Outcome.STOPPING
        assert time.monotonic() - started < 3
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_shutdown_pipe_stays_open_in_the_worker_s_own_process() -> None:
    pipe = ShutdownPipe()
    pipe.open()
    pipe.forget_writer()  # a solo pool runs tasks in the main process: nothing to forget there
    assert not pipe.stopping()
    pipe.close_writer()
    assert pipe.stopping()
    assert pipe.read_fd is not None
    os.close(pipe.read_fd)


# --- the lease ---------------------------------------------------------------------------------------


@pytest.fixture
def client() -> redis.Redis:
    client = redis_client(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is needed at {REDIS_URL}: {exc}")
    return client


@pytest.fixture
def key(client: redis.Redis) -> Iterator[str]:
    key = f"ips:test:lease:{uuid.uuid4().hex}"
    yield key
    client.delete(key)


@pytest.mark.worker
def test_it_gives_a_lease_to_one_holder_at_a_time(client: redis.Redis, key: str) -> None:
    first, second = Lease(client, key, ttl_seconds=5), Lease(client, key, ttl_seconds=5)
    assert first.acquire()
    assert not second.acquire()
    assert not second.renew()  # renewing is for the holder only
    second.release()  # and so is releasing
    assert client.get(key) == first.token.encode()
    first.release()
    assert second.acquire()
    second.release()


@pytest.mark.worker
def test_it_loses_an_expired_lease_to_the_next_holder(client: redis.Redis, key: str) -> None:
    first = Lease(client, key, ttl_seconds=0.2, renew_every=0.0)
    assert first.acquire() and first.keep()
    time.sleep(0.4)
    second = Lease(client, key, ttl_seconds=5)
    assert second.acquire()
    assert not first.keep()  # a stalled follower finds out and stops
    second.release()


@pytest.mark.worker
def test_a_lease_that_vanished_with_redis_is_taken_again(client: redis.Redis, key: str) -> None:
    """A Redis restart without its data loses every lease: the follower keeps its shard (nobody else
    holds it), so no beat schedule has to start it again."""
    holder = Lease(client, key, ttl_seconds=5, renew_every=0.0)
    assert holder.acquire()
    client.delete(key)  # what a restart of a Redis that keeps nothing does
    assert holder.keep() and client.get(key) == holder.token.encode()
    client.delete(key)
    other = Lease(client, key, ttl_seconds=5)
    assert other.acquire()  # another follower got there first: ours is lost
    assert not holder.keep()
    other.release()


@pytest.mark.worker
def test_an_outage_shorter_than_the_lease_is_ridden_out(client: redis.Redis, key: str) -> None:
    holder = Lease(client, key, ttl_seconds=5, renew_every=0.0)
    assert holder.acquire()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Redis unreachable (no retries: redis-py's own would take seconds here)
    holder.client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    assert holder.keep()  # nobody can have taken the shard within the TTL
    holder.held_at -= 5  # the TTL since it was last renewed has passed
    assert not holder.keep()  # another follower may hold it now: stop


@pytest.mark.worker
def test_a_start_waits_out_a_dead_followers_lease(client: redis.Redis, key: str) -> None:
    dead = Lease(client, key, ttl_seconds=0.4)
    assert dead.acquire()  # and never renewed nor released: its follower was killed
    waiting = Lease(client, key, ttl_seconds=5)
    assert not waiting.wait_acquire(0.0)  # no wait: busy at once
    started = time.monotonic()
    assert waiting.wait_acquire(3.0, poll=0.05)
    assert 0.2 < time.monotonic() - started < 2.0
    waiting.release()


@pytest.mark.worker
def test_a_start_does_not_wait_for_a_live_followers_lease(client: redis.Redis, key: str) -> None:
    """A follower that renews its lease is alive: a second start gives up at its first renewal
    instead of holding a pool process for the whole wait (a worker's start and beat's first
    `follow` both ask for the same shard)."""
    live = Lease(client, key, ttl_seconds=3.0, renew_every=0.0)
    assert live.acquire()
    waiting = Lease(client, key, ttl_seconds=5)
    renewals = threading.Event()

    def renew_until_told() -> None:
        while not renewals.wait(0.5):  # each renewal adds about 0.5 s: more than RENEWAL_SEEN_MS
            assert live.keep()

    renewer = threading.Thread(target=renew_until_told)
    renewer.start()
    try:
        started = time.monotonic()
        assert not waiting.wait_acquire(10.0, poll=0.1)
        assert time.monotonic() - started < 2.0  # a renewal every 0.5 s, seen at the poll after it
        assert client.get(key) == live.token.encode()
    finally:
        renewals.set()
        renewer.join()
    live.release()


@pytest.mark.worker
def test_a_second_follower_of_a_shard_returns_at_once(client: redis.Redis) -> None:
    shard, shards = 0, 7919  # a shard count nothing else uses
    holder = Lease(client, lease_key(shard, shards), ttl_seconds=5)
    assert holder.acquire()
    try:
        assert (shard, shards) in live_shards(client)
        started = time.monotonic()
        assert follow_shard(shard, shards, 60, client=client) == Outcome.BUSY
        assert time.monotonic() - started < 1
    finally:
        holder.release()
    assert (shard, shards) not in live_shards(client)


# --- the Celery task, in a real worker ------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_follow_task_follows_hands_over_and_lets_its_worker_stop(
        sshd: Filter, tmp_path: Path, settings_db_env: dict[str, str], client: redis.Redis) -> None:
    from config.celery import app
    from watchers.tasks import follow

    log = tmp_path / "auth.log"
    log.write_text(benign())
    jail = make_jail("sshd", flt=sshd, logpath=[str(log)], maxretry=1)
    shards = 2  # the worker has 3 processes: one follower per shard and one for the rest
    shard = jail.pk % shards
    # IPS_LOG_TASKS: Celery's line per task, read below
    with worker_on_own_queue(tmp_path, settings_db_env, client, concurrency=3, IPS_LOG_TASKS="true") as running:
        queue, worker, output = running.queue, running.process, running.output
        running.leases.append(running.lease(shard, shards))
        assert wait(lambda: " ready." in output(), 60), output()
        kwargs = {"shard": shard, "shards": shards, "lease_seconds": 4}
        with app.connection_for_write(REDIS_URL) as connection:  # the worker's Redis, not this process's
            follow.apply_async(kwargs=kwargs, queue=queue, connection=connection)
            assert wait(lambda: client.exists(running.lease(shard, shards)) == 1, 30), output()
            follow.apply_async(kwargs=kwargs, queue=queue, connection=connection)  # beat's restart: a no-op
        assert wait(lambda: "succeeded" in output() and "'busy'" in output(), 30), output()
        append(log, failure())
        assert wait(banned, 10), output()
        # the lease time is up: the follower hands over to a new task, which goes on following
        assert wait(lambda: "'time up'" in output() and output().count("following for 4 s") >= 2, 30), output()
        append(log, failure("203.0.113.77"))
        assert wait(lambda: banned("203.0.113.77"), 10), output()
        # warm shutdown: the running follower stops at once instead of holding the worker for its lease
        stopping = time.monotonic()
        os.kill(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        assert time.monotonic() - stopping < 10, output()
        assert "worker stopping" in output()
        assert client.exists(running.lease(shard, shards)) == 0  # released for the next worker


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_watcher_worker_that_starts_asks_for_its_followers_itself(
        sshd: Filter, tmp_path: Path, settings_db_env: dict[str, str], client: redis.Redis) -> None:
    """No beat here: the worker sends its follow schedules' tasks as it starts (start_followers), only
    those of the queues it consumes."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    log = tmp_path / "auth.log"
    log.write_text(benign())
    make_jail("sshd", flt=sshd, logpath=[str(log)], maxretry=1)
    queue = f"test-{uuid.uuid4().hex[:8]}"
    shard, shards = 0, 1  # the worker has 2 processes: the follower and one for the rest
    every = IntervalSchedule.objects.create(every=3600, period="seconds")  # beat would not send it for an hour
    PeriodicTask.objects.filter(task="watchers.tasks.follow").delete()
    PeriodicTask.objects.create(name="follow here", task="watchers.tasks.follow", interval=every, queue=queue,
                                kwargs=json.dumps({"shard": shard, "shards": shards, "lease_seconds": 60}))
    PeriodicTask.objects.create(name="follow elsewhere", task="watchers.tasks.follow", interval=every,
                                queue=f"{queue}-other", kwargs=json.dumps({"shard": 1, "shards": 2}))
    with worker_on_own_queue(tmp_path, settings_db_env, client, concurrency=2, queue=queue) as running:
        running.leases.append(running.lease(shard, shards))
        assert wait(lambda: client.exists(running.lease(shard, shards)) == 1, 60), running.output()
        assert client.exists(running.lease(1, 2)) == 0  # another worker's queue: not asked for here
        assert client.llen(f"{queue}-other") == 0


@dataclass
class RunningWorker:
    queue: str
    host: str  # its IPS_HOST_NAME: its followers' leases carry it
    process: subprocess.Popen[bytes]
    output: Callable[[], str]
    leases: list[str] = field(default_factory=list)  # deleted at the end

    def lease(self, shard: int, shards: int) -> str:
        return lease_key(shard, shards, self.host)


@contextmanager
def worker_on_own_queue(tmp_path: Path, settings_db_env: dict[str, str], client: redis.Redis, *, concurrency: int,
                        queue: str = "", **extra_env: str) -> Iterator[RunningWorker]:
    """A real watcher worker consuming only its own queue (and its own firewall host's name), killed
    and its Redis keys deleted at the end."""
    queue = queue or f"test-{uuid.uuid4().hex[:8]}"
    host = f"t{uuid.uuid4().hex[:8]}"
    env = {**settings_db_env, "IPS_REDIS_URL": REDIS_URL, "IPS_HOST_NAME": host, "IPS_FIREWALL": "off",
           "PYTHONUNBUFFERED": "1", **extra_env}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue,
                                    "--concurrency", str(concurrency), "--hostname", f"{queue}@%h", "--loglevel",
                                    "INFO"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        running = RunningWorker(queue, host, process, log_path.read_text)
        try:
            yield running
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            client.delete(*running.leases, *(f"{prefix}{name}" for name in (queue, f"firewall.{host}")
                                             for prefix in ("", "_kombu.binding.", "_kombu.binding_permanent.")))


def wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


@pytest.mark.django_db
def test_the_safety_net_skips_a_file_that_did_not_change_and_reads_one_that_did(
        sshd: Filter, tmp_path: Path, no_broker: None) -> None:
    """Idle, a follower costs next to nothing: the read every 2 s whatever inotify says is skipped for
    a file whose identity, size and time are those its last read ended at."""
    quiet_log, busy_log = tmp_path / "quiet.log", tmp_path / "busy.log"
    quiet_log.write_text(benign())
    busy_log.write_text(benign())
    quiet = make_jail("quiet", flt=sshd, logpath=[str(quiet_log)], maxretry=1)
    make_jail("busy", flt=sshd, logpath=[str(busy_log)], maxretry=1)
    flw, spy = follower(safety_seconds=0.2)
    flw.watchers.clear()  # as if inotify saw nothing: only the safety net reads
    flw.start()
    flw.watchers.clear()
    started = time.monotonic()
    with busy_log.open("a") as out:  # written behind inotify's back
        out.write(failure())
    step_until(flw, banned)
    for _ in range(5):
        flw.step(0.3)
    flw.close()
    assert LogSource.objects.get(jail=quiet).pk not in spy.since(started)


@pytest.mark.django_db
def test_it_hands_over_once_its_process_grew_past_the_pools_memory_limit(sshd: Filter, tmp_path: Path,
                                                                         no_broker: None) -> None:
    """After a flood, so that the pool replaces the process (Celery's worker_max_memory_per_child)."""
    make_jail("sshd", flt=sshd, logpath=[str(tmp_path / "auth.log")], maxretry=1)
    flw, _ = follower(memory_limit_kb=1, started_at=time.monotonic() - MIN_FOLLOW_SECONDS)
    assert flw.run(time.monotonic() + 30) == Outcome.GREW


@pytest.mark.django_db
def test_it_keeps_following_past_the_limit_while_young_or_behind(sshd: Filter, tmp_path: Path,
                                                               no_broker: None) -> None:
    make_jail("sshd", flt=sshd, logpath=[str(tmp_path / "auth.log")], maxretry=1)
    young, _ = follower(memory_limit_kb=1)  # started just now: never in a loop of hand-overs
    assert young.run(time.monotonic() + 1) == Outcome.TIME_UP
    behind, _ = follower(memory_limit_kb=1, started_at=time.monotonic() - MIN_FOLLOW_SECONDS)
    behind.backlog = {1}
    assert not behind.grew_too_much()  # the backlog is read first, in this process
    unlimited, _ = follower(memory_limit_kb=0, started_at=time.monotonic() - MIN_FOLLOW_SECONDS)
    assert not unlimited.grew_too_much()


def test_the_follow_task_hands_over_after_growing_as_after_its_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    from watchers import follow as following
    from watchers import tasks

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(following, "follow_shard", lambda *args, **kwargs: Outcome.GREW)
    monkeypatch.setattr(tasks.follow, "apply_async", lambda **kwargs: sent.append(kwargs))
    monkeypatch.setattr(tasks, "_pool_size", None)
    assert tasks.follow.run(0, 1, 60) == str(Outcome.GREW)
    assert [call["kwargs"] for call in sent] == [{"shard": 0, "shards": 1, "lease_seconds": 60}]


# --- beat's guards (config/beat.py): send a follower or a read only when one is wanted ----------------


@pytest.mark.worker
def test_beat_sends_a_follower_only_for_a_shard_nobody_holds(client: redis.Redis) -> None:
    shard, shards = 1, 7907  # a shard count nothing else uses
    assert shard_unheld(shard, shards, client=client, lease_seconds=300)  # the row's other kwargs are ignored
    holder = Lease(client, lease_key(shard, shards), ttl_seconds=5)
    assert holder.acquire()
    try:
        assert not shard_unheld(shard, shards, client=client)
        assert shard_unheld(0, shards, client=client)  # the other shard is not held
    finally:
        holder.release()
    assert shard_unheld(shard, shards, client=client)


@pytest.mark.worker
def test_beat_sends_the_read_of_all_sources_only_while_a_shard_has_no_follower(client: redis.Redis) -> None:
    shards = 3
    held = [Lease(client, lease_key(shard, shards), ttl_seconds=5) for shard in range(shards)]
    for stale in client.scan_iter(match=f"{LEASE_PREFIX}:*"):
        client.delete(stale)  # a lease an earlier test's follower left to expire (tests run one at a time)
    assert some_source_unfollowed(client=client)  # no follower at all: every source is read by the task
    try:
        for lease in held[:-1]:
            assert lease.acquire()
        assert some_source_unfollowed(client=client)  # one shard left: its jails need the read
        assert held[-1].acquire()
        assert not some_source_unfollowed(client=client)  # every jail is followed
    finally:
        for lease in held:
            lease.release()


# --- the SQLite rest ---------------------------------------------------------------------------------


class TurnTaker:
    """A reader that takes its turn as read_source does (just before its transaction), then says its
    transaction held the database `write_seconds`; or, with `writes` False, that it wrote nothing."""

    def __init__(self, write_seconds: float) -> None:
        self.write_seconds = write_seconds
        self.writes = True
        self.began: list[float] = []  # when each transaction began
        self.ended: list[float] = []

    def __call__(self, source_id: int, *, wait_turn: Callable[[], None], **_: Any) -> ReadReport:
        if not self.writes:
            return ReadReport()
        wait_turn()
        self.began.append(time.monotonic())
        time.sleep(self.write_seconds)
        self.ended.append(time.monotonic())
        return ReadReport(write_seconds=self.write_seconds)


def test_on_sqlite_the_next_transaction_waits_as_long_as_the_last_one_held_the_lock() -> None:
    """Another writer finds SQLite's lock free for at least as long as the follower's last
    transaction held it, even when a read in between wrote nothing (its rest is kept, not reset)."""
    reader = TurnTaker(write_seconds=0.08)
    flw = Follower(0, 1, reader=reader, rest_ratio=1.0)
    flw.sources = {1: Followed(source_id=1, jail_id=1, path="", group="inotify")}
    flw.read({1})
    reader.writes = False
    flw.read({1})  # nothing new: no transaction, no rest taken
    reader.writes = True
    flw.read({1})
    assert reader.began[1] - reader.ended[0] >= 0.08


def test_on_postgresql_the_follower_does_not_rest() -> None:
    reader = TurnTaker(write_seconds=0.08)
    flw = Follower(0, 1, reader=reader, rest_ratio=0.0)
    flw.sources = {1: Followed(source_id=1, jail_id=1, path="", group="inotify")}
    flw.read({1})
    flw.read({1})
    assert reader.began[1] - reader.ended[0] < 0.05
