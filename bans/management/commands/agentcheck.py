"""`python manage.py agentcheck`: on a fleet agent, can it reach the central server with its own
credentials? Says what works and what to do about what does not; exits non-zero if anything fails.
scripts/agent.sh runs it before starting the agent."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from config.redisclient import broker_redis
from jails.models import Host


class Command(BaseCommand):
    help = __doc__ or ""

    def handle(self, *args: Any, **options: Any) -> None:
        name = settings.IPS_HOST_NAME
        if settings.IPS_FLEET_ROLE != "agent":
            raise CommandError("IPS_FLEET_ROLE is not agent: run this with the environment `hostctl add` printed")
        try:
            host = Host.objects.filter(name=name).first()
        except DatabaseError as exc:
            raise CommandError(f"cannot use the central database as {name} ({exc}): check DATABASE_URL, that "
                               "PostgreSQL listens on the fleet's network and allows this host (pg_hba.conf)") from None
        if host is None or host.state == Host.State.REVOKED:
            raise CommandError(f"{name} is not in the fleet (removed, or never added): on the panel, run "
                               f"`manage.py hostctl add {name} ...`")
        self.stdout.write(f"database: ok, {name} is {host.get_state_display()}")
        try:
            broker_redis().ping()
        except redis.RedisError as exc:
            raise CommandError(f"cannot use the central Redis as {name} ({exc}): check IPS_REDIS_URL, that Redis "
                               "listens on the fleet's network, and its TLS settings") from None
        self.stdout.write("redis: ok")
