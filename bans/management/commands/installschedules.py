"""manage.py installschedules: make Celery beat's schedule rows match this host (bans/periodic.py)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from bans import periodic


class Command(BaseCommand):
    help = ("Create or correct the periodic tasks Celery beat sends (log followers, fallback reads, recidive, "
            "statistics, cleanup, this host's firewall sync and reconcile) from the settings: IPS_HOST_NAME names "
            "the firewall host, IPS_FOLLOWER_SHARDS the number of log followers. Idempotent: an admin's intervals "
            "and switched-off rows stay; run it after migrate, before beat starts (scripts/run.sh and "
            "deploy/ips-beat.service do).")

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default=settings.IPS_HOST_NAME,
                            help="the firewall host whose rows to install (default: IPS_HOST_NAME, now %(default)s)")
        parser.add_argument("--shards", type=int, default=settings.IPS_FOLLOWER_SHARDS,
                            help="log followers to schedule; 0 keeps the scheduled count, or 1 on SQLite and 2 "
                                 "on PostgreSQL for a new install (default: IPS_FOLLOWER_SHARDS, now %(default)s)")

    def handle(self, *args: Any, **options: Any) -> None:
        shards = periodic.shards_to_run(max(0, options["shards"]), connection.vendor)
        report = periodic.install(options["host"], shards)
        if options["verbosity"] >= 1:
            for line in periodic.describe(report):
                self.stdout.write(line)
