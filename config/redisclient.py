"""The one way our processes talk to the broker's Redis outside Celery: follower leases (watchers.lease)
and the fleet's Redis users (jails.fleet.redis_acl)."""

from __future__ import annotations

from functools import cache
from urllib.parse import parse_qs, urlsplit

import redis
from django.conf import settings


@cache
def redis_client(url: str) -> redis.Redis:
    """A client for the broker's Redis (redis-py's pool reconnects after a fork by itself).

    kombu's `redis+socket://PATH?virtual_host=N` (used across network namespaces) is not redis-py's
    spelling, so it is translated here."""
    parts = urlsplit(url)
    if parts.scheme == "redis+socket":
        db_number = int((parse_qs(parts.query).get("virtual_host") or ["0"])[0] or 0)
        return redis.Redis(unix_socket_path=parts.path, db=db_number, socket_timeout=5)
    tls = getattr(settings, "CELERY_BROKER_USE_SSL", None) if parts.scheme == "rediss" else None
    return redis.Redis.from_url(url, socket_timeout=5, **(tls or {}))


def broker_redis() -> redis.Redis:
    return redis_client(settings.CELERY_BROKER_URL)
