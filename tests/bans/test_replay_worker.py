"""bans.tasks.replay_jail in a real Celery worker, through a real Redis (database 12 by default)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from bans.models import ReplayRun
from jails.models import Filter, Jail
from tests.paths import REPO

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('IPS_REPLAY_REDIS_DB', '12')}"
START = dt.datetime(2026, 11, 20, 10, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is needed at {REDIS_URL}: {exc}")
    yield client
    client.close()


def wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


def test_a_worker_runs_a_queued_replay_to_the_end(tmp_path: Path, settings_db_env: dict[str, str],
                                                  client: redis.Redis) -> None:
    from bans.tasks import replay_jail
    from config.celery import app

    log = tmp_path / "app.log"
    log.write_text("".join(f"{START + dt.timedelta(seconds=n):%Y-%m-%d %H:%M:%S} fail 203.0.113.{n % 7}\n"
                           for n in range(5000)))
    flt = Filter.objects.create(name="replay-test", source="[Definition]\nfailregex = ^\\s*fail <HOST>$\n")
    jail = Jail.objects.create(name="web", enabled=True, filter=flt, maxretry=3, findtime=600, bantime=60,
                               logpath=[str(log)])
    run = ReplayRun.objects.create(jail=jail)
    queue, host = f"test-replay-{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:8]}"
    # its own host name: the reconcile the worker queues when it starts lands on a queue deleted below
    env = {**settings_db_env, "IPS_REDIS_URL": REDIS_URL, "IPS_FIREWALL": "off", "IPS_HOST_NAME": host,
           "PYTHONUNBUFFERED": "1", "IPS_LOG_TASKS": "true"}  # Celery's line per task: 'skipped' below
    out = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "--concurrency",
                               "1", "--hostname", f"{queue}@%h", "--loglevel", "INFO"], cwd=REPO, env=env, stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output = (tmp_path / "worker.log").read_text
        assert wait(lambda: " ready." in output(), 60), output()
        with app.connection_for_write(REDIS_URL) as connection:  # the worker's Redis, not this process's
            replay_jail.apply_async(args=[run.pk], queue=queue, connection=connection)
            replay_jail.apply_async(args=[run.pk], queue=queue, connection=connection)  # a duplicate: skipped

        def finished() -> bool:
            run.refresh_from_db()
            return run.finished

        assert wait(finished, 60), output()
        assert run.state == ReplayRun.State.DONE, run.error
        assert run.bytes_read == run.bytes_total == log.stat().st_size
        assert {row["network"] for row in run.results} == {f"203.0.113.{n}/32" for n in range(7)}
        assert wait(lambda: "'skipped'" in output(), 30), output()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
        out.close()
        client.delete(*(f"{prefix}{name}" for name in (queue, f"firewall.{host}")
                        for prefix in ("", "_kombu.binding.", "_kombu.binding_permanent.")))
