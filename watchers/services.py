"""Reading a jail's log sources: new lines in, failures and bans out, exactly once.

`read_source` reads one source from its saved position and runs the jail's filter over the new
lines, then, in ONE transaction, hands the failures to bans.services.record_failures and saves the
new position: after a crash either everything of a read is kept or nothing is, so no line is
counted twice and none is lost. The transaction locks the LogSource row and saves only if the
position is still the one the read started from, so two readers of a source never both count it.

Matching is the engine at its command-line speed and bounded in time (`match_lines`): for a
single-line filter the literal prefilter finds, at C speed, the few lines that can match at all,
and only those go through the filter; every regex run is under a watchdog (a line that keeps a
regex busy longer than IPS_LIVE_REGEX_BUDGET_MS is skipped and counted, and the filter shows as
degraded), and a read matches for at most IPS_LIVE_READ_BUDGET_MS: it then stops, exactly after
the last line it matched, and the rest is read next, after the follower's other sources.
Whatever a read leaves out is counted by reason (watchers.skips).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bans import hostaddrs
from bans.services import Decision, Observed, record_failures
from jails import services as jail_services
from jails.engine.errors import EngineError, RegexTimeout
from jails.engine.filter import CompiledFilter, LineResult
from jails.engine.guard import Watchdog
from jails.engine.literals import Prefilter, date_cut_for
from jails.logpaths import expand_logpaths
from jails.models import Jail, logpath_on
from watchers import dns, skips
from watchers.journal import JournalEntry, read_journal
from watchers.models import LogSource
from watchers.tail import FilePosition, ReadResult, SourceUnavailable, read_new_lines

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 8 << 20
JOURNAL_CHUNK_ENTRIES = 20_000
# What a read starts from: a read saves only if these did not change since it began.
POSITION_FIELDS = ("device", "inode", "offset", "head_digest", "skipping_line", "lines_read")
# Text of the first block of a log that the prefilter measures its literals' selectivity on.
PREFILTER_SAMPLE_CHARS = 256 << 10


@dataclass
class ReadReport:
    lines: int = 0
    decision: Decision = field(default_factory=Decision)
    events: list[str] = field(default_factory=list)
    more: bool = False  # a backlog is left: read again at once
    skipped: dict[str, int] = field(default_factory=dict)  # watchers.skips.REASONS -> count
    write_seconds: float = 0.0  # how long the read's transaction held the database
    # (device, inode, offset) of a file source's saved position after the read, None if unknown
    position: tuple[int | None, int | None, int] | None = None


@dataclass
class Matched:
    """What matching a read's lines found."""

    observed: list[Observed] = field(default_factory=list)
    timed_out: int = 0  # lines skipped because a regex ran out of time on them
    slowest: str = ""  # which regex, in the engine's words
    stopped_at: int | None = None  # the read's matching time ran out: only lines[:stopped_at] were matched
    unresolved: int = 0  # failures whose host name gave no address (usedns yes/warn)


@dataclass
class Compiled:
    """A jail's filter compiled for one source, with its state (dates, sessions) and its prefilter."""

    key: tuple[object, ...]
    filter: CompiledFilter
    prefilter: Any = None
    prefilter_built: bool = False
    slow: SlowFilter = field(default_factory=lambda: SlowFilter())

    def prefilter_for(self, sample: str) -> Any:
        """The literal prefilter of a single-line filter (None: every line must be tried), built on
        the first block read (its selectivity is measured on real lines)."""
        if not self.prefilter_built:
            self.prefilter_built = True
            self.prefilter = build_prefilter(self.filter, sample[:PREFILTER_SAMPLE_CHARS])
        return self.prefilter


# Compiled filters live as long as the worker process; a source's multi-line sessions live in them.
_compiled: dict[int, Compiled] = {}


def compiled(source: LogSource) -> Compiled:
    jail = source.jail
    key = (jail.updated_at, jail.filter.updated_at, jail.filter_id)
    cached = _compiled.get(source.pk)
    if cached is None or cached.key != key:
        definition = jail_services.load_definition(jail.filter.name, jail.filter_options)
        flt = CompiledFilter.from_definition(definition, logtimezone=jail.logtimezone or None,
                                             datepattern=jail.datepattern or None, maxlines=jail.maxlines,
                                             use_dns="no" if jail.usedns == Jail.UseDns.NO else "yes")
        cached = _compiled[source.pk] = Compiled(key, flt)
    return cached


