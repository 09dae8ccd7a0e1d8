"""A follower's shard lease in Redis, and the questions beat asks about followers.

A lease is a Redis key only one holder can set (SET NX with a time to live), renewed while its
follower runs and released when it stops: a follower killed without releasing holds its shard at
most LEASE_TTL_SECONDS. A lease that stays ours through a short Redis outage is ridden out
(`Lease.keep`), and one that vanished with a Redis restart is taken again. The key names the host
and the shard (`ips:follow:lease:<host>:<shards>:<shard>`: each host of a fleet follows its own
logs), which beat's guards read: `shard_unheld` (start a follower?) and `some_source_unfollowed`
(read the sources nobody follows?). An agent's Redis user may touch only its own host's keys, and
may not list keys: its leases are looked up by name (`live_shards` with a shard count).

Split from watchers/follow.py, which runs the followers; no Django model is read here.
"""

from __future__ import annotations

import logging
import select
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings

from config.redisclient import broker_redis, redis_client

log = logging.getLogger(__name__)

__all__ = ["Lease", "broker_redis", "lease_key", "live_shards", "redis_client"]

LEASE_PREFIX = "ips:follow:lease"
LEASE_TTL_SECONDS = 30  # a follower that died without releasing its shard holds it this long at most
RENEW_SECONDS = 5.0
# How much a held lease's time to live must grow between two tries to count as renewed by a live
# holder: Redis counts it in wall-clock time, so a small step of the clock back is not a renewal (a
# renewal adds about RENEW_SECONDS).
RENEWAL_SEEN_MS = 250
# What one follower step may take beyond the lease's renewal period (a read is bounded to about
# READ_TARGET_SECONDS): a lease is ridden through a Redis outage only while it surely outlasts them.
STEP_MARGIN_SECONDS = 2.0

# Renew and release only the lease we hold: a lease that expired may belong to another follower now.
# Run by their digest (EVALSHA, loaded once): a fleet agent's Redis user is not given EVAL.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def lease_key(shard: int, shards: int, host: str | None = None) -> str:
    """The lease of a shard of `host`'s followers (default: this host, IPS_HOST_NAME)."""
    return f"{LEASE_PREFIX}:{host or settings.IPS_HOST_NAME}:{shards}:{shard}"


