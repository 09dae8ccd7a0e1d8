"""Reading a jail's log sources: new lines in, failures and bans out, exactly once.

`read_source` reads one source from its saved position and runs the jail's filter over the new
lines, then, in ONE transaction, hands the failures to bans.services.record_failures and saves the
new position: after a crash either everything of a read is kept or nothing is, so no line is
counted twice and none is lost. The transaction locks the LogSource row and saves only if the
position is still the one the read started from, so two readers of a source never both count it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bans import policy
from bans.services import Decision, Observed, record_failures
from jails import services as jail_services
from jails.engine.errors import EngineError
from jails.engine.filter import CompiledFilter
from jails.models import Jail
from watchers.journal import read_journal
from watchers.models import LogSource
from watchers.tail import FilePosition, ReadResult, SourceUnavailable, expand_logpaths, read_new_lines

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 8 << 20
JOURNAL_CHUNK_ENTRIES = 20_000
# What a read starts from: a read saves only if these did not change since it began.
POSITION_FIELDS = ("device", "inode", "offset", "head_digest", "lines_read")


@dataclass
class ReadReport:
    lines: int = 0
    decision: Decision = field(default_factory=Decision)
    events: list[str] = field(default_factory=list)
    more: bool = False  # a backlog is left: read again at once


# Compiled filters live as long as the worker process; a source's multi-line sessions live in them.
_compiled: dict[int, tuple[tuple[object, ...], CompiledFilter]] = {}


def compiled_filter(source: LogSource) -> CompiledFilter:
    jail = source.jail
    key = (jail.updated_at, jail.filter.updated_at, jail.filter_id)
    cached = _compiled.get(source.pk)
    if cached is None or cached[0] != key:
        definition = jail_services.load_definition(jail.filter.name, jail.filter_options)
        flt = CompiledFilter.from_definition(definition, logtimezone=jail.logtimezone or None,
                                             datepattern=jail.datepattern or None, maxlines=jail.maxlines,
                                             use_dns="no" if jail.usedns == Jail.UseDns.NO else "yes")
        _compiled[source.pk] = (key, flt)
    return _compiled[source.pk][1]


def sync_sources(jail: Jail) -> list[LogSource]:
    """The jail's file sources as its logpath globs expand now (files that appear later join)."""
    if jail.backend == Jail.Backend.SYSTEMD:
        source, _ = LogSource.objects.get_or_create(jail=jail, kind=LogSource.Kind.JOURNAL, path="")
        return [source]
    paths = expand_logpaths(jail.logpath) or list(jail.logpath)
    sources = [LogSource.objects.get_or_create(jail=jail, kind=LogSource.Kind.FILE, path=p)[0] for p in paths]
    return sources


def position_of(source: LogSource) -> FilePosition | None:
    if source.inode is None:
        return None
    return FilePosition(device=source.device, inode=source.inode, offset=source.offset,
                        head_digest=source.head_digest)


def read_source(source_id: int, *, now: float | None = None, own_addresses: list[str] | None = None,
                max_bytes: int = READ_CHUNK_BYTES) -> ReadReport:
    """Read what is new in one source and act on it.

    The file is read and its lines matched before the transaction, so the database's write lock
    (SQLite) or the source's row lock is held only while failures, bans and the new position are
    written, together. The transaction saves nothing if another reader moved the source's position
    meanwhile (this read is then dropped and the lines are read again from the new position)."""
    now = timezone.now().timestamp() if now is None else now
    source = LogSource.objects.select_related("jail", "jail__filter").filter(pk=source_id).first()
    if source is None:
        return ReadReport(events=["gone: the source was deleted"])
    if source.kind == LogSource.Kind.JOURNAL:
        return read_journal_locked(source_id, now, own_addresses)
    try:
        result = read_new_lines(source.path, position_of(source), max_bytes=max_bytes, encoding=source.jail.logencoding)
    except SourceUnavailable as exc:
        mark_unavailable(source, exc)
        return ReadReport(events=[exc.reason])
    try:
        observed = match_lines(source, result.lines, now)
    except EngineError as exc:
        source.health, source.health_reason = LogSource.Health.DEGRADED, f"filter: {exc}"
        source.save(update_fields=["health", "health_reason", "updated_at"])
        return ReadReport(events=[source.health_reason])
    committed: list[bool] = []
    try:
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(True))  # runs before the others (the firewall's)
            # skip_locked: a source another worker is saving is left to it (PostgreSQL; SQLite has one writer)
            locked = (LogSource.objects.select_for_update(skip_locked=True).filter(pk=source_id)
                      .values_list(*POSITION_FIELDS))
            if list(locked) != [tuple(getattr(source, name) for name in POSITION_FIELDS)]:
                forget_filter(source_id)  # as below: these lines will be read again
                return ReadReport(events=["busy: another worker is reading this source"])
            return act_on(source, result, observed, now, own_addresses, max_bytes)
    except BaseException:
        if not committed:
            # Nothing of this read was saved and its lines will be read again: the filter's multi-line
            # sessions, which saw them, must not see them twice (a session lost is a failure missed).
            forget_filter(source_id)
        raise