def build_prefilter(flt: CompiledFilter, sample: str) -> Any:
    """As `filtertest` builds it: the failregexes (and an up-front ignoreregex) of a single-line
    filter. None when some regex has no literal every match must hold, or anything goes wrong (a
    prefilter only makes matching faster; without one every line is tried)."""
    if flt.maxlines > 1:
        return None
    try:
        patterns = list(flt.failregex_patterns)
        if flt.ignore_first:
            patterns += flt.ignoreregex_patterns
        return Prefilter.build(patterns, flt.regex_flags, date_cut=date_cut_for(flt.datepattern), sample=sample,
                               single_line=True)
    except Exception:  # an optimisation, never a failure
        log.exception("filter %s: no literal prefilter; every line is tried", flt.name)
        return None


def sync_sources(jail: Jail, host: str | None = None) -> list[LogSource]:
    """The jail's file sources on this host (IPS_HOST_NAME) as its logpath globs there expand now
    (files that appear later join)."""
    host = host or settings.IPS_HOST_NAME
    if jail.backend == Jail.Backend.SYSTEMD:
        source, _ = LogSource.objects.get_or_create(jail=jail, host=host, kind=LogSource.Kind.JOURNAL, path="")
        return [source]
    logpath = logpath_on(jail, host)
    paths = expand_logpaths(logpath) or logpath
    return [LogSource.objects.get_or_create(jail=jail, host=host, kind=LogSource.Kind.FILE, path=p)[0]
            for p in paths]


def position_of(source: LogSource) -> FilePosition | None:
    if source.inode is None:
        return None
    return FilePosition(device=source.device, inode=source.inode, offset=source.offset,
                        head_digest=source.head_digest, skipping=source.skipping_line)


def read_source(source_id: int, *, now: float | None = None, own_addresses: list[str] | None = None,
                max_bytes: int = READ_CHUNK_BYTES, backlog: bool = False,
                wait_turn: Callable[[], None] = lambda: None) -> ReadReport:
    """Read what is new in one source and act on it.

    The file is read and its lines matched before the transaction, so the database's write lock
    (SQLite) or the source's row lock is held only while failures, bans and the new position are
    written, together. The transaction saves nothing if another reader moved the source's position
    meanwhile (this read is then dropped and the lines are read again from the new position).

    `backlog`: the previous read of this source left lines unread (the follower knows), so this
    one is still catching up: its lines keep their own time and those older than findtime do not
    count, as on a first read.

    `wait_turn`: called just before the transaction begins (the follower's rest on SQLite, which
    leaves the write lock to other writers for a while: the file is read and matched meanwhile)."""
    now = timezone.now().timestamp() if now is None else now
    source = LogSource.objects.select_related("jail", "jail__filter").filter(pk=source_id).first()
    if source is None:
        return ReadReport(events=["gone: the source was deleted"])
    if source.kind == LogSource.Kind.JOURNAL:
        wait_turn()  # the journal is read inside its transaction
        return read_journal_locked(source_id, now, own_addresses)
    try:
        result = read_lines(source, max_bytes)
    except SourceUnavailable as exc:
        wait_turn()  # a write too
        mark_unavailable(source, exc)
        return ReadReport(events=[exc.reason])
    if nothing_new(source, result, now):
        return ReadReport(position=(source.device, source.inode, source.offset))
    try:
        matched = match_lines(source, result, now)
    except EngineError as exc:
        forget_filter(source_id)  # it saw lines that will be read again
        wait_turn()
        source.health, source.health_reason = LogSource.Health.DEGRADED, f"filter: {exc}"
        source.save(update_fields=["health", "health_reason", "updated_at"])
        return ReadReport(events=[source.health_reason])
    if matched.stopped_at is not None and result.cut is not None:
        result = result.first(matched.stopped_at)
    resolve_names(source.jail, matched)  # before the transaction: a lookup may take seconds
    wait_turn()
    committed: list[bool] = []
    writing = time.perf_counter()
    try:
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(True))  # runs before the others (the firewall's)
            # skip_locked: a source another worker is saving is left to it (PostgreSQL; SQLite has one writer).
            # The source's row only (of=self, unordered): locking its jail's row too needs a right to change
            # jails, which a fleet agent's role has not, and no one else needs
            locked = (LogSource.objects.select_for_update(skip_locked=True, of=("self",)).filter(pk=source_id)
                      .order_by().values_list(*POSITION_FIELDS))
            if list(locked) != [tuple(getattr(source, name) for name in POSITION_FIELDS)]:
                forget_filter(source_id)  # as below: these lines will be read again
                return ReadReport(events=["busy: another worker is reading this source"])
            report = act_on(source, result, matched, now, own_addresses, backlog)
    except BaseException:
        if not committed:
            # Nothing of this read was saved and its lines will be read again: the filter's multi-line
            # sessions, which saw them, must not see them twice (a session lost is a failure missed).
            forget_filter(source_id)
        raise
    report.write_seconds = time.perf_counter() - writing
    report.position = (result.position.device, result.position.inode, result.position.offset)
    skips.SKIP_LOG.note(source.path, report.skipped)
    return report


# A read that finds nothing writes nothing (the safety net reads every source every 2 s), except to
# say, this often, that the source is still being read (LogSource.last_read_at, on the jail page).
IDLE_TOUCH_SECONDS = 60.0


def nothing_new(source: LogSource, result: ReadResult, now: float) -> bool:
    """Whether a read found nothing to save: no line, no skip, the same position, a healthy source
    whose last_read_at is recent enough."""
    saved = position_of(source)
    return (not result.lines and not result.long_lines and not result.events and saved is not None
            and result.position == saved and source.health == LogSource.Health.OK
            and source.last_read_at is not None and now - source.last_read_at.timestamp() < IDLE_TOUCH_SECONDS)


def read_journal_locked(source_id: int, now: float, own_addresses: list[str] | None) -> ReadReport:
    """The journal is read in its transaction, the source row locked, as files were before."""
    writing = time.perf_counter()
    with transaction.atomic():
        source = (LogSource.objects.select_for_update(skip_locked=True, of=("self",))
                  .select_related("jail", "jail__filter").filter(pk=source_id).order_by("pk").first())
        if source is None:
            return ReadReport(events=["busy: another worker is reading this source"])
        report = read_journal_source(source, now, own_addresses)
    report.write_seconds = time.perf_counter() - writing
    skips.SKIP_LOG.note(f"journal of jail {source.jail.name}", report.skipped)
    return report


def act_on(source: LogSource, result: ReadResult, matched: Matched, now: float,
           own_addresses: list[str] | None, backlog: bool) -> ReadReport:
    """Count what a read found and save the position it reached (inside the read's transaction)."""
    first_read = source.inode is None
    catching_up = first_read or backlog or result.more
    decision = record_failures(source.jail, matched.observed, now=now, catching_up=catching_up,
                               host=settings.IPS_HOST_NAME,
                               own_addresses=own_addresses if own_addresses is not None else hostaddrs.addresses())
    skipped = {"long": result.long_lines, "encoding": result.replaced_lines, "timeout": matched.timed_out,
               "dns": matched.unresolved, **decision.skipped_by}
    note_skips(source, skipped, matched, now)
    save_position(source, result, now)
    for event in result.events:
        log.info("%s: %s", source.path, event)
    return ReadReport(lines=len(result.lines), decision=decision, events=result.events, more=result.more,
                      skipped={reason: n for reason, n in skipped.items() if n})


def note_skips(source: LogSource, skipped: dict[str, int], matched: Matched, now: float) -> None:
    """Add a read's skipped lines to the source's totals; a regex that ran out of time marks the
    filter as degraded (LogSource.slow_at, shown on the jail page and by jailctl status)."""
    if any(skipped.values()):
        source.skipped = skips.added(source.skipped or {}, skipped)
    if matched.timed_out:
        source.slow_at = dt.datetime.fromtimestamp(now, tz=dt.UTC)
        source.slow_reason = f"{matched.slowest} ({matched.timed_out} line(s) skipped in the last read)"


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
    matched = match_entries(source, result.entries)
    resolve_names(jail, matched)
    entries = result.entries if matched.stopped_at is None else result.entries[:matched.stopped_at]
    decision = record_failures(jail, matched.observed, now=now, catching_up=True, host=settings.IPS_HOST_NAME,
                               own_addresses=own_addresses if own_addresses is not None else hostaddrs.addresses())
    skipped = {"timeout": matched.timed_out, "dns": matched.unresolved, **decision.skipped_by}
    note_skips(source, skipped, matched, now)
    if matched.stopped_at is None:
        source.cursor = result.cursor or source.cursor
    elif entries:
        source.cursor = entries[-1].cursor or source.cursor
    source.health, source.health_reason = LogSource.Health.OK, ""
    source.lines_read += len(entries)
    source.last_read_at = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    source.save()
    return ReadReport(lines=len(entries), decision=decision,
                      more=matched.stopped_at is not None or len(result.entries) >= JOURNAL_CHUNK_ENTRIES,
                      skipped={reason: n for reason, n in skipped.items() if n})


def forget_filter(source_id: int) -> None:
    _compiled.pop(source_id, None)


# --- matching, bounded ---------------------------------------------------------------------------


def match_lines(source: LogSource, result: ReadResult, now: float) -> Matched:
    """The failures in a read's lines, each line's regex work bounded in time, the whole read's too
    (when the read can be cut after any line: ReadResult.first)."""
    entry = compiled(source)
    flt = entry.filter
    lines = result.lines
    indexes: Sequence[int] | range = range(len(lines))
    if lines and flt.maxlines == 1:
        block = result.text()
        prefilter = entry.prefilter_for(block)
        if prefilter is not None:
            indexes = candidate_lines(block, prefilter.candidate_offsets(block))
    return run_filter(flt, lines, indexes, now, can_stop=result.cut is not None, slow=entry.slow)


# --- one read of a file for every jail that follows it ------------------------------------------------

# Several jails often read one file (the seed has three on access.log). Their sources are read one
# after another, usually from the same position: the second and third take the lines the first
# read, as long as they are this fresh. Reusing a read is exact: it is what the file held when it was
# read, and the lines written since are read next time. Each source still has its own transaction.
# A read is kept for the others only when the file has other sources, and only until each has taken
# it: a flood's read holds megabytes of lines, which a file with one jail would keep for nothing
# while the next read is matched beside it.
SHARED_READ_SECONDS = 1.0
# How long the number of sources of a file is trusted (one count query per file and period): a jail
# added on a file already read shares its reads from then on (until then it reads for itself).
SOURCES_COUNTED_SECONDS = 60.0


@dataclass
class SharedRead:
    key: tuple[object, ...]
    result: ReadResult
    at: float
    readers: set[int] = field(default_factory=set)  # the sources that took it (each takes it once)


_last_reads: dict[str, SharedRead] = {}
_sources_of_path: dict[str, tuple[float, int]] = {}  # path -> (when counted, its file sources)


def read_lines(source: LogSource, max_bytes: int) -> ReadResult:
    """The new lines of a file source, read now or shared with a source of the same file that has
    just read from the same position."""
    position = position_of(source)
    key = (position, max_bytes, source.jail.logencoding, settings.IPS_MAX_LINE_BYTES)
    moment = time.monotonic()
    for path in [path for path, shared in _last_reads.items() if moment - shared.at >= SHARED_READ_SECONDS]:
        del _last_reads[path]  # nothing stale is kept (a read may hold megabytes)
    shared = _last_reads.get(source.path)
    if shared is not None and shared.key == key and source.pk not in shared.readers:
        shared.readers.add(source.pk)
        if len(shared.readers) >= sources_of_path(source.path, moment):
            del _last_reads[source.path]  # every source took it
        return shared.result
    result = read_new_lines(source.path, position, max_bytes=max_bytes, encoding=source.jail.logencoding,
                            max_line_bytes=settings.IPS_MAX_LINE_BYTES)
    # (a read that found nothing is not worth sharing: the next one may find lines)
    if result.lines and sources_of_path(source.path, moment) > 1:
        _last_reads[source.path] = SharedRead(key, result, moment, {source.pk})
    return result


