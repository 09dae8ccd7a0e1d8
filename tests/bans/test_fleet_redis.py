"""An agent's Redis user: what a stolen agent credential can and cannot do on the central Redis, and
that a real Celery worker of the agent works under exactly that ACL (ACL LOG lists what it refused).

Real Redis (database IPS_E2E_REDIS_DB); the worker test also uses the agent's real PostgreSQL role.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings

from bans import hosts
from bans.dispatch import sync_task
from bans.models import FirewallHost
from config import fleet
from config.celery import app
from jails.access import audit
from jails.fleet import redis_acl
from tests.fleet import REDIS_URL, enrolled, unique_host_name, wait_until
from tests.paths import REPO


@pytest.fixture
def central() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def agent_user(central: redis.Redis) -> Iterator[tuple[str, redis.Redis]]:
    """An agent's Redis user made as `hostctl add` makes it (no database needed for this part)."""
    name, password = unique_host_name(), "test-password-" + unique_host_name()
    user = redis_acl.create_user(central, name, password)
    yield name, redis.Redis.from_url(REDIS_URL, username=user, password=password)
    redis_acl.delete_user(central, user)


def refused(call: Any) -> bool:
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_a_stolen_agent_credential_reaches_its_own_queues_and_can_only_push_to_the_fleet_queue(
        agent_user: tuple[str, redis.Redis], central: redis.Redis) -> None:
    name, stolen = agent_user
    own = fleet.firewall_queue(name)
    stolen.lpush(own, b"x")
    assert stolen.brpop([own], timeout=1) == (own.encode(), b"x")
    stolen.lpush(fleet.FLEET_QUEUE, b"report")  # allowed: an agent reports its bans for fan-out
    assert central.llen(fleet.FLEET_QUEUE) == 1
    other = "web2"
    cannot = {
        "read the fleet queue": lambda: stolen.lrange(fleet.FLEET_QUEUE, 0, -1),
        "count the fleet queue": lambda: stolen.llen(fleet.FLEET_QUEUE),
        "empty the fleet queue": lambda: stolen.delete(fleet.FLEET_QUEUE),
        "take from the fleet queue": lambda: stolen.brpop([fleet.FLEET_QUEUE], timeout=1),
        "send to another host's firewall": lambda: stolen.lpush(fleet.firewall_queue(other), b"x"),
        "send to the central firewall": lambda: stolen.lpush(fleet.firewall_queue(settings.IPS_HOST_NAME), b"x"),
        "take another host's watch work": lambda: stolen.brpop([fleet.watch_queue(other)], timeout=1),
        "take the central default queue": lambda: stolen.brpop(["celery"], timeout=1),
        "read central in-flight messages": lambda: stolen.hgetall("unacked"),
        "read another agent's in-flight messages": lambda: stolen.hgetall(f"unacked.{other}"),
        "take another host's follower lease": lambda: stolen.set(f"{fleet.lease_prefix(other)}1:0", "x"),
        "bind another exchange": lambda: stolen.sadd("_kombu.binding.fleet", "x"),
        "list keys": lambda: stolen.keys("*"),
        "flush": stolen.flushdb,
        "read the configuration": lambda: stolen.config_get("*"),
        "list clients": stolen.client_list,
        "read the ACL": stolen.acl_list,
        "broadcast remote control": lambda: stolen.publish("/0.celery.pidbox", "shutdown"),
        "run a script": lambda: stolen.eval("return 1", 0),
        "shut Redis down": lambda: stolen.shutdown(nosave=True),
    }
    allowed = [what for what, call in cannot.items() if not refused(call)]
    assert allowed == []
    assert central.llen(fleet.FLEET_QUEUE) == 1  # untouched by all that


def test_a_removed_agents_password_no_longer_opens_redis(agent_user: tuple[str, redis.Redis],
                                                         central: redis.Redis) -> None:
    name, stolen = agent_user
    stolen.ping()
    assert redis_acl.delete_user(central, redis_acl.username(name)) == 1  # its open connection, closed
    with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ConnectionError)):
        redis.Redis.from_url(REDIS_URL, username=redis_acl.username(name),
                             password=stolen.get_connection_kwargs()["password"]).ping()


def acl_refusals(client: redis.Redis, user: str) -> list[str]:
    return [str(entry["object"]) for entry in client.acl_log(count=200) if entry.get("username") == user]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="an agent's database role is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_real_agent_firewall_worker_runs_under_its_acl_and_role_and_stops_working_when_removed(
        central: redis.Redis) -> None:
    with enrolled(unique_host_name()) as agent:
        user = redis_acl.username(agent.name)
        env = {**os.environ, **agent.enrollment.environment, "IPS_FIREWALL": "off", "IPS_LOG_LEVEL": "INFO"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--queues",
             fleet.firewall_queue(agent.name), "--hostname", f"firewall-{agent.name}@%h"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            # at start it reconciles: the firewall is off here, which it records on its own host's row
            first = wait_until(lambda: FirewallHost.objects.filter(name=agent.name).first())
            assert first.state == FirewallHost.State.UNAVAILABLE
            # the central side asks the agent's firewall worker; the message leaves its queue once taken
            # (explicitly to the test's Redis: this process's Celery app keeps the broker it started with)
            with app.connection_for_write(REDIS_URL) as conn:
                sync_task().apply_async(kwargs={"host": agent.name}, queue=fleet.firewall_queue(agent.name),
                                        connection=conn)
            wait_until(lambda: central.llen(fleet.firewall_queue(agent.name)) == 0 and not central.hlen(
                fleet.unacked_keys(agent.name)["unacked_key"]))
            assert acl_refusals(central, user) == []
            with override_settings(CELERY_BROKER_URL=REDIS_URL):
                ended = hosts.remove_host(agent.name, actor=audit.Actor.command())
            assert ended["redis_connections"] >= 1 and ended["database_connections"] >= 1
            assert central.acl_getuser(user) is None
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.communicate()
        assert worker.returncode is not None
