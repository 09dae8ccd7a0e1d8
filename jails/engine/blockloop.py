"""The candidate lines of a log block, counted: `tally_block(cf, ...)` and `commit_prematched`.

The filter (jails.engine.filter.compiled.CompiledFilter) decides one line; this module runs it over a
block, reading and updating the filter's own state directly (it is the filter's inner loop, kept
apart for its size, and it imports the filter, never the other way).

The loop has two halves, so that the first can run in another process:

- `BlockLoop.prematch` takes the usual lines (dated by the template that dated the
  line before, at the line start, readable) through the date, the prefregex and the
  failregexes. It reads no filter state but that template and writes none: it only
  describes what it saw, in a `Segment` (plain data, picklable).
- `BlockLoop.commit` does the rest in order: the session updates and decisions
  (CompiledFilter._count_groups), the counts, and the date template's counters.

A line prematch cannot take (another template, an unreadable date) ends the segment;
`slow_line` sends it through CompiledFilter.tally, which may change the template.

`run` does both halves in one process. `commit_prematched` commits segments a worker
made (jails.engine.parallel) and is exact whatever the worker's state was: a segment
is committed only when it was made with the template this process would have used,
otherwise its lines go through `run` here. Between them, the same decisions and the
same filter state as tally(line, now, mask) called on each line in turn
(tests/engine/test_tally_block.py and test_parallel.py check it).
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from typing import Any

from .errors import RegexTimeout
from .filter.compiled import CompiledFilter
from .filter.results import (
    _NOBODY,
    _NOFAIL,
    _STEP_DATE,
    _STEP_FAIL,
    _STEP_IGNORE,
    _STEP_PREF,
    BlockTally,
    LineResult,
    step_text,
)

Candidates = Sequence[tuple[int, int]]  # (line start in the block, failregex mask)

# Segment record kinds besides a failregex index (>= 0): the line matched several
# failregexes, an ignoreregex took it, or it ran out of time.
SEVERAL, IGNORED, TIMED_OUT = -1, -2, -3
# Slow lines in a row a worker shows its date detector before giving up on the piece.
FOLLOW_SLOW_LINES = 64


class Segment:
    """Candidates[first:stop] of a block as prematch saw them with one date template.

    `records`: (line start, what, payload, date) for each line that matched
    something, in order. what >= 0: that failregex alone, payload its groups;
    SEVERAL: payload [(index, groups), ...]; IGNORED: payload the ignoreregex index;
    TIMED_OUT: payload the message. Other lines were missed (`missed`) or comments.
    """

    __slots__ = ("template", "first", "stop", "slow", "dated", "span", "last_date", "missed", "comments", "records")

    def __init__(self, template: str | None, first: int) -> None:
        self.template = template  # the date template's name (None: no usable one)
        self.first = first
        self.stop = first  # candidates[stop:stop + len(slow)] are lines for slow_line:
        self.slow: list[tuple[int, int]] = []  # those candidates
        self.dated = 0  # lines the template found a date in
        self.span = (0, 0)  # where, in the last of them
        # the date of the last line with a usable one (None: no such line; a sentinel
        # object would not survive the trip from a worker: pickling makes a new one)
        self.last_date: float | None = None
        self.missed = 0
        self.comments = 0
        self.records: list[tuple[int, int, Any, Any]] = []

    def __getstate__(self) -> tuple[Any, ...]:
        # A worker sends many records: marshal writes them in a third of pickle's time
        # (they are plain dicts, lists, tuples, strings and numbers; else pickle does it)
        state = [getattr(self, name) for name in self.__slots__]
        with suppress(ValueError):  # not plain data: pickle sends it as it is
            state[-1] = marshal.dumps(self.records)  # records is the last slot
        return tuple(state)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)
        if isinstance(self.records, bytes):
            self.records = marshal.loads(self.records)  # noqa: S302 - our own segments, from our own workers


class BlockLoop:
    """tally_block's loop over the candidate lines of one block, for one filter."""

    def __init__(
        self, cf: CompiledFilter, now: float, watchdog: Any, keep_ignored: int, keep_matched: bool, out: BlockTally
    ) -> None:
        self.cf = cf
        self.now = now
        self.watchdog = watchdog
        self.keep_ignored = keep_ignored
        self.keep_matched = keep_matched
        self.out = out
        self.dates: Any = cf._dates
        self.template: Any = None
        self.read: dict[str, Any] = {}  # date text -> its DateHit (this template, this now)

    # -- both halves in this process ----------------------------------------------

    def run(self, block: str, candidates: Candidates) -> None:
        first, count = 0, len(candidates)
        while first < count:
            segment = self.prematch(block, candidates, first)
            self.commit(block, segment)
            for candidate in segment.slow:
                self.slow_line(block, candidate)
            first = segment.stop + len(segment.slow)

    def commit_prematched(
        self, block: str, segments: Sequence[Segment], candidates_of: Callable[[], Candidates]
    ) -> None:
        """Commit the segments a worker's prematch_all made of a block's candidates
        (in order, covering them all, each followed by its slow lines, if any).
        `candidates_of()` gives the candidates, for a segment to redo here."""
        candidates: Candidates | None = None
        for segment in segments:
            if segment.first < segment.stop:
                template = self.dates.anchored_last()
                if template is not None and template.name == segment.template:
                    self.commit(block, segment)
                else:  # the worker's detector had another template: redo them here
                    if candidates is None:
                        candidates = candidates_of()
                    self.run(block, candidates[segment.first : segment.stop])
            for candidate in segment.slow:
                self.slow_line(block, candidate)

    def prematch_all(self, block: str, candidates: Candidates) -> list[Segment]:
        """The worker's side of commit_prematched: segments for all the candidates.

        A slow line only moves this date detector on here, as the committing process's
        tally() will move its own; while the detector has no template the usual path
        could try (dates not at the line start: apache), the lines that follow are
        slow ones of the same segment, without a prematch each, and after
        FOLLOW_SLOW_LINES of them the detector is no longer shown the rest of the piece
        (the main process dates those lines itself anyway)."""
        segments: list[Segment] = []
        first, count = 0, len(candidates)
        while first < count:
            segment = self.prematch(block, candidates, first)
            segments.append(segment)
            self.settle(segment)
            first = segment.stop
            if not segment.slow:
                continue  # (the end of the candidates)
            self._follow_date(_line_at(block, segment.slow[0][0]))
            first += 1
            followed = 1
            while first < count and self.dates.anchored_last() is None:
                line = _line_at(block, candidates[first][0])
                if not line or line[0] == "#":
                    break  # prematch counts comments
                if self.watchdog is not None:
                    self.watchdog.count += 1  # (Watchdog.step, inlined)
                segment.slow.append(candidates[first])
                if followed < FOLLOW_SLOW_LINES:  # (else: no usable template here, stop looking)
                    self._follow_date(line)
                    followed += 1
                first += 1
        return segments

    def _follow_date(self, line: str) -> None:
        """Show the date detector a line it would see through tally(). (A worker's
        detector that still strays only costs the committing process a redo.)"""
        try:  # noqa: SIM105 - per line: try costs nothing when nothing is raised, suppress() does
            self.dates.match(line, self.now)
        except RegexTimeout:
            pass  # only the detector's state mattered here

    # -- the halves -----------------------------------------------------------------

    def follow_detector(self) -> tuple[Any, Any, dict[str, Any]]:
        """The template the detector tries first when the usual path can use it (else
        None), its search, and the dates read with it in this block."""
        template = self.dates.anchored_last()
        if template is not self.template:
            self.template = template
            self.read = {}
        return template, template.search if template is not None else None, self.read

    def prematch(self, block: str, candidates: Candidates, first: int) -> Segment:  # one loop, kept whole for speed
        """Candidates from `first` on, up to the first line the usual path cannot take.

        What tally -> DateDetector.match -> _tally_quick do for a usable line, up to
        the failregexes' groups: the date by the template that found the last one
        (its reading from the dates of this block, else from the template), the
        prefregex, the failregexes the line's mask and first character allow, the
        ignoreregexes for a line they matched."""
        cf, now, watchdog = self.cf, self.now, self.watchdog
        find = block.find
        pref_search = cf._pref.regex.search if cf._pref is not None else None
        pref_content = cf._pref_content
        mask_runs, runs_masked = cf._mask_runs, cf._runs_masked
        ignores = [r.regex.search for r in cf._ignore]
        check_all = cf.check_all
        fail_groups, found_groups, pre_groups_of = cf._fail_groups, cf._found_groups, cf._pre_groups
        template, search, read = self.follow_detector()
        segment = Segment(template.name if template is not None else None, first)
        records = segment.records
        append = records.append
        dated, span, missed, comments = 0, None, 0, 0
        last_date = None
        position = first
        for position in range(first, len(candidates)):
            start, mask = candidates[position]
            line = block[start : find("\n", start)]
            if line and line[-1] == "\r":
                line = line[:-1]
            if not line or line[0] == "#":
                comments += 1
                continue
            if watchdog is not None:
                watchdog.count += 1  # (Watchdog.step, inlined)
            kind, index, ig = _STEP_DATE, 0, 0
            m = None
            try:
                m = search(line) if search is not None else None
                if m is None:
                    break  # another template, or none: the detector's whole search order
                hit = read.get(m.group())
                if hit is None or hit.start != m.start(1):
                    hit = None if m.end(1) == m.start(1) else template.resolve(m, now)
                    if hit is None or hit.epoch is None or hit.end <= hit.start:
                        break  # no usable date: tally's fallbacks (the last date, or none)
                    read[m.group()] = hit
                dated += 1
                span = m
                date = hit.epoch
                cut = hit.start
                buf = (line[hit.end :] if cut == 0 else line[:cut] + line[hit.end :]) + "\n"
                pm = None
                if pref_search is not None:
                    kind = _STEP_PREF
                    pm = pref_search(buf)
                    if pm is None:
                        last_date = date
                        missed += 1
                        continue
                    if pref_content:
                        content = pm.group("content")
                        if content:
                            buf = content + "\n"
                key = (mask, buf[0])
                runs = mask_runs.get(key)
                if runs is None:
                    runs = runs_masked(key)
                kind = _STEP_FAIL
                found_index, found_match = -1, None  # the first failregex that matched
                found: list[tuple[int, Any]] | None = None  # all, from a second one on
                ignore_index: int | None = None
                for index, fail_search, prefixes, needed in runs:
                    if prefixes is not None and not buf.startswith(prefixes):
                        continue
                    if needed is not None and needed not in buf:
                        continue
                    fm = fail_search(buf)
                    if fm is None:
                        continue
                    if ignores:
                        kind = _STEP_IGNORE
                        hit_index = None
                        for ig, ignore_search in enumerate(ignores):
                            if ignore_search(buf) is not None:
                                hit_index = ig
                                if not check_all:
                                    break
                        kind = _STEP_FAIL
                        if hit_index is not None:
                            ignore_index = hit_index
                            if not check_all:
                                break
                            continue
                    if found_match is None:
                        found_index, found_match = index, fm
                    elif found is None:
                        found = [(found_index, found_match), (index, fm)]
                    else:
                        found.append((index, fm))
                    if not check_all:
                        break
                last_date = date
                if found_match is None:
                    if ignore_index is None:
                        missed += 1
                    else:
                        append((start, IGNORED, ignore_index, date))
                elif found is None:
                    append((start, found_index, fail_groups(found_index, found_match, pm), date))
                else:
                    append((start, SEVERAL, found_groups(found, pre_groups_of(pm)), date))
            except RegexTimeout as exc:
                if m is not None and span is not m:
                    dated += 1  # the date was found before time ran out
                    span = m
                where = step_text(kind, ig if kind == _STEP_IGNORE else index)
                append((start, TIMED_OUT, f"{where}: {exc}", None))
        else:
            position = len(candidates)
        segment.stop = position
        if position < len(candidates):
            segment.slow = [candidates[position]]
        segment.dated, segment.missed, segment.comments, segment.last_date = dated, missed, comments, last_date
        if span is not None:
            segment.span = span.span()
        return segment

    def commit(self, block: str, segment: Segment) -> None:  # one loop, kept whole for speed
        """The second half for a segment prematch made with the detector's current
        template: sessions and decisions, counts, then the template's counters and
        the last date."""
        cf, out, now, watchdog = self.cf, self.out, self.now, self.watchdog
        fail_hits = out.fail_hits
        keep_ignored, keep_matched = self.keep_ignored, self.keep_matched
        count_groups, count_found, tally_result = cf._count_groups, cf._count_found, cf._tally_result
        matched = ignored = 0
        for start, what, payload, date in segment.records:
            if watchdog is not None:
                watchdog.count += 1  # no regex runs here, but a long commit is no stuck line
            if what >= 0:
                code = count_groups(payload, now)
                if not keep_matched:
                    if not code:
                        out.missed += 1
                        continue
                    if not code & _NOFAIL:
                        matched += 1
                        fail_hits[what] += 1
                        continue
                    if 0 <= keep_ignored <= out._shown:  # (an ignored line nobody asked to see)
                        ignored += 1
                        fail_hits[what] += 1
                        continue
                outcomes = [(what, bool(code & _NOFAIL), bool(code & _NOBODY))] if code else []
            elif what == SEVERAL:
                outcomes = count_found(payload, now)
            else:
                line = _line_at(block, start)
                if what == IGNORED:
                    self.other(line, LineResult(ignored=True, ignore_index=payload))
                else:
                    self.other(line, LineResult(timed_out=payload))
                continue
            if keep_matched:
                self.other(_line_at(block, start), tally_result(outcomes, None, date))
                continue
            counts = nofail = False
            for _index, quiet, _nobody in outcomes:
                if quiet:
                    nofail = True
                else:
                    counts = True
            if nofail:
                if keep_ignored < 0 or out._shown < keep_ignored:
                    self.other(_line_at(block, start), tally_result(outcomes, None, date))
                    continue
                ignored += 1
            elif counts:
                matched += 1
            else:
                out.missed += 1
            for index, _quiet, _nobody in outcomes:
                fail_hits[index] += 1
        out.matched += matched
        out.ignored += ignored
        out.missed += segment.missed
        out.comments += segment.comments
        self.settle(segment)

    def settle(self, segment: Segment) -> None:
        """What the segment's lines tell the date detector and the filter: the
        template's counters and the last date (as DateDetector.match and tally)."""
        if segment.dated:
            start, end = segment.span
            self.dates.credit(self.dates.anchored_last(), segment.dated, start, end, self.now)
        if segment.last_date is not None:
            self.cf._last_date = segment.last_date

    def slow_line(self, block: str, candidate: tuple[int, int]) -> None:
        """A line the usual path cannot take, through tally() (whole date search)."""
        start, mask = candidate
        if self.watchdog is not None:
            self.watchdog.count += 1
        try:
            result = self.cf.tally(_line_at(block, start), self.now, mask)
        except RegexTimeout as exc:
            # landed outside a regex (tally catches those): same outcome
            result = LineResult(timed_out=f"{step_text(_STEP_DATE, 0)}: {exc}")
        self.other(_line_at(block, start), result)

    def other(self, line: str, result: LineResult | None) -> None:
        self.out.add(line, result, self.keep_ignored, self.keep_matched)


