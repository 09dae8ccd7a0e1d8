"""Celery's Redis transport, with one fix: a worker survives Redis restarting under it.

kombu 5.7's redis Channel.close() first reads the reply of an outstanding BRPOP. When Redis has
just gone away that read raises a connection error, close() stops half way, and the worker's
recovery later closes the channel again after its client was dropped: the worker exits with
"Unrecoverable error: AttributeError: 'NoneType' object has no attribute 'hostname'" instead of
reconnecting (tests/e2e/test_faults.py, the Redis restart fault, caught it). A BRPOP reply that can
never arrive is no reason to stop closing: we drop it and close the rest as usual. Messages are
not lost by this: tasks are acknowledged late, and an unacknowledged message goes back to its
queue (Redis visibility timeout).

Used through CELERY_BROKER_TRANSPORT in config/settings.py; the broker URL stays redis://.
"""

from __future__ import annotations

from contextlib import suppress
from queue import Empty

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def close(self) -> None:
        if self._in_poll:
            with suppress(Empty, *self.connection_errors):
                self._brpop_read()  # type: ignore[no-untyped-call]  # clears _in_poll: super() skips it
        super().close()  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel
