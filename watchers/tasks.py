"""Celery tasks of the watchers app: find each enabled jail's sources and read them.

Only what matched leaves the matcher: a task reads a whole source (all its new lines) and the
database receives failures and bans, never a message per line.
"""

from __future__ import annotations

from celery import shared_task

from jails.models import Jail
from watchers import services


@shared_task(acks_late=True)
def read_all_sources() -> int:
    """Scheduled by beat: re-expand every enabled jail's logpath globs and read each source."""
    count = 0
    for jail in Jail.objects.filter(enabled=True):
        for source in services.sync_sources(jail):
            read_source.delay(source.pk)
            count += 1
    return count


@shared_task(acks_late=True)
def read_source(source_id: int) -> int:
    """Read one source from its saved position; a backlog is read in chunks, one task each."""
    report = services.read_source(source_id)
    if report.more:
        read_source.delay(source_id)
    return report.lines