def sources_of_path(path: str, moment: float) -> int:
    """How many file sources of enabled jails read `path`, counted at most every SOURCES_COUNTED_SECONDS
    (jails of another follower's shard count too: a read kept for one of them waits in vain, and goes
    after SHARED_READ_SECONDS as before)."""
    counted = _sources_of_path.get(path)
    if counted is None or moment - counted[0] >= SOURCES_COUNTED_SECONDS:
        if len(_sources_of_path) > 10_000:  # paths of deleted sources: forget them all, they are counted again
            _sources_of_path.clear()
        counted = _sources_of_path[path] = (moment, LogSource.objects.filter(
            host=settings.IPS_HOST_NAME, kind=LogSource.Kind.FILE, path=path, jail__enabled=True).count())
    return counted[1]


def match_entries(source: LogSource, entries: Sequence[JournalEntry]) -> Matched:
    """match_lines for journal entries: each is matched at its own time, as a journal line."""
    entry = compiled(source)
    lines = [each.line for each in entries]
    return run_filter(entry.filter, lines, range(len(lines)), None, times=[each.time for each in entries],
                      journal=True, slow=entry.slow)


def candidate_lines(block: str, offsets: Sequence[int]) -> list[int]:
    """Line numbers (0-based) of the lines starting at `offsets` in `block` (sorted offsets)."""
    count = block.count
    index, previous = 0, 0
    found = []
    for offset in offsets:
        index += count("\n", previous, offset)
        previous = offset
        found.append(index)
    return found


def run_filter(flt: CompiledFilter, lines: Sequence[str], indexes: Sequence[int] | range, now: float | None, *,
               can_stop: bool = True, times: Sequence[float] | None = None, journal: bool = False,
               slow: SlowFilter | None = None) -> Matched:
    """Match the lines at `indexes`, each under the watchdog, the whole within the read's budget.

    A line that runs out of time is skipped and counted. The first one ends the read (the other
    sources go first) and puts the filter in slow mode (`slow`): for a while its lines get only
    SLOW_LINE_SECONDS each and a timeout no longer ends the read, so a stream of crafted lines costs
    a bounded share of the follower instead of keeping this source behind for ever."""
    matched = Matched()
    slowed = slow is not None and slow.active()
    budget = SLOW_LINE_SECONDS if slowed else settings.IPS_LIVE_REGEX_BUDGET_SECONDS
    clock = time.perf_counter
    deadline = clock() + settings.IPS_LIVE_READ_BUDGET_SECONDS
    current, mark = -1, 0  # the line being handled, and the failures found before it
    try:
        with line_guard(budget) as watchdog:
            for index in indexes:
                current, mark = index, len(matched.observed)
                if can_stop and clock() > deadline:
                    matched.stopped_at = index
                    break
                if not match_one(flt, lines[index], times[index] if times is not None else now, journal,
                                 watchdog, matched):
                    if slow is not None:
                        slow.noted()
                    if can_stop and not slowed:
                        matched.stopped_at = index + 1
                        break
    except RegexTimeout as exc:
        # a tick that came late, outside the regex: the line being handled counts as timed out
        # (whatever it found is dropped: never half a line) and the read ends after it
        matched.timed_out += 1
        matched.slowest = matched.slowest or str(exc)
        del matched.observed[mark:]
        matched.stopped_at = current + 1 if current >= 0 else 0
    return matched


