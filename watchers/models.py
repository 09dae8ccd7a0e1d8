"""Where each watcher reads, and how far it got.

A LogSource is one file (a jail's logpath glob, expanded) or one journal match. Its read position
(file identity and byte offset, or journal cursor) is committed in the same transaction as the
failures read up to it, so after any crash reading resumes exactly there: no line counted twice,
none lost.
"""

from __future__ import annotations

from django.db import models

from jails.models import Jail


class LogSource(models.Model):
    class Kind(models.TextChoices):
        FILE = "file", "log file"
        JOURNAL = "journal", "systemd journal"

    class Health(models.TextChoices):
        OK = "ok", "reading"
        WAITING = "waiting", "not there yet"
        DEGRADED = "degraded", "cannot be read"

    jail = models.ForeignKey(Jail, on_delete=models.CASCADE, related_name="sources")
    kind = models.CharField(max_length=7, choices=Kind.choices, default=Kind.FILE)
    path = models.CharField(max_length=1000, blank=True, help_text="The file; empty for the journal.")

    # file identity and position
    device = models.BigIntegerField(null=True, blank=True)
    inode = models.BigIntegerField(null=True, blank=True)
    offset = models.BigIntegerField(default=0)
    # a digest of the file's first line: tells a recreated or copy-truncated file from the old one
    head_digest = models.CharField(max_length=64, blank=True)
    # journal position
    cursor = models.TextField(blank=True)

    health = models.CharField(max_length=8, choices=Health.choices, default=Health.OK)
    health_reason = models.TextField(blank=True)
    lines_read = models.BigIntegerField(default=0)
    last_read_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["jail", "kind", "path"], name="logsource_one_per_jail_path")]
        ordering = ["jail", "path"]

    def __str__(self) -> str:
        return f"{self.jail_id}: {self.path or 'journal'}"