@dataclass
class Lease:
    """A Redis key only one holder can set; it expires unless renewed."""

    client: redis.Redis
    key: str
    ttl_seconds: float = LEASE_TTL_SECONDS
    renew_every: float = RENEW_SECONDS
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    renewed_at: float = 0.0
    # when the lease was last known ours in Redis (acquired or renewed): an outage of Redis shorter
    # than the TTL is ridden out, since nobody else could have taken the shard meanwhile
    held_at: float = 0.0

    def acquire(self) -> bool:
        asked = time.monotonic()  # the key's time runs from no later than this
        taken = bool(self.client.set(self.key, self.token, nx=True, px=self._ttl_ms()))
        self.renewed_at = time.monotonic()
        if taken:
            self.held_at = asked
        return taken

    def renew(self) -> bool:
        asked = time.monotonic()
        kept = bool(self.client.register_script(_RENEW)(keys=[self.key], args=[self.token, self._ttl_ms()]))
        self.renewed_at = time.monotonic()
        if kept:
            self.held_at = asked
        return kept

    def keep(self) -> bool:
        """Renew when due; False once the lease is no longer ours: taken by another holder, or Redis
        unreachable for longer than the TTL. A key that vanished (Redis restarted without its data)
        is taken again when nobody else took it first, so a restart of Redis does not stop the
        follower and no beat schedule is needed to start it again."""
        if time.monotonic() - self.renewed_at < self.renew_every:
            return True
        try:
            return self.renew() or self._take_vanished()
        except redis.RedisError as exc:
            self.renewed_at = time.monotonic()  # try again after renew_every, not on every step
            # still ours until the next check, a step later, with the key's time counted from before
            # the last call that set it
            left = self.ttl_seconds - (self.renewed_at - self.held_at) - self.renew_every - STEP_MARGIN_SECONDS
            if left > 0:
                log.warning("follow: cannot renew the lease %s (%s); still surely ours for %.0f s", self.key,
                            exc, left)
                return True
            log.warning("follow: cannot renew the lease %s: %s", self.key, exc)
            return False

    def _take_vanished(self) -> bool:
        if self.client.exists(self.key):
            return False  # another holder's now
        taken = self.acquire()
        if taken:
            log.warning("follow: the lease %s had vanished (a Redis restart?): taken again", self.key)
        return taken

    def wait_acquire(self, seconds: float, *, poll: float = 1.0, stop_fds: tuple[int, ...] = ()) -> bool:
        """acquire(), trying again for up to `seconds`: a holder killed without releasing keeps its
        lease until the TTL runs out. False as soon as the key's time to live grows between two
        tries (its holder renewed it: a live follower, not worth waiting for; a start used to sit in
        a pool process for the whole TTL behind the follower beat had just started), and at once when
        one of `stop_fds` becomes readable (the worker stopping)."""
        deadline = time.monotonic() + seconds
        left_before: int | None = None
        while not self.acquire():
            left = int(self.client.pttl(self.key))  # ms; negative: no key (just released) or no expiry
            if left_before is not None and left > left_before + RENEWAL_SEEN_MS:
                return False  # renewed (or taken again by another, which is as alive)
            left_before = left if left >= 0 else None
            if time.monotonic() + poll > deadline:
                return False
            if stop_fds:
                if select.select(stop_fds, [], [], poll)[0]:
                    return False
            else:
                time.sleep(poll)
        return True

    def release(self) -> None:
        try:
            self.client.register_script(_RELEASE)(keys=[self.key], args=[self.token])
        except redis.RedisError as exc:  # it expires by itself
            log.warning("follow: cannot release the lease %s: %s", self.key, exc)

    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl_seconds * 1000))


def live_shards(client: redis.Redis, host: str | None = None, shards: int | None = None) -> set[tuple[int, int]]:
    """(shard, shards) of every follower of `host` (default: this host) holding a lease now. With
    `shards`, those of that count, looked up by name (an agent may not list keys); else found by SCAN."""
    host = host or settings.IPS_HOST_NAME
    if shards is not None:
        pipe = client.pipeline(transaction=False)
        for shard in range(shards):
            pipe.exists(lease_key(shard, shards, host))
        return {(shard, shards) for shard, found in enumerate(pipe.execute()) if found}
    found = set()
    for key in client.scan_iter(match=f"{LEASE_PREFIX}:{host}:*", count=100):
        parts = (key.decode() if isinstance(key, bytes) else str(key)).rsplit(":", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            found.add((int(parts[2]), int(parts[1])))
    return found


def shard_unheld(shard: int, shards: int, client: redis.Redis | None = None, host: str | None = None,
                 **_: Any) -> bool:
    """beat's guard of the `follow` task (config/beat.py): a follower is wanted unless one holds the
    shard's lease now (a second one would return at once)."""
    return not (client or broker_redis()).exists(lease_key(shard, shards, host))


def some_source_unfollowed(client: redis.Redis | None = None, host: str | None = None, shards: int | None = None,
                           **_: Any) -> bool:
    """beat's guard of `read_all_sources`: wanted unless every shard of some shard count is held, so
    that every jail has a follower (the task would then read nothing)."""
    held = live_shards(client or broker_redis(), host, shards)
    return not any(all((shard, count) in held for shard in range(count)) for _, count in held if count > 0)


def followed(jail_id: int, shards: Iterable[tuple[int, int]]) -> bool:
    return any(shard_count > 0 and jail_id % shard_count == shard for shard, shard_count in shards)


def in_shard(jail_id: int, shard: int, shards: int) -> bool:
    return jail_id % shards == shard
