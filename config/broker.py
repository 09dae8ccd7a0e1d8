"""Celery's Redis transport, with two changes: a worker survives Redis restarting under it, and a
worker that waits longer in BRPOP still stops at once.

kombu 5.7's redis Channel.close() first reads the reply of an outstanding BRPOP. When Redis has
just gone away that read raises a connection error, close() stops half way, and the worker's
recovery later closes the channel again after its client was dropped: the worker exits with
"Unrecoverable error: AttributeError: 'NoneType' object has no attribute 'hostname'" instead of
reconnecting (tests/e2e/test_faults.py, the Redis restart fault, caught it). A BRPOP reply that can
never arrive is no reason to stop closing: we drop it and close the rest as usual. Messages are
not lost by this: tasks are acknowledged late, and an unacknowledged message goes back to its
queue (Redis visibility timeout).

An idle worker waits in BRPOP for 10 s (`polling_interval`: config.env.broker_poll_seconds), not kombu's 1 s:
each BRPOP that times out wakes the worker and Redis, once a second for nothing.
close() must read the outstanding reply before it drops the connection (a message Redis already
popped for us would be lost otherwise), and that wait would now last up to that long at every
shutdown. So close() first asks Redis to end the wait (CLIENT UNBLOCK): the reply comes at once,
nil or the message. Where that cannot be done close() waits for the BRPOP's own end: over a Unix
socket (no address to find it by) the wait is therefore kept at 1 s; a Redis user whose ACL refuses
CLIENT, or a connection seen under another address (a proxy), waits up to the 10 s.

Used through CELERY_BROKER_TRANSPORT in config/settings.py; the broker URL stays redis://.
"""

from __future__ import annotations

import logging
import socket
from contextlib import suppress
from queue import Empty
from typing import Any

import redis
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


def client_address(connection: Any) -> str | None:
    """The address Redis lists this connection under (CLIENT LIST's `addr`), None off TCP."""
    sock = getattr(connection, "_sock", None)
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Channel(kombu_redis.Channel):
    def close(self) -> None:
        if self._in_poll:
            self._unblock_brpop()
            with suppress(Empty, *self.connection_errors):
                self._brpop_read()  # type: ignore[no-untyped-call]  # clears _in_poll: super() skips it
        super().close()  # type: ignore[no-untyped-call]

    def _unblock_brpop(self) -> None:
        """End our outstanding BRPOP now, from another connection (see the module's docstring)."""
        address = client_address(self._in_poll)
        if address is None:
            return
        try:
            with self.conn_or_acquire() as client:
                ids = [entry["id"] for entry in client.client_list() if entry.get("addr") == address]
                for client_id in ids:
                    client.client_unblock(client_id)
        except (redis.RedisError, OSError) as exc:  # Redis gone, or CLIENT refused by its ACL
            log.debug("broker: could not unblock the BRPOP of %s (%s); waiting for its reply", address, exc)


# kombu runs the check "does a queue binding need its expiry refreshed?" every second, waking every
# worker once a second for nothing: the only expiring queue here is each worker's remote-control
# queue, refreshed a third of its lifetime after the last refresh (CELERY_CONTROL_QUEUE_EXPIRES,
# 300 s in config/settings.py: every 100 s). Checking every 10 s keeps it alive with room to spare.
BINDING_EXPIRY_CHECK_SECONDS = 10.0


class Transport(kombu_redis.Transport):
    Channel = Channel

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)  # type: ignore[no-untyped-call]
        cycle = connection.cycle
        every_second = getattr(cycle, "_binding_expiry_tref", None)
        if every_second is None:  # a kombu without that timer: nothing to slow down
            return
        every_second.cancel()
        cycle._binding_expiry_tref = loop.call_repeatedly(BINDING_EXPIRY_CHECK_SECONDS,
                                                          cycle.maybe_refresh_binding_expiry)


# How often a worker that lost Redis tries again: kombu's defaults wait 2, 4, 6 ... up to 30 s between
# tries, so a worker whose link came back after a minute reconnected up to 12 s later. A fleet host
# that returns must converge within seconds (docs/fleet.md); a try costs one TCP connect.
RECONNECT_EVERY_SECONDS = 1.0


class Consumer(CeleryConsumer):  # type: ignore[misc]  # Celery is untyped
    """Celery's worker consumer, reconnecting to Redis every RECONNECT_EVERY_SECONDS (CELERY_WORKER_CONSUMER)."""

    def ensure_connected(self, conn: Any) -> Any:
        ensure = conn.ensure_connection

        def every_second(errback: Any = None, max_retries: Any = None, **kwargs: Any) -> Any:
            kwargs.update(interval_start=0, interval_step=RECONNECT_EVERY_SECONDS,
                          interval_max=RECONNECT_EVERY_SECONDS)
            return ensure(errback, max_retries, **kwargs)

        conn.ensure_connection = every_second
        return super().ensure_connected(conn)
