"""Where each watcher reads, and how far it got.

A LogSource is one file (a jail's logpath glob, expanded) or one journal match. Its read position
(file identity and byte offset, or journal cursor) is committed in the same transaction as the
failures read up to it, so after any crash reading resumes exactly there: no line counted twice,
none lost.
"""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils import timezone

from jails.models import Jail, this_host_name
from watchers.skips import describe

# A filter whose regex ran out of time on a line shows as degraded this long after (jail page,
# jailctl status): long enough to be seen, short enough to clear once the attack or the fix is over.
SLOW_SHOWN = dt.timedelta(hours=1)


class LogSource(models.Model):
    class Kind(models.TextChoices):
        FILE = "file", "log file"
        JOURNAL = "journal", "systemd journal"

    class Health(models.TextChoices):
        OK = "ok", "reading"
        WAITING = "waiting", "not there yet"
        DEGRADED = "degraded", "cannot be read"

    jail = models.ForeignKey(Jail, on_delete=models.CASCADE, related_name="sources")
    # the host whose file (or journal) this is: each host of a fleet reads its own (IPS_HOST_NAME)
    host = models.CharField(max_length=40, default=this_host_name)
    kind = models.CharField(max_length=7, choices=Kind.choices, default=Kind.FILE)
    path = models.CharField(max_length=1000, blank=True, help_text="The file; empty for the journal.")

    # file identity and position
    device = models.BigIntegerField(null=True, blank=True)
    inode = models.BigIntegerField(null=True, blank=True)
    offset = models.BigIntegerField(default=0)
    # a digest of the file's first line: tells a recreated or copy-truncated file from the old one
    head_digest = models.CharField(max_length=64, blank=True)
    # the offset is inside a line longer than IPS_MAX_LINE_BYTES: the next read discards up to its newline
    skipping_line = models.BooleanField(default=False)
    # journal position
    cursor = models.TextField(blank=True)

    health = models.CharField(max_length=8, choices=Health.choices, default=Health.OK)
    health_reason = models.TextField(blank=True)
    lines_read = models.BigIntegerField(default=0)
    last_read_at = models.DateTimeField(null=True, blank=True)
    # what was read but not matched or not counted, by reason (watchers.skips.REASONS): running totals
    skipped = models.JSONField(default=dict, blank=True)
    # a regex of the jail's filter ran out of time on a line of this source (the line was skipped)
    slow_at = models.DateTimeField(null=True, blank=True)
    slow_reason = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["jail", "host", "kind", "path"],
                                               name="logsource_one_per_jail_host_path")]
        ordering = ["jail", "path"]

    def __str__(self) -> str:
        return f"{self.jail_id}: {self.path or 'journal'}"

    def filter_slow(self, now: dt.datetime | None = None) -> bool:
        """Whether a regex of the jail's filter ran out of time on this source's lines lately."""
        return self.slow_at is not None and self.slow_at >= (now or timezone.now()) - SLOW_SHOWN

    def skipped_described(self) -> list[str]:
        return describe(self.skipped or {})
