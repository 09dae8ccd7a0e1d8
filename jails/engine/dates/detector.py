"""The date detector: which template finds the date of a log line, the way fail2ban does.

A `DateDetector` holds an ordered list of templates (`templates.py`), from a filter's
`datepattern` or fail2ban's default list. Each template is one compiled regex whose
group 1 is the date text (the span fail2ban cuts out of the line before the
failregexes see it) and whose resolver (`fields.py`) turns the match into epoch
seconds. This module owns the search: fail2ban's search order and preferences (the
last template first, a date near the line start wins, winners move up the list), and
the literal guards that let an unanchored template skip lines that cannot hold it.

Speed: everything is compiled in `__init__`; `match()` runs one regex in the common
case (the template that matched last time is tried first) and turns the date text into
epoch seconds through a cache keyed by the captured values, because a log repeats the
same second many times. `time.strptime` is never called.

A detector keeps state between lines (last template, last position), like fail2ban's:
use one detector per log stream and thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from jails.engine.errors import FilterError

from .fields import _Context, _none_template, _template_from_text, parse_zone_offset
from .templates import DateHit, _expand_datepattern, _Template

# --------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------


def _add_literal_guards(templates: list[_Template]) -> None:
    """Give unanchored templates a cheap test that proves most lines hold no match.

    An unanchored template's regex is tried at every position of a line, and
    fail2ban's search order tries every template whenever the date moved (an
    access log: every line whose address has another length), so such searches
    dominate. Each guard holds literal sets that every match of the regex contains
    (one string of each: literals.analyse_all, sound by construction): a line
    lacking one of them cannot match, and `search` says None without running the
    regex. The outcome of every search is unchanged; only its cost drops.
    Anchored templates stay as they are: their regex stops after position 0.
    """
    try:
        from ..literals.extraction import analyse_all  # noqa: PLC0415 - the guards are optional:
        from ..literals.folding import fold_text  # noqa: PLC0415 - dates works without the literals
    except ImportError:  # pragma: no cover - the literal analyser is a sibling module
        return
    folded_line: list[str | None] = ["", ""]  # the last line folded, shared by the guards

    def fold(line: str) -> str | None:
        if folded_line[0] is not line:
            folded_line[0], folded_line[1] = line, fold_text(line)
        return folded_line[1]

    for template in templates:
        if template.anchored or template.is_none:
            continue
        search: Callable[[str], re.Match[str] | None] = _boundary_first(template.compiled) or template.compiled.search
        sets = analyse_all(template.compiled.pattern, template.compiled.flags)
        if sets:
            clauses = tuple(tuple(sorted(found.strings)) for found in sets)
            search = _guarded(search, clauses, sets[0].folded, fold)
        template.search = search


_WORD_START = r"(?=^|\b|\W)"
_WORD_START_RE = re.compile(_WORD_START)


def _boundary_first(compiled: re.Pattern[str]) -> Callable[[str], re.Match[str] | None] | None:
    r"""The same search as `compiled.search` for a regex `(?=^|\b|\W)X`, faster.

    The leading lookahead stops the regex engine from skipping ahead to where X can
    start, so X is searched alone and the lookahead checked where X matched: the
    first position p where X matches and the lookahead holds is what the original
    finds, with the same match (the lookahead captures nothing and consumes nothing,
    and both `^` and `\b` look at the whole string even when a search starts at p).
    Only worth it without IGNORECASE (folded character classes defeat the skipping).
    """
    pattern = compiled.pattern
    if compiled.flags & re.IGNORECASE or not pattern.startswith(_WORD_START):
        return None
    try:
        inner = re.compile(pattern[len(_WORD_START) :], compiled.flags)
    except re.error:
        return None
    if inner.groups != compiled.groups or inner.groupindex != compiled.groupindex:
        return None
    search, holds = inner.search, _WORD_START_RE.match

    def boundary_first_search(line: str) -> re.Match[str] | None:
        m = search(line)
        while m is not None:
            start = m.start()
            if holds(line, start) is not None:
                return m
            m = search(line, start + 1)
        return None

    return boundary_first_search


def _guarded(
    search: Callable[[str], re.Match[str] | None],
    clauses: tuple[tuple[str, ...], ...],
    folded: bool,
    fold: Callable[[str], str | None],
) -> Callable[[str], re.Match[str] | None]:
    def guarded_search(line: str) -> re.Match[str] | None:
        text = fold(line) if folded else line
        if text is not None:
            for strings in clauses:
                for string in strings:
                    if string in text:
                        break
                else:
                    return None  # a required literal is missing: no match is possible
        return search(line)

    return guarded_search


class DateDetector:
    """Finds and reads the date of log lines with fail2ban's templates and preferences.

    datepattern: a filter's datepattern (None: fail2ban's default templates).
    logtimezone: zone of dates written without one ("UTC", "UTC+0200", "CET"...);
    None: local time per the TZ environment variable.
    keep_fractions: keep sub-second parts of pattern dates (fail2ban drops them;
    epoch dates always keep theirs).

    Not thread-safe: it learns from the lines it sees (which template matched last,
    where), as fail2ban's detector does. Use one per log stream.
    """

    # a template unused this long may be overtaken by one that just won (fail2ban's rule)
    UNUSED_SECONDS = 300.0

    def __init__(
        self,
        datepattern: str | None = None,
        logtimezone: str | None = None,
        *,
        keep_fractions: bool = False,
        path: str | None = None,
        lineno: int | None = None,
    ) -> None:
        """path, lineno: where the datepattern was written, for error messages."""
        default_offset = None
        if logtimezone is not None and logtimezone.strip():
            default_offset = parse_zone_offset(logtimezone.strip())
            if default_offset is None:
                raise FilterError(
                    f"logtimezone {logtimezone!r}: unknown time zone "
                    "(use UTC, UTC+HHMM, UTC-HHMM or a zone abbreviation like CET)",
                    path,
                    lineno,
                )
        self._context = _Context(default_offset, keep_fractions)
        templates: list[_Template] = []
        seen: set[str] = set()
        for text, weight in _expand_datepattern(datepattern):
            try:
                template = _none_template() if text.upper() == "{NONE}" else _template_from_text(text, self._context)
            except FilterError as exc:
                raise FilterError(exc.message, path, lineno) from exc
            if template.name in seen:  # fail2ban refuses duplicates of its own; one is enough
                continue
            seen.add(template.name)
            template.weight = weight
            templates.append(template)
        self.templates: list[_Template] = templates
        self.datepattern = datepattern
        _add_literal_guards(templates)
        # True when lines carry no date at all ({NONE}): callers may skip match()
        self.no_date = all(t.is_none for t in templates)
        # where the last date was: its template, its span, and the characters around it
        self._last: _Template | None = None
        self._start, self._end = 1, 0x7FFFFFFF
        self._before = self._first = self._last_char = self._after = "\0"
        self._first_unused = 0  # templates before this index have all won at least once

    @property
    def template_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.templates)

    def match(self, line: str, now: float) -> DateHit | None:
        """The date of `line` (None: no date found, or not a valid one)."""
        last = self._last
        if last is not None and last.anchored:
            # the usual case: same format as the previous line, at the line start
            m = last.search(line)
            if m is not None:
                last.matches += 1
                last.hits += 1
                last.last_used = now
                last.distance = self._start = m.start()
                self._end = m.end()
                if m.end(1) == m.start(1):
                    return None  # an empty date: the line has none, the caller uses now
                return last.resolve(m, now)
        found = self._find(line, now)
        if found is None:
            return None
        template, m = found
        if m.end(1) == m.start(1):
            return None
        return template.resolve(m, now)

    def anchored_last(self) -> _Template | None:
        """The template match() tries first and keeps when it finds a date (the last
        one that won, when it is anchored at the line start), else None.

        For callers that run its `search` themselves on many lines (the counting
        loop of blockloop.tally_block): for a line where it finds a date, match()
        would only update counters, which `credit` does for many lines at once, and
        return `template.resolve(m, now)`, or None for an empty date."""
        last = self._last
        return last if last is not None and last.anchored and not last.is_none else None

    def credit(self, template: _Template, lines: int, start: int, end: int, now: float) -> None:
        """What match() records when `template` (anchored_last()) found the dates of
        `lines` lines, the match in the last of them spanning start:end."""
        template.matches += lines
        template.hits += lines
        template.last_used = now
        template.distance = self._start = start
        self._end = end

    def date_span(self, line: str, now: float) -> tuple[int, int] | None:
        """Where a date sits in `line` even when it cannot be read (match() returns
        None for "0000-12-30 ..." as for no date at all; fail2ban still cuts such
        text out). None: no date text. Like match(), it looks for the date with
        fail2ban's search order, and learns from the line as match() does."""
        found = self._find(line, now)
        if found is None:
            return None
        template, m = found
        start, end = m.span(1)
        if start == end or template.is_none:
            return None
        return start, end

    # -- which template: fail2ban's search order and preferences ---------------------

    def _find(self, line: str, now: float) -> tuple[_Template, re.Match[str]] | None:
        reserve: tuple[_Template, re.Match[str]] | None = None
        skip: _Template | None = None
        last = self._last
        if last is not None:
            m = self._try_last(last, line)
            if m is not None:
                if last.anchored or len(self.templates) == 1 or (m.start() == self._start and m.end() == self._end):
                    return self._won(last, m, line, now)
                reserve = (last, m)  # moved: maybe a different date now, ask the others
            if last.anchored or not self._same_surroundings(line):
                skip = last  # already searched the whole line
        return self._search_all(line, now, skip, reserve)

    def _try_last(self, last: _Template, line: str) -> re.Match[str] | None:
        if last.anchored or not self._same_surroundings(line):
            m = last.search(line)
        else:  # the date is probably where it was: look only there
            m = last.compiled.search(line, self._start, self._end)
        if m is not None:
            last.matches += 1
        return m

    def _same_surroundings(self, line: str) -> bool:
        """Same characters around last time's date span: the date is likely there again.

        The inner characters only count when they are not alphanumeric, otherwise a
        different date format could share them by chance."""
        start, end = self._start, self._end
        left = line[start - 1 : start] == self._before or (
            line[start : start + 1] == self._first and not self._first.isalnum()
        )
        right = line[end : end + 1] == self._after or (
            line[end - 1 : end] == self._last_char and not self._last_char.isalnum()
        )
        return left and right

    def _search_all(
        self, line: str, now: float, skip: _Template | None, reserve: tuple[_Template, re.Match[str]] | None
    ) -> tuple[_Template, re.Match[str]] | None:
        """An anchored match wins at once. An unanchored one wins when it is not further
        into the line than dates were before; otherwise the match nearest to the line
        start wins (a date deep in the message may be attacker-written text)."""
        templates = self.templates
        best_start = reserve[1].start() if reserve else 0x7FFFFFFF
        count = len(templates)
        for i, template in enumerate(templates):
            if template is skip:
                continue
            m = template.search(line)
            if m is None:
                continue
            template.matches += 1
            start = m.start()
            if i + 1 == count or template.anchored:
                return self._won(template, m, line, now)
            if start == 0 and template.hits and not templates[i + 1].matches:
                return self._won(template, m, line, now)  # a known format, and nothing else ever matched
            if start > template.distance or start > self._start:
                if start < best_start:
                    reserve, best_start = (template, m), start
                continue
            return self._won(template, m, line, now)
        return None if reserve is None else self._won(*reserve, line, now)

    def _won(self, template: _Template, m: re.Match[str], line: str, now: float) -> tuple[_Template, re.Match[str]]:
        start, end = m.span()
        template.hits += 1
        template.last_used = now  # fail2ban uses the wall clock: the same in live use
        template.distance = start
        self._start, self._before, self._first = start, line[start - 1 : start], line[start : start + 1]
        self._end, self._last_char, self._after = end, line[end - 1 : end], line[end : end + 1]
        if template is not self._last:  # (the same template again: it has a place already)
            index = self.templates.index(template)
            if self._first_unused == index:
                self._first_unused += 1
            if index:
                self._promote(index)
            self._last = template
        return template, m

    def _promote(self, index: int) -> None:
        """Move a winning template up the list, as fail2ban does, so that the formats a
        log really uses are tried (and preferred) first."""
        templates = self.templates
        template = templates[index]
        rank = template.rank()
        stale = template.last_used - self.UNUSED_SECONDS

        def may_overtake(target: _Template) -> bool:
            return rank > target.rank() or stale > target.last_used

        # jump to the first never-used place, or half-way up
        to = self._first_unused if self._first_unused < index else index // 2
        if not may_overtake(templates[to]):
            if to == index - 1:
                return
            to = index - 1  # or just one step
            if not may_overtake(templates[to]):
                return
        del templates[index]
        templates.insert(to, template)
        while self._first_unused < len(templates) and templates[self._first_unused].hits:
            self._first_unused += 1
