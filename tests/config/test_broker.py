"""config/broker.py against a real Redis: an idle worker's long BRPOP is ended by CLIENT UNBLOCK when
its channel closes, so a shutdown does not wait for it, and a message the BRPOP took is not lost."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest
import redis
from kombu.connection import Connection
from kombu.entity import Queue

from config.broker import Transport, client_address

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('IPS_E2E_REDIS_DB', '15')}"
LONG_POLL = 30  # seconds: far longer than any close may take here


@pytest.fixture
def queue_name() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is needed at {REDIS_URL}: {exc}")
    name = f"broker-test-{os.getpid()}"
    client.delete(name)
    yield name
    client.delete(name)


def brpop_waiting(address: str) -> bool:
    """Whether Redis lists the connection at `address` as blocked in BRPOP."""
    entries = redis.Redis.from_url(REDIS_URL).client_list()
    return any(entry.get("addr") == address and entry.get("cmd") == "brpop" for entry in entries)


def consuming_channel(connection: Any, queue_name: str, got: list[Any]) -> Any:
    """A channel consuming `queue_name` as a worker does, the bodies it receives appended to `got`."""
    consumer = connection.Consumer(Queue(queue_name), accept=["json"], callbacks=[lambda body, _msg: got.append(body)])
    consumer.consume()
    return consumer.channel


def start_brpop(connection: Any, channel: Any) -> None:
    """Send the channel's BRPOP as the worker's event loop does, and leave it waiting."""
    with suppress(socket.timeout):
        connection.drain_events(timeout=0.2)  # sends BRPOP, gives up waiting for it after 0.2 s
    assert channel._in_poll, "no BRPOP is outstanding"


def test_closing_ends_an_outstanding_brpop_at_once(queue_name: str) -> None:
    with Connection(REDIS_URL, transport=Transport, transport_options={"polling_interval": LONG_POLL}) as connection:
        channel = consuming_channel(connection, queue_name, [])
        start_brpop(connection, channel)
        address = client_address(channel._in_poll)
        assert address is not None
        deadline = time.monotonic() + 5
        while not brpop_waiting(address):
            assert time.monotonic() < deadline, "the BRPOP never reached Redis"
            time.sleep(0.02)
        started = time.monotonic()
        channel.close()
        # CLIENT UNBLOCK answered the BRPOP: close() did not wait the LONG_POLL seconds it asked for
        assert time.monotonic() - started < LONG_POLL / 2
        assert not brpop_waiting(address)


def test_a_message_taken_by_the_brpop_is_delivered_not_dropped_on_close(queue_name: str) -> None:
    got: list[Any] = []
    with Connection(REDIS_URL, transport=Transport, transport_options={"polling_interval": LONG_POLL}) as connection:
        producer = connection.Producer(serializer="json")
        channel = consuming_channel(connection, queue_name, got)
        start_brpop(connection, channel)
        producer.publish({"n": 1}, routing_key=queue_name)
        # Redis pops the message into the outstanding BRPOP's reply before close() asks to unblock it
        deadline = time.monotonic() + 5
        while redis.Redis.from_url(REDIS_URL).llen(queue_name):
            assert time.monotonic() < deadline, "the BRPOP did not take the message"
            time.sleep(0.02)
        channel.close()
    assert got == [{"n": 1}]


def test_the_address_redis_lists_a_connection_under() -> None:
    class Held:
        def __init__(self, family: int, name: tuple[Any, ...] | str) -> None:
            self._sock = type("Sock", (), {"family": family, "getsockname": lambda _self: name})()

    assert client_address(Held(socket.AF_INET, ("127.0.0.1", 5000))) == "127.0.0.1:5000"
    assert client_address(Held(socket.AF_INET6, ("::1", 5000, 0, 0))) == "[::1]:5000"
    assert client_address(Held(socket.AF_UNIX, "")) is None  # a Unix socket: close() waits as before
    assert client_address(object()) is None


def test_an_idle_worker_checks_queue_binding_expiry_every_ten_seconds_not_every_second() -> None:
    from kombu.asynchronous import Hub

    from config.broker import BINDING_EXPIRY_CHECK_SECONDS

    hub = Hub()
    try:
        with Connection(REDIS_URL, transport=Transport) as connection:
            connection.default_channel  # noqa: B018  # a channel, as a consuming worker has
            connection.transport.register_with_event_loop(connection.connection, hub)
            cycle = connection.connection.cycle
            # (eta, priority, entry) of each timer; an entry's fun is the reschedule wrapper of the call
            live = [(event.eta, event.entry) for event in hub.timer.queue if not event.entry.canceled]
            checks = [(eta, entry) for eta, entry in live if "maybe_refresh_binding_expiry" in repr(entry.fun)]
            assert len(checks) == 1, live
            eta, entry = checks[0]
            assert cycle._binding_expiry_tref is entry
            assert eta - time.monotonic() > BINDING_EXPIRY_CHECK_SECONDS - 1  # first run in ten seconds, not one
    finally:
        hub.close()