def _line_at(block: str, start: int) -> str:
    line = block[start : block.find("\n", start)]
    return line[:-1] if line and line[-1] == "\r" else line


# --- the entry points: a block of candidate lines counted, one process or prematched by workers ----


def tally_block(
    cf: CompiledFilter,
    block: str,
    candidates: Iterable[tuple[int, int]],
    now: float,
    *,
    watchdog: Any = None,
    keep_ignored: int = 0,
    keep_matched: bool = False,
) -> BlockTally:
    """cf.tally() for the candidate lines of a block, in one loop: the same decisions
    and the same filter state as cf.tally(line, now, mask) called on each line in turn.

    `candidates`: (line start in `block`, mask) pairs in order, as
    literals.Prefilter.candidate_masks gives them. Lines that are empty, "\\r" or
    start with "#" are only counted (`comments`), as fail2ban-regex skips them.
    `watchdog` (guard.Watchdog): its counter is bumped per line, as step() does.
    Lines are only counted, except those returned in `notable` with their result
    for the caller to count itself: lines that ran out of time, the first
    `keep_ignored` ignored lines (-1: all) and, with `keep_matched`, matched lines.

    Why it is faster than tally() per line: the usual line (the date found by the
    template that found the last one, at the line start, and readable) goes
    through one function with everything at hand, the template's counters are
    added up once, a date text already read in this block is not read again, and
    nothing is allocated for a line that does not match.
    """
    out = BlockTally(len(cf._fail), len(cf._ignore))
    if not cf.block_loop_ok:
        _tally_one_by_one(cf, block, candidates, now, watchdog, keep_ignored, keep_matched, out)
        return out
    loop = BlockLoop(cf, now, watchdog, keep_ignored, keep_matched, out)
    loop.run(block, candidates if isinstance(candidates, list) else list(candidates))
    return out