def match_one(flt: CompiledFilter, line: str, when: float | None, journal: bool, watchdog: Watchdog | None,
              matched: Matched) -> bool:
    """One line's failures into `matched`; False when it ran out of time (it is counted then)."""
    if watchdog is not None:
        watchdog.count += 1  # (Watchdog.step, inlined: once per line)
    try:
        result = flt.process_line(line, when or 0.0, journal=journal)
    except RegexTimeout as exc:  # landed outside a regex (process_line catches those): same outcome
        result = LineResult(timed_out=str(exc))
    if result.timed_out is not None:
        matched.timed_out += 1
        matched.slowest = result.timed_out
        return False
    for failure in result.failures:
        if failure.nofail or not failure.host:
            continue
        matched.observed.append(Observed(host=failure.host, time=failure.time, lines=tuple(failure.lines),
                                         fields={k: v for k, v in failure.fields.items() if is_plain(v)}))
    return True


# After a regex of a source's filter ran out of time, its lines get this much each for SLOW_MODE_SECONDS.
SLOW_LINE_SECONDS = 0.02
SLOW_MODE_SECONDS = 600.0


@dataclass
class SlowFilter:
    """A source's filter that ran out of time lately (per worker process, with its compiled filter)."""

    until: float = 0.0

    def active(self) -> bool:
        return time.monotonic() < self.until

    def noted(self) -> None:
        self.until = time.monotonic() + SLOW_MODE_SECONDS


_unguarded_warned = False


@contextmanager
def line_guard(budget: float) -> Iterator[Watchdog | None]:
    """A watchdog over the lines matched in the block (SIGALRM: only in the main thread, which is
    where Celery's pool processes run tasks; elsewhere, a test's thread, matching is unguarded)."""
    global _unguarded_warned
    if threading.current_thread() is not threading.main_thread():
        if not _unguarded_warned:
            _unguarded_warned = True
            log.warning("live matching outside the main thread: regexes are not time-bounded here")
        yield None
        return
    with Watchdog(budget) as watchdog:
        yield watchdog if watchdog.active else None


# The most one read waits for DNS answers (the follower's other sources wait with it). A name not
# answered by then counts as unresolved ("dns"); its late answer is cached for the next read.
DNS_READ_SECONDS = 0.5


def resolve_names(jail: Jail, matched: Matched) -> None:
    """usedns yes/warn: a failure whose host is a name counts for each address the name has (as in
    fail2ban), looked up through the bounded resolver (watchers.dns: at most DNS_READ_SECONDS a
    read, answers cached); a name with no address is counted as skipped. Addresses are never looked up,
    and with usedns no the filter's <HOST> does not even match a name."""
    if jail.usedns not in (Jail.UseDns.YES, Jail.UseDns.WARN):
        return
    names = {item.host for item in matched.observed if dns.address_of(item.host) is None}
    if not names:
        return
    found, _ = dns.hosts_to_addresses(names, jail.usedns, jail=jail.name, timeout=DNS_READ_SECONDS)
    observed: list[Observed] = []
    for item in matched.observed:
        if item.host not in names:
            observed.append(item)
            continue
        addresses = found.get(item.host) or []
        if not addresses:
            matched.unresolved += 1
        observed.extend(replace(item, host=address) for address in addresses)
    matched.observed = observed


PLAIN_TYPES = (str, int, float, bool, list, type(None))  # a tuple: isinstance is slower with a union


def is_plain(value: object) -> bool:
    return isinstance(value, PLAIN_TYPES)


def save_position(source: LogSource, result: ReadResult, now: float) -> None:
    position = result.position
    source.device, source.inode, source.offset = position.device, position.inode, position.offset
    source.head_digest = position.head_digest
    source.skipping_line = position.skipping
    source.health, source.health_reason = LogSource.Health.OK, ""
    source.lines_read += len(result.lines)
    source.last_read_at = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    source.save(update_fields=[*POSITION_FIELDS, "health", "health_reason", "last_read_at", "skipped", "slow_at",
                               "slow_reason", "updated_at"])


def mark_unavailable(source: LogSource, exc: SourceUnavailable) -> None:
    """A missing file waits (it may appear); anything else degrades the source, with the reason."""
    health = LogSource.Health.WAITING if exc.code == "missing" else LogSource.Health.DEGRADED
    if (source.health, source.health_reason) != (health, exc.reason):
        log.warning("%s: %s", source.path, exc.reason)
        source.health, source.health_reason = health, exc.reason
        source.save(update_fields=["health", "health_reason", "updated_at"])
