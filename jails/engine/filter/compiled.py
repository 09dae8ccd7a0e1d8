"""The per-line matcher: a FilterDefinition compiled into something that eats log lines.

Behaviour follows fail2ban's filter (so stock filters and their sample logs agree):
- the date is found first and cut out of the line; regexes see the rest;
- `prefregex` must match first; its `<F-CONTENT>` (if any) is what failregexes see;
- with `maxlines > 1` lines are kept in a buffer joined by newlines; a match consumes
  the lines it covers (except those skipped through `<SKIPLINES>`);
- `<F-MLFID>` groups lines of one session (connection id): groups accumulate across
  lines, `<F-NOFAIL>` marks helper lines, `<F-MLFGAINED>` a success (which cancels
  pending failures) and `<F-MLFFORGET>` the end of the session;
- hosts are reported raw: addresses normalised, names never resolved.

State changes (line buffer, last date, sessions) are applied only after every regex of a
line has run, so a RegexTimeout raised inside a regex leaves the filter as it was.

This module owns `CompiledFilter`: its construction from a definition, the date cut,
the prefregex, the failregex dispatch (first characters, literal guards, masks) and
the ignoreregex, for `process_line` and for the count-only `tally`. What a line gives
comes from `results.py`, whom it blames from `hosts.py`, the buffer and sessions from
`multiline.py`. `blockloop.py` is its inner loop over a block and imports it, never
the other way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from ..definition import FilterDefinition
from ..errors import FilterError, RegexTimeout
from ..literals.extraction import required_prefixes, required_string
from ..regex import CompiledRegex, compile_failregex, compile_regex, first_chars
from .hosts import _host_of
from .multiline import (
    BufLine,
    _add_user,
    _count_session,
    _join,
    _merge_session,
    _Sessions,
    _SessionTxn,
    _split_lines,
    merge_into_session,
)
from .results import (
    _COUNTS,
    _NO_FIELDS,
    _NO_LINES,
    _NOBODY,
    _NOFAIL,
    _STEP_DATE,
    _STEP_FAIL,
    _STEP_IGNORE,
    _STEP_PREF,
    Failure,
    LineResult,
    _Step,
)


class DateDetectorLike(Protocol):
    def match(self, line: str, now: float) -> Any: ...


# How long (seconds, against `now`) a line without its own date may borrow the last one.
_LAST_DATE_WINDOW = 60.0
# Distinct first characters remembered by the failregex dispatch (attackers choose them).
_DISPATCH_MAX = 512
# Groups that are bookkeeping, not data worth showing with a failure.
_INTERNAL_KEYS = frozenset({"matches", "nofail-matches", "mlfpending", "mlfgained", "mlfforget", "nofail", "content"})


class _Candidate(NamedTuple):
    regex_index: int
    groups: dict[str, Any]
    matched: list[BufLine]


class CompiledFilter:
    """A compiled filter with its per-log state (line buffer, last date, sessions)."""

    def __init__(
        self,
        name: str,
        failregex: list[CompiledRegex],
        ignoreregex: list[CompiledRegex],
        prefregex: CompiledRegex | None,
        dates: DateDetectorLike | None,
        maxlines: int,
        check_all: bool,
    ) -> None:
        self.name = name
        self._fail = failregex
        self._ignore = ignoreregex
        self._pref = prefregex
        self._dates = dates
        self.maxlines = maxlines
        self.check_all = check_all
        self.failregex_patterns: list[str] = [r.source for r in failregex]
        self.ignoreregex_patterns: list[str] = [r.source for r in ignoreregex]
        self.prefregex_pattern: str | None = prefregex.source if prefregex else None
        self.prefregex_lines = [prefregex.original] if prefregex else []
        self.regex_flags = re.MULTILINE if maxlines > 1 else 0
        self.failregex_lines = [r.original for r in failregex]
        self.ignoreregex_lines = [r.original for r in ignoreregex]
        # ignoreregex checked up front on the whole buffer when there are many failregexes
        self.ignore_first = bool(ignoreregex) and len(ignoreregex) < len(failregex) - 2
        self._buffer: list[BufLine] = []
        self._last_date: float | None = None
        self._sessions = _Sessions()
        self._fail_searches: list[Callable[[str], re.Match[str] | None]] = [r.regex.search for r in failregex]
        # first-character dispatch: skip failregexes that cannot match a text
        self._first_chars = [first_chars(r.source, self.regex_flags) for r in failregex]
        self._all_runs = tuple(enumerate(self._fail_searches))
        self._dispatch: dict[str, Any] | None = {} if any(c is not None for c in self._first_chars) else None
        # the lean path covers single-line filters without an up-front ignoreregex pass
        self._quick_ok = maxlines == 1 and not self.ignore_first
        self._mask_runs: dict[tuple[int, str], Any] = {}  # (mask, first char) -> runs, for tally()
        # per failregex, found when it is first dispatched (_guards_of): prefixes one of
        # which a text must start with to match (None: any), a string it must hold
        self._guards: dict[int, tuple[tuple[str, ...] | None, str | None]] = {}
        self._tally_step = _Step()
        # regexes whose groups need no merging: CompiledRegex.groups(m) is m.groupdict()
        self._fail_plain = [not r.alt_groups and not r.tuple_groups for r in failregex]
        self._pref_plain = prefregex is not None and not prefregex.alt_groups and not prefregex.tuple_groups
        self._pref_content = prefregex is not None and "content" in prefregex.regex.groupindex
        # the groups of a plain prefregex that failures take (content is what failregexes saw)
        self._pref_keep = tuple(n for n in prefregex.regex.groupindex if n != "content") if prefregex else ()
        # tally_block's loop covers the lean path with a plain prefregex (or none)
        self._block_ok = self._quick_ok and (prefregex is None or self._pref_plain)
        # the datepattern the detector was built from (None: fail2ban's defaults), for
        # the literal prefilter's date-cut promise (literals.date_cut_for)
        self.datepattern: str | None = getattr(dates, "datepattern", None)

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_definition(
        cls,
        d: FilterDefinition,
        *,
        logtimezone: str | None = None,
        datepattern: str | None = None,
        maxlines: int | None = None,
        check_all: bool = False,
        use_dns: str = "yes",
        date_detector: DateDetectorLike | None = None,
    ) -> CompiledFilter:
        """Compile a definition. `check_all` tries every failregex on every line (as
        fail2ban-regex does) instead of stopping at the first that matches."""
        lines = maxlines if maxlines is not None else d.maxlines
        if lines < 1:
            raise FilterError(f"maxlines must be at least 1, not {lines}", d.sources[-1] if d.sources else None)
        pref = (
            compile_regex(d.prefregex, kind="prefregex", use_dns=use_dns)
            if d.prefregex is not None and d.prefregex.pattern.strip()
            else None
        )
        fails = [
            compile_failregex(r, prefregex=pref, multiline=lines > 1, use_dns=use_dns)
            for r in d.failregex
            if r.pattern.strip()
        ]
        if not fails:
            raise FilterError(f"filter {d.name!r} has no failregex", d.sources[-1] if d.sources else None)
        ignores = [compile_regex(r, kind="ignoreregex", use_dns=use_dns) for r in d.ignoreregex if r.pattern.strip()]
        if date_detector is None:
            date_detector = _make_date_detector(
                datepattern if datepattern is not None else d.datepattern, logtimezone, d
            )
        cf = cls(d.name, fails, ignores, pref, date_detector, lines, check_all)
        cf.datepattern = datepattern if datepattern is not None else d.datepattern
        return cf

    def date_template_hits(self) -> list[tuple[str, int]] | None:
        """(template name, lines it dated) for each date template, for reports."""
        templates = getattr(self._dates, "templates", None)
        if templates is None:
            return None
        return [(str(getattr(t, "name", t)), int(getattr(t, "hits", 0))) for t in templates]

    def reset(self) -> None:
        """Forget the per-log state (buffer, last date, sessions)."""
        self._buffer = []
        self._last_date = None
        self._sessions.clear()

    # --- per line -------------------------------------------------------------------

    def process_line(self, line: str, now: float, journal: bool = False) -> LineResult:
        """Match one log line (without its newline); `now` is the current epoch.

        A RegexTimeout raised (by guard.Watchdog) while a regex runs is caught here:
        the line is dropped, the filter state is left as it was before the line, and
        the result says which regex ran out of time."""
        step = _Step()
        try:
            return self._process(line, now, journal, step)
        except RegexTimeout as exc:
            return LineResult(timed_out=f"{step.describe()}: {exc}")

    def tally(self, line: str, now: float, mask: int = -1) -> LineResult | None:
        """process_line for callers that only count (fail2ban-regex's summary).

        `mask`: bits of the failregexes worth trying on this line (bit i: failregex
        i), as literals.Prefilter.candidate_masks gives them; a failregex whose bit
        is clear cannot match, so skipping it changes nothing. Returns None when no
        failregex matched (the line is missed and there is nothing else to count);
        otherwise a LineResult whose failures carry nofail and regex index, and as
        host None (nobody named yet) or "" (someone), but no fields, lines or
        attempts (count-only callers never read them; the shared empty containers
        must not be filled). The filter state evolves as with process_line (dates,
        sessions and every decision they make), except that sessions updated here
        remember no matched lines: a later process_line reports only the lines it
        saw itself as a failure's lines."""
        if not self._quick_ok:
            result = self.process_line(line, now)
            return result if result.failures or result.ignored or result.timed_out is not None else None
        step = self._tally_step
        step.kind = _STEP_DATE
        try:
            dates = self._dates
            hit = dates.match(line, now) if dates is not None else None
            return self._tally_dated(line, hit, now, mask, step)
        except RegexTimeout as exc:
            return LineResult(timed_out=f"{step.describe()}: {exc}")

    def _tally_dated(self, line: str, hit: Any, now: float, mask: int, step: _Step) -> LineResult | None:
        """tally() once the date detector has looked at the line (it learns from each
        line, so it must look only once)."""
        if hit is not None and hit.epoch is not None and hit.end > hit.start:
            # the usual case (_cut_date's first branch, inlined)
            return self._tally_quick(line, line[: hit.start] + line[hit.end :], hit.epoch, now, mask, step)
        text, date, no_date, hit = self._cut_after_match(line, now, hit)
        if no_date:
            result = self._general(line, text, date, no_date, hit, now, step)
            if result.failures or result.ignored:
                return result
            return None
        return self._tally_quick(line, text, date, now, mask, step)

    @property
    def block_loop_ok(self) -> bool:
        """Whether blockloop.tally_block takes the fast loop (BlockLoop), which
        also lets workers prematch blocks (jails.engine.parallel)."""
        return self._block_ok and hasattr(self._dates, "anchored_last")

    def _tally_quick(self, line: str, text: str, date: float, now: float, mask: int, step: _Step) -> LineResult | None:
        """_quick with the failregexes narrowed by `mask`, light failures, and
        count-only session updates (_tally_found)."""
        buf = text + "\n"
        pm = None
        pre_groups: dict[str, Any] | None = None
        pref = self._pref
        if pref is not None:
            step.kind = _STEP_PREF
            pm = pref.regex.search(buf)
            if pm is None:
                self._last_date = date
                return None
            if self._pref_plain:
                # the groups are read only if a failregex matches (most lines: once)
                if self._pref_content:
                    content = pm.group("content")
                    if content:
                        buf = content + "\n"
            else:
                pre_groups = pref.groups(pm)
                content = pre_groups.pop("content", None)
                if content:
                    buf = content + "\n"
        key = (mask, buf[0])
        runs = self._mask_runs.get(key)
        if runs is None:
            runs = self._runs_masked(key)
        step.kind = _STEP_FAIL
        found: list[tuple[int, re.Match[str]]] | None = None
        ignore_index: int | None = None
        for index, search, prefixes, needed in runs:
            if prefixes is not None and not buf.startswith(prefixes):
                continue
            if needed is not None and needed not in buf:
                continue
            step.index = index
            m = search(buf)
            if m is None:
                continue
            if self._ignore:
                ignored = self._search_ignores(buf, step)
                step.kind = _STEP_FAIL
                if ignored is not None:
                    ignore_index = ignored
                    if not self.check_all:
                        break
                    continue
            if found is None:
                found = [(index, m)]
            else:
                found.append((index, m))
            if not self.check_all:
                break
        self._last_date = date
        if found is None:
            if ignore_index is None:
                return None
            return LineResult(ignored=True, ignore_index=ignore_index)
        if pre_groups is None:
            pre_groups = self._pre_groups(pm)
        return self._tally_result(self._tally_found(found, pre_groups, now), ignore_index, date)

    def _pre_groups(self, pm: re.Match[str] | None) -> dict[str, Any]:
        """A plain prefregex's groups but its content (which the failregexes saw)."""
        if pm is None:
            return {}
        return {name: pm.group(name) for name in self._pref_keep}

    def _tally_found(
        self, found: list[tuple[int, re.Match[str]]], pre_groups: dict[str, Any], now: float
    ) -> list[tuple[int, bool, bool]]:
        """(failregex index, nofail, nobody named yet) of each failure the matches of a
        line make: _make_failure(light=True) and _merge_session for counting only.

        The same decisions (who, whether it counts, session groups, users, pending and
        gained flags), without the matched-line lists nobody reads when counting.
        Sessions updated here therefore remember no lines ("matches")."""
        return self._count_found(self._found_groups(found, pre_groups), now)

    def _found_groups(
        self, found: list[tuple[int, re.Match[str]]], pre_groups: dict[str, Any]
    ) -> list[tuple[int, dict[str, Any]]]:
        """_tally_found's first half, which reads no state: each match's groups."""
        fail_regexes, plain = self._fail, self._fail_plain
        groups: list[tuple[int, dict[str, Any]]] = []
        for index, m in found:
            fail: dict[str, Any] = m.groupdict() if plain[index] else fail_regexes[index].groups(m)
            # {**pre_groups, **(fail's set groups)}, from the other side: the same
            # values, only unset groups may stay as None (None and absent read alike)
            for k, v in pre_groups.items():
                if fail.get(k) is None:
                    fail[k] = v
            groups.append((index, fail))
        return groups

    def _count_found(self, fails: list[tuple[int, dict[str, Any]]], now: float) -> list[tuple[int, bool, bool]]:
        """_tally_found's second half: the session updates and decisions."""
        failures: list[tuple[int, bool, bool]] = []
        store = self._sessions
        changes: dict[str, dict[str, Any] | None] = {}  # this line's session changes
        for index, fail in fails:
            mlfid = fail.get("mlfid")
            if mlfid is not None:
                fail = _count_session(fail, mlfid, changes, store, now)
            get = fail.get
            if get("ip4") is None and get("ip6") is None and get("dns") is None and get("fid") is None:
                if mlfid is None and not get("nofail"):
                    continue  # names nobody and has no session to wait on
                fail["mlfpending"] = 1
                failures.append((index, bool(get("nofail")), True))
            else:
                failures.append((index, bool(get("nofail")), False))
        for key, value in changes.items():
            if value is None:
                store.unset(key)
            else:
                store.put(key, value, now)
        return failures

    def _fail_groups(self, index: int, m: re.Match[str], pm: re.Match[str] | None) -> dict[str, Any]:
        """The groups of a line one failregex matched, after a plain prefregex match
        `pm` (or none): the first half of counting it, which reads no state."""
        fail: dict[str, Any] = m.groupdict() if self._fail_plain[index] else self._fail[index].groups(m)
        if pm is not None:
            for k in self._pref_keep:  # the prefregex's groups, where the failregex has none
                if fail.get(k) is None:
                    fail[k] = pm.group(k)
        return fail

    def _count_groups(self, fail: dict[str, Any], now: float) -> int:
        """_tally_found for the usual line, from its groups (_fail_groups): the same
        decisions and session state, with the session cache touched directly (one
        line, one change: nothing to defer). Returns 0 (no failure), else _COUNTS or
        _NOFAIL, plus _NOBODY when nobody is named yet."""
        mlfid = fail.get("mlfid")
        if mlfid is not None:
            data = self._sessions._data
            entry = data.get(mlfid)
            if entry is not None and entry[1] <= now:
                del data[mlfid]  # expired (as _Sessions.get)
                entry = None
            known = entry[0] if entry is not None else None
            # _count_session, applied at once: a known session is updated in place
            # (its place and expiry stay), a forgotten one is dropped, a new one added
            mlfgained = fail.get("mlfgained")
            if mlfgained and not fail.get("nofail"):
                fail["nofail"] = mlfgained
            forget = fail.pop("mlfforget", None)
            users: set[str] | None
            if known is not None:
                users = merge_into_session(known, fail, bool(mlfgained))
                fail = known
                if forget:
                    del data[mlfid]
            else:
                users = None
                if not forget:
                    users = _add_user(fail, fail.get("user"))
                    self._sessions.set(mlfid, fail, now)
            if fail.pop("mlfpending", 0) or (users and len(users) > 1):
                # pending failures or several users tried: this is a failure after all
                fail.pop("nofail", None)
                fail.pop("mlfgained", None)
        get = fail.get
        code = _NOFAIL if get("nofail") else _COUNTS
        if get("ip4") is None and get("ip6") is None and get("dns") is None and get("fid") is None:
            if mlfid is None and code == _COUNTS:
                return 0  # names nobody and has no session to wait on
            fail["mlfpending"] = 1
            return code | _NOBODY
        return code

    def _runs_masked(
        self, key: tuple[int, str]
    ) -> tuple[tuple[int, Callable[[str], re.Match[str] | None], tuple[str, ...] | None, str | None], ...]:
        """The failregexes to try on a text starting with key[1] whose mask is key[0],
        each with the prefixes one of which the text must start with (None: any) and
        a string it must hold (None: nothing known)."""
        mask, first = key
        runs = self._dispatch.get(first) if self._dispatch is not None else self._all_runs
        if runs is None:
            runs = self._runs_for(first)
        masked = []
        for i, search in runs:
            if not mask >> i & 1:
                continue
            prefixes, needed = self._guards_of(i)
            if prefixes is not None:
                prefixes = tuple(p for p in prefixes if p[0] == first)
                if not prefixes:
                    continue  # no prefix starts with this character: it cannot match
            masked.append((i, search, prefixes, needed))
        if len(self._mask_runs) < _DISPATCH_MAX * 4:
            self._mask_runs[key] = tuple(masked)
        return tuple(masked)

    def _guards_of(self, index: int) -> tuple[tuple[str, ...] | None, str | None]:
        """What failregex `index` cannot match without: prefixes one of which the text
        starts with (literals.required_prefixes) and a string it holds beyond them
        (literals.required_string). Found the first time the regex is dispatched."""
        guards = self._guards.get(index)
        if guards is None:
            source = self._fail[index].source
            prefixes = required_prefixes(source, self.regex_flags)
            guards = self._guards[index] = (prefixes, required_string(source, self.regex_flags, prefixes))
        return guards

    def _tally_after_date(self, line: str, hit: Any, now: float, mask: int) -> LineResult | None:
        """tally() for a line the date detector has already looked at."""
        step = self._tally_step
        step.kind = _STEP_DATE
        try:
            return self._tally_dated(line, hit, now, mask, step)
        except RegexTimeout as exc:
            return LineResult(timed_out=f"{step.describe()}: {exc}")

    def _tally_result(
        self, outcomes: list[tuple[int, bool, bool]], ignore_index: int | None, date: float
    ) -> LineResult:
        """A LineResult of light failures, as tally() returns it."""
        failures = [
            Failure(None if nobody else "", date, _NO_FIELDS, 0, _NO_LINES, nofail, index)
            for index, nofail, nobody in outcomes
        ]
        ignored = ignore_index is not None or any(f.nofail for f in failures)
        return LineResult(failures, ignored, _NO_LINES, ignore_index)

    def _process(self, line: str, now: float, journal: bool, step: _Step) -> LineResult:
        hit: Any = None
        date: Any
        if journal:
            text, date, no_date = line, now, False
        else:
            step.kind = _STEP_DATE
            text, date, no_date, hit = self._cut_date(line, now)
        if self._quick_ok and not no_date:
            return self._quick(line, text, date, hit, now, step)
        return self._general(line, text, date, no_date, hit, now, step)

    def _quick(self, line: str, text: str, date: float, hit: Any, now: float, step: _Step) -> LineResult:
        """The common case, kept lean: one line (maxlines 1), a date found, regexes
        run on the text directly. Same outcome as _general, fewer objects."""
        buf = text + "\n"
        pre_groups: dict[str, Any] = {}
        pref = self._pref
        if pref is not None:
            step.kind = _STEP_PREF
            pm = pref.regex.search(buf)
            if pm is None:
                self._last_date = date
                return LineResult(date=hit)
            pre_groups = pref.groups(pm)
            content = pre_groups.pop("content", None)
            if content:
                buf = content + "\n"
        dispatch = self._dispatch
        runs = dispatch.get(buf[0]) if dispatch is not None else self._all_runs
        if runs is None:
            runs = self._runs_for(buf[0])
        step.kind = _STEP_FAIL
        matched: list[int] | None = None
        found: list[tuple[int, re.Match[str]]] | None = None
        ignore_index: int | None = None
        for index, search in runs:
            step.index = index
            m = search(buf)
            if m is None:
                continue
            if matched is None:
                matched = []
            matched.append(index)
            if self._ignore:
                ignored = self._search_ignores(buf, step)
                step.kind = _STEP_FAIL
                if ignored is not None:
                    ignore_index = ignored
                    if not self.check_all:
                        break
                    continue
            if found is None:
                found = []
            found.append((index, m))
            if not self.check_all:
                break
        if found is None:
            self._last_date = date
            result = LineResult(date=hit, matched=matched or [], ignore_index=ignore_index)
            result.ignored = ignore_index is not None
            return result
        result = LineResult(date=hit, matched=matched or [], ignore_index=ignore_index)
        result.ignored = ignore_index is not None
        lines = [BufLine(text, line)]
        sessions = _SessionTxn(self._sessions, now)
        for index, m in found:
            cand = _Candidate(index, self._fail[index].groups(m), lines)
            failure = self._make_failure(cand, pre_groups, date, sessions)
            if failure is not None:
                result.failures.append(failure)
                if failure.nofail:
                    result.ignored = True
        sessions.commit()
        self._last_date = date
        return result

    def _general(self, line: str, text: str, date: Any, no_date: bool, hit: Any, now: float, step: _Step) -> LineResult:
        result = LineResult(date=hit)
        plan = self._search(BufLine(text, line), result, step)
        # Every regex has run. Below is bookkeeping only: no slow code, so a timeout
        # can no longer land in the middle of it in practice.
        if plan.candidates:
            when = date if date is not None else now
            sessions = _SessionTxn(self._sessions, now)
            for cand in plan.candidates:
                failure = self._make_failure(cand, plan.pre_groups, when, sessions)
                if failure is not None:
                    result.failures.append(failure)
                    if failure.nofail:
                        result.ignored = True
            sessions.commit()
        # commit: a handful of plain assignments
        if self.maxlines > 1:
            self._buffer = plan.buffer
        if date is not None and not no_date:
            self._last_date = date
        return result

    def _cut_date(self, line: str, now: float) -> tuple[str, Any, bool, Any]:
        """Find the date and cut it out; fail2ban's fallbacks for lines without one.
        The date returned is epoch seconds or None."""
        hit = self._dates.match(line, now) if self._dates is not None else None
        return self._cut_after_match(line, now, hit)

    def _cut_after_match(self, line: str, now: float, hit: Any) -> tuple[str, Any, bool, Any]:
        """_cut_date once the detector has looked at the line (it learns from each
        line, so it must look only once)."""
        if hit is not None and hit.epoch is not None and hit.end > hit.start:
            return line[: hit.start] + line[hit.end :], hit.epoch, False, hit
        # no usable date: borrow a recent one, else none (the failure gets `now`)
        last = self._last_date
        if last is not None and last > now - _LAST_DATE_WINDOW:
            return line, last, True, hit
        if hit is None:
            span = _unreadable_date_span(self._dates, line, now)
            if span is not None:
                # fail2ban still cuts date-like text it could not read ("0000-12-30 ...")
                return line[: span[0]] + line[span[1] :], None, True, hit
            return line, None, True, hit
        return line[: hit.start] + line[hit.end :], None, True, hit

    def _search(self, current: BufLine, result: LineResult, step: _Step) -> _Plan:
        """Run the regexes over the buffer (no state change): what matched, and the
        buffer to keep for the next line."""
        multi = self.maxlines > 1
        if multi:
            org = [*self._buffer, current]
            if len(org) > self.maxlines:
                org = org[-self.maxlines :]
        else:
            org = [current]
        plan = _Plan(org)
        whole = _join(org)
        buf: str | None = whole

        if self.ignore_first:
            found = self._search_ignores(whole, step)
            if found is not None:
                result.ignore_index = found
                result.ignored = True
                return plan

        if self._pref is not None:
            step.kind = _STEP_PREF
            pm = self._pref.regex.search(whole)
            if pm is None:
                return plan
            plan.pre_groups = self._pref.groups(pm)
            content = plan.pre_groups.pop("content", None)
            if content:
                plan.buffer = [BufLine(content, content)]
                buf = None

        check_all = self.check_all
        if buf is None:
            buf = _join(plan.buffer)
        runs = self._dispatch.get(buf[0]) if self._dispatch is not None else self._all_runs
        if runs is None:
            runs = self._runs_for(buf[0])
        step.kind = _STEP_FAIL
        for index, search in runs:
            if buf is None:
                buf = _join(plan.buffer)
            step.index = index
            m = search(buf)
            if m is None:
                continue
            regex = self._fail[index]
            matched, unmatched = _split_lines(regex, m, buf, org)
            result.matched.append(index)
            if self._ignore:
                found = self._search_ignores(_join(matched) if multi else buf, step)
                if found is not None:
                    result.ignore_index = found
                    result.ignored = True
                    if multi or not check_all:
                        plan.buffer = unmatched
                    buf = None
                    if not check_all:
                        break
                    continue
            if multi or not check_all:
                plan.buffer, buf = unmatched, None
            plan.candidates.append(_Candidate(index, regex.groups(m), matched))
            if not check_all:
                break
        return plan

    def _search_ignores(self, buf: str, step: _Step) -> int | None:
        found: int | None = None
        kind = step.kind
        step.kind = _STEP_IGNORE
        for index, regex in enumerate(self._ignore):
            step.index = index
            if regex.regex.search(buf) is not None:
                found = index
                if not self.check_all:
                    break
        step.kind = kind
        return found

    def _runs_for(self, first: str) -> tuple[tuple[int, Callable[[str], re.Match[str] | None]], ...]:
        """The failregexes that can match a text starting with `first`, in order."""
        runs = tuple(
            (i, search)
            for i, (search, chars) in enumerate(zip(self._fail_searches, self._first_chars, strict=True))
            if chars is None or first in chars
        )
        if self._dispatch is not None and len(self._dispatch) < _DISPATCH_MAX:
            self._dispatch[first] = runs
        return runs

    # --- building failures ----------------------------------------------------------

    def _make_failure(
        self, cand: _Candidate, pre_groups: dict[str, Any], when: float, sessions: _SessionTxn, light: bool = False
    ) -> Failure | None:
        fail = cand.groups
        if pre_groups:
            # failregex groups win, but a group the failregex left unset must not erase
            # what the prefregex captured (e.g. the address in dovecot's prefix)
            fail = {**pre_groups, **{k: v for k, v in fail.items() if v is not None}}
        mlfid = fail.get("mlfid")
        if mlfid is not None:
            fail = _merge_session(sessions, mlfid, fail, cand.matched)
        else:
            fail["matches"] = (fail.get("matches") or []) + cand.matched
        host = _host_of(fail)
        if host is None:
            if mlfid is None and not fail.get("nofail"):
                return None  # names nobody and has no session to wait on
            fail["mlfpending"] = 1  # the session's failure waits for an address
        if light:  # counting only: who and whether it counts, nothing to show
            return Failure(host, when, {}, 0, [], bool(fail.get("nofail")), cand.regex_index)
        matches: list[BufLine] = fail.get("matches") or []
        fields = {
            k: (sorted(v) if isinstance(v, set) else v)
            for k, v in fail.items()
            if v is not None and k not in _INTERNAL_KEYS and not k.startswith("skiplines")
        }
        return Failure(
            host=host,
            time=when,
            fields=fields,
            attempts=len(matches),
            lines=[ln.original for ln in matches],
            nofail=bool(fail.get("nofail")),
            regex_index=cand.regex_index,
        )


class _Plan:
    """The outcome of running the regexes over one line, before anything is committed."""

    __slots__ = ("buffer", "pre_groups", "candidates")

    def __init__(self, buffer: list[BufLine]) -> None:
        self.buffer = buffer
        self.pre_groups: dict[str, Any] = {}
        self.candidates: list[_Candidate] = []


def _unreadable_date_span(dates: DateDetectorLike | None, line: str, now: float) -> tuple[int, int] | None:
    """Where a date the detector found but could not read sits in the line (only
    asked for lines without a usable date, which are rare)."""
    span = getattr(dates, "date_span", None)
    return span(line, now) if span is not None else None


def _make_date_detector(datepattern: str | None, logtimezone: str | None, d: FilterDefinition) -> DateDetectorLike:
    from ..dates.detector import DateDetector  # noqa: PLC0415 - the date engine loads when a filter compiles

    try:
        return DateDetector(datepattern, logtimezone)
    except FilterError:
        raise
    except (ValueError, re.error) as exc:
        raise FilterError(f"bad datepattern {datepattern!r}: {exc}", d.sources[-1] if d.sources else None) from None