def read_journal_locked(source_id: int, now: float, own_addresses: list[str] | None) -> ReadReport:
    """The journal is read in its transaction, the source row locked, as files were before."""
    with transaction.atomic():
        source = (LogSource.objects.select_for_update(skip_locked=True).select_related("jail", "jail__filter")
                  .filter(pk=source_id).first())
        if source is None:
            return ReadReport(events=["busy: another worker is reading this source"])
        return read_journal_source(source, now, own_addresses)


def act_on(source: LogSource, result: ReadResult, observed: list[Observed], now: float,
           own_addresses: list[str] | None, max_bytes: int) -> ReadReport:
    """Count what a read found and save the position it reached (inside the read's transaction)."""
    first_read = source.inode is None
    read_bytes = result.position.offset - (0 if first_read else source.offset)
    catching_up = first_read or read_bytes >= max_bytes
    decision = record_failures(source.jail, observed, now=now, catching_up=catching_up, host=settings.IPS_HOST_NAME,
                               own_addresses=own_addresses if own_addresses is not None else policy.host_addresses())
    save_position(source, result, now)
    for event in result.events:
        log.info("%s: %s", source.path, event)
    return ReadReport(lines=len(result.lines), decision=decision, events=result.events, more=catching_up and
                      read_bytes >= max_bytes)


def read_journal_source(source: LogSource, now: float, own_addresses: list[str] | None) -> ReadReport:
    """The journal: entries after the saved cursor; each entry's time is the journal's own."""
    jail = source.jail
    matches = jail.journalmatch or jail.filter.journalmatch
    try:
        result = read_journal(matches, source.cursor or None, max_entries=JOURNAL_CHUNK_ENTRIES,
                              since_seconds=jail.findtime if not source.cursor else None)
    except SourceUnavailable as exc:
        mark_unavailable(source, exc)
        return ReadReport(events=[exc.reason])
    flt = compiled_filter(source)
    observed = [Observed(host=f.host, time=f.time, lines=tuple(f.lines),
                         fields={k: v for k, v in f.fields.items() if is_plain(v)})
                for entry in result.entries for f in flt.process_line(entry.line, entry.time, journal=True).failures
                if not f.nofail and f.host]
    decision = record_failures(jail, observed, now=now, catching_up=True, host=settings.IPS_HOST_NAME,
                               own_addresses=own_addresses if own_addresses is not None else policy.host_addresses())
    source.cursor = result.cursor or source.cursor
    source.health, source.health_reason = LogSource.Health.OK, ""
    source.lines_read += len(result.entries)
    source.last_read_at = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    source.save()
    return ReadReport(lines=len(result.entries), decision=decision, more=len(result.entries) >= JOURNAL_CHUNK_ENTRIES)


def forget_filter(source_id: int) -> None:
    _compiled.pop(source_id, None)


def match_lines(source: LogSource, lines: list[str], now: float) -> list[Observed]:
    flt = compiled_filter(source)
    observed = []
    for line in lines:
        for failure in flt.process_line(line, now).failures:
            if failure.nofail or not failure.host:
                continue
            observed.append(Observed(host=failure.host, time=failure.time, lines=tuple(failure.lines),
                                     fields={k: v for k, v in failure.fields.items() if is_plain(v)}))
    return observed


def is_plain(value: object) -> bool:
    return isinstance(value, str | int | float | bool | list) or value is None


def save_position(source: LogSource, result: ReadResult, now: float) -> None:
    position = result.position
    source.device, source.inode, source.offset = position.device, position.inode, position.offset
    source.head_digest = position.head_digest
    source.health, source.health_reason = LogSource.Health.OK, ""
    source.lines_read += len(result.lines)
    source.last_read_at = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    source.save(update_fields=[*POSITION_FIELDS, "health", "health_reason", "last_read_at", "updated_at"])


def mark_unavailable(source: LogSource, exc: SourceUnavailable) -> None:
    """A missing file waits (it may appear); anything else degrades the source, with the reason."""
    health = LogSource.Health.WAITING if exc.code == "missing" else LogSource.Health.DEGRADED
    if (source.health, source.health_reason) != (health, exc.reason):
        log.warning("%s: %s", source.path, exc.reason)
        source.health, source.health_reason = health, exc.reason
        source.save(update_fields=["health", "health_reason", "updated_at"])
