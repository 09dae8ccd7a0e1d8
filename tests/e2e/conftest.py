"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.faults import OwnRedis
from tests.e2e.stack import Child, RedisBridge, bridged_redis, stop_children


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """The processes a test starts; all stopped at its end, whatever happened."""
    started: list[Child] = []
    try:
        yield started
    finally:
        stop_children(started)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server of the test's own (never the machine's shared one), stopped after the test."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = OwnRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bridge(own_redis: OwnRedis) -> Iterator[RedisBridge]:
    """`own_redis` on a unix socket, for a process in a network namespace (its loopback is its own)."""
    with bridged_redis(("127.0.0.1", own_redis.port), prefix="ipsown-") as bridge:
        yield bridge