def commit_prematched(
    cf: CompiledFilter,
    block: str,
    segments: Sequence[Any],
    candidates_of: Callable[[], list[tuple[int, int]]],
    now: float,
    *,
    watchdog: Any = None,
    keep_ignored: int = 0,
    keep_matched: bool = False,
) -> BlockTally:
    """tally_block for a block whose candidates a worker prematched: `segments`
    from blockloop.BlockLoop.prematch_all. `candidates_of()` gives the block's
    candidates again, for a segment that must be matched again here (made with
    another date template than this filter's detector would use). Only for
    filters whose tally_block takes the block loop (block_loop_ok)."""
    if not cf.block_loop_ok:
        raise ValueError(f"filter {cf.name!r}: no block loop (multi-line or merged prefregex groups)")

    out = BlockTally(len(cf._fail), len(cf._ignore))
    BlockLoop(cf, now, watchdog, keep_ignored, keep_matched, out).commit_prematched(
        block, segments, candidates_of
    )
    return out


def _tally_one_by_one(
    cf: CompiledFilter,
    block: str,
    candidates: Iterable[tuple[int, int]],
    now: float,
    watchdog: Any,
    keep_ignored: int,
    keep_matched: bool,
    out: BlockTally,
) -> None:
    """tally_block for filters the block loop does not cover: tally() per line."""
    find = block.find
    for start, mask in candidates:
        line = block[start : find("\n", start)]
        if line and line[-1] == "\r":
            line = line[:-1]
        if not line or line[0] == "#":
            out.comments += 1
            continue
        if watchdog is not None:
            watchdog.count += 1  # (Watchdog.step, inlined)
        try:
            result = cf.tally(line, now, mask)
        except RegexTimeout as exc:
            # landed outside a regex (tally catches those): same outcome
            result = LineResult(timed_out=str(exc))
        out.add(line, result, keep_ignored, keep_matched)
