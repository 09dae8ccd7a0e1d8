"""Shared pieces of the fleet tests: a test host name, the Redis database they use, and enrolling an
agent for real (its PostgreSQL role and Redis user) with cleanup that leaves no role or user behind."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from django.db import connection
from django.test import override_settings

from bans import hosts
from jails.access import audit
from jails.fleet import postgres, redis_acl
from scripts.harness.processes import descendants

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('IPS_E2E_REDIS_DB', '15')}"


def unique_host_name(prefix: str = "t") -> str:
    """A host name no other run uses: roles and Redis users are server-wide, not per database."""
    return f"{prefix}{secrets.token_hex(4)}"


@dataclass
class Agent:
    name: str
    enrollment: hosts.Enrollment

    @property
    def database_url(self) -> str:
        return self.enrollment.environment["DATABASE_URL"]

    @property
    def redis_url(self) -> str:
        return self.enrollment.environment["IPS_REDIS_URL"]

    @property
    def redis_password(self) -> str:
        return self.redis_url.split("@")[0].rsplit(":", 1)[1]


def reach() -> hosts.Reach:
    return hosts.Reach.of_central("127.0.0.1", database_sslmode="disable", redis_tls=False)


@contextmanager
def enrolled(name: str | None = None, *, addresses: tuple[str, ...] = ("198.51.100.20",),
             groups: tuple[str, ...] = ()) -> Iterator[Agent]:
    """An agent enrolled for real on this test database and the test Redis; its role and Redis
    user are removed afterwards whatever the test did (a test may have removed them already)."""
    name = name or unique_host_name()
    with override_settings(CELERY_BROKER_URL=REDIS_URL):
        enrollment = hosts.add_host(name, addresses=addresses, groups=groups, reach=reach(),
                                    actor=audit.Actor.command())
        try:
            yield Agent(name=name, enrollment=enrollment)
        finally:
            redis.Redis.from_url(REDIS_URL).acl_deluser(redis_acl.username(name))
            if connection.vendor == "postgresql":
                postgres.drop_role(postgres.role_name(name))


def wait_until(find: Any, timeout: float = 30.0) -> Any:
    """What `find()` returns once it is something, polled every 0.2 s; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("not seen in time")


def start_process(argv: list[str], env: dict[str, str], cwd: str) -> subprocess.Popen[str]:
    """A worker or a stack, in a session of its own (its pool children are stopped with it)."""
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def stop_process(process: subprocess.Popen[str]) -> str:
    """SIGTERM to its session, SIGKILL after 40 s, to its descendants too (a stack's workers run in
    sessions of their own: none may outlive the test, holding the test database or a queue); its output."""
    family = descendants(process.pid)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            os.killpg(process.pid, signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output = ""
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
        rest, _ = process.communicate(timeout=10)
        output = (output or "") + (rest or "")
    return output or ""
