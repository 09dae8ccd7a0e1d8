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
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from .definition import FilterDefinition
from .errors import FilterError, RegexTimeout
from .literals.extraction import required_prefixes, required_string
from .regex import CompiledRegex, compile_failregex, compile_regex, first_chars


class DateDetectorLike(Protocol):
    def match(self, line: str, now: float) -> Any: ...


class BufLine(NamedTuple):
    """One buffered line: the text the regexes see (date cut out) and the original."""

    text: str
    original: str


@dataclass(slots=True)
class Failure:
    host: str | None
    time: float
    fields: dict[str, object]
    attempts: int
    lines: list[str]
    nofail: bool
    regex_index: int


@dataclass(slots=True)
class LineResult:
    failures: list[Failure] = field(default_factory=list)
    ignored: bool = False
    matched: list[int] = field(default_factory=list)
    ignore_index: int | None = None
    date: Any = None  # DateHit | None (dates/templates.py)
    timed_out: str | None = None


class BlockTally:
    """What CompiledFilter.tally_block counted among a block's candidate lines.

    Lines are counted as fail2ban-regex's summary counts them (matched, ignored,
    missed, hits per regex), except the `notable` ones: those come with their
    tally() result for the caller to count and show itself."""

    __slots__ = ("matched", "ignored", "missed", "comments", "fail_hits", "ignore_hits", "notable", "_shown")

    def __init__(self, fails: int, ignores: int) -> None:
        self.matched = 0
        self.ignored = 0
        self.missed = 0
        self.comments = 0  # candidate lines that are empty, "\r" or comments: not tested
        self.fail_hits = [0] * fails
        self.ignore_hits = [0] * ignores
        self.notable: list[tuple[str, LineResult]] = []
        self._shown = 0  # ignored lines handed over in `notable`

    def wants(self, result: LineResult, keep_ignored: int, keep_matched: bool) -> bool:
        """Whether the caller asked to see this line (see tally_block)."""
        if result.timed_out is not None:
            return True
        if result.ignored:
            if keep_ignored < 0 or self._shown < keep_ignored:
                self._shown += 1
                return True
            return False
        return keep_matched and any(not f.nofail for f in result.failures)

    def add(self, line: str, result: LineResult | None, keep_ignored: int, keep_matched: bool) -> None:
        """Count one line from its tally() result (filtertest's Runner._count, in sums)."""
        if result is None:
            self.missed += 1
            return
        if self.wants(result, keep_ignored, keep_matched):
            self.notable.append((line, result))
            return
        for failure in result.failures:
            self.fail_hits[failure.regex_index] += 1
        if result.ignore_index is not None:
            self.ignore_hits[result.ignore_index] += 1
        if result.ignored:
            self.ignored += 1
        elif any(not f.nofail for f in result.failures):
            self.matched += 1
        else:
            self.missed += 1


# How long (seconds, against `now`) a line without its own date may borrow the last one.
_LAST_DATE_WINDOW = 60.0
# Distinct first characters remembered by the failregex dispatch (attackers choose them).
_DISPATCH_MAX = 512
# Session cache bounds (fail2ban keeps 100 sessions for 5 minutes).
_SESSION_MAX = 100
_SESSION_TTL = 300.0
# Groups that are bookkeeping, not data worth showing with a failure.
# shared, never filled: the fields and lines of tally()'s light failures
_NO_FIELDS: dict[str, object] = {}
_NO_LINES: list[Any] = []
_INTERNAL_KEYS = frozenset({"matches", "nofail-matches", "mlfpending", "mlfgained", "mlfforget", "nofail", "content"})


def _join(lines: list[BufLine]) -> str:
    # fail2ban's buffer: lines joined by newlines, always ending with one
    if len(lines) == 1:
        return lines[0].text + "\n"
    return "\n".join([ln.text for ln in lines]) + "\n"


def _is_plain_ipv4(ip: str) -> bool:
    parts = ip.split(".")
    if len(parts) != 4 or not ip.isascii():
        return False
    for part in parts:
        if not part.isdigit() or len(part) > 3 or (part[0] == "0" and len(part) > 1) or int(part) > 255:
            return False
    return True


_ADDRESS_CACHE: dict[tuple[str, str | None], str] = {}
# Cleared when full. Small on purpose: a long-running follower keeps it for good, and a flood from
# tens of thousands of addresses would otherwise leave ~13 MB of keys and texts behind (a read's
# repeats are what it is for; canonicalising a plain IPv4 address again costs about a microsecond).
_ADDRESS_CACHE_MAX = 1 << 12


def _normalise_address(ip: str, cidr: str | None) -> str:
    """Canonical text of an address (attackers repeat themselves: memoised)."""
    key = (ip, cidr)
    text = _ADDRESS_CACHE.get(key)
    if text is None:
        if len(_ADDRESS_CACHE) >= _ADDRESS_CACHE_MAX:
            _ADDRESS_CACHE.clear()
        text = _ADDRESS_CACHE[key] = _canonical_address(ip, cidr)
    return text


def _canonical_address(ip: str, cidr: str | None) -> str:
    """Canonical text of an address (or network with a short prefix); raw if invalid."""
    if not cidr and _is_plain_ipv4(ip):
        return ip  # already canonical: skip the (slow) ipaddress parser
    try:
        if cidr:
            net = ipaddress.ip_network(f"{ip}/{int(cidr)}", strict=False)
            if net.prefixlen == net.max_prefixlen:
                return str(net.network_address)
            return str(net)
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


class _Sessions:
    """Bounded, expiring map of multi-line failure ids to their accumulated groups."""

    def __init__(self) -> None:
        self._data: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()

    def get(self, key: str, now: float) -> dict[str, Any] | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] > now:
            return entry[0]
        del self._data[key]
        return None

    def set(self, key: str, value: dict[str, Any], now: float) -> None:
        data = self._data
        if len(data) >= _SESSION_MAX:
            # drop from the oldest end: expired ones, then just enough to make room
            while data:
                _, (_, expiry) = data.popitem(last=False)
                if expiry > now and len(data) < _SESSION_MAX:
                    break
        data[key] = (value, now + _SESSION_TTL)

    def put(self, key: str, value: dict[str, Any], now: float) -> None:
        """Store a session: a known one keeps its place and expiry, a new one is added."""
        entry = self._data.get(key)
        if entry is not None and entry[1] > now:
            self._data[key] = (value, entry[1])
        else:
            self.set(key, value, now)

    def unset(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


class _Candidate(NamedTuple):
    regex_index: int
    groups: dict[str, Any]
    matched: list[BufLine]


def _split_lines(
    regex: CompiledRegex, m: re.Match[str], buf: str, org: list[BufLine]
) -> tuple[list[BufLine], list[BufLine]]:
    """Which buffered lines a match covers, and which it leaves (skipped lines stay)."""
    if len(org) <= 1:
        return org, []
    start = buf.rfind("\n", 0, m.start() + 1) + 1
    end_nl = buf.find("\n", m.end() - 1 if m.end() > 0 else len(buf) - 1)
    end = end_nl + 1 if end_nl >= 0 else len(buf)
    first = buf.count("\n", 0, start)
    last = buf.count("\n", 0, end)
    matched = org[first:last]
    unmatched = org[:first]
    if regex.skiplines:
        n = 0
        for skipped in regex.skipped_lines(m):
            for k, candidate in enumerate(matched[n:]):
                if candidate.text == skipped:
                    unmatched.append(matched.pop(n + k))
                    n += k
                    break
    unmatched.extend(org[last:])
    return matched, unmatched


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
        if hit is not None:
            if hit.epoch is not None and hit.end > hit.start:
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
            org = self._buffer + [current]
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


_STEP_DATE, _STEP_PREF, _STEP_FAIL, _STEP_IGNORE = range(4)
# CompiledFilter._count_groups' outcome: a failure that counts, or a nofail one, and
# whether it names nobody yet (0: no failure at all)
_COUNTS, _NOFAIL, _NOBODY = 1, 2, 4


class _Step:
    """What the line is busy with, for the timeout message (ints: cheap to set)."""

    __slots__ = ("kind", "index")

    def __init__(self) -> None:
        self.kind = _STEP_DATE
        self.index = 0

    def describe(self) -> str:
        if self.kind == _STEP_DATE:
            return "date detection"
        if self.kind == _STEP_PREF:
            return "prefregex"
        return f"{'failregex' if self.kind == _STEP_FAIL else 'ignoreregex'} {self.index + 1}"


def step_text(kind: int, index: int) -> str:
    step = _Step()
    step.kind, step.index = kind, index
    return step.describe()


class _Plan:
    """The outcome of running the regexes over one line, before anything is committed."""

    __slots__ = ("buffer", "pre_groups", "candidates")

    def __init__(self, buffer: list[BufLine]) -> None:
        self.buffer = buffer
        self.pre_groups: dict[str, Any] = {}
        self.candidates: list[_Candidate] = []


class _SessionTxn:
    """Session changes of one line, applied to the cache only by commit().

    Entries are copied before they change (copy on write), so an interrupted line
    leaves the cache untouched; later matches of the same line see earlier changes."""

    def __init__(self, sessions: _Sessions, now: float) -> None:
        self._sessions = sessions
        self._now = now
        self._changes: dict[str, dict[str, Any] | None] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self._changes:
            return self._changes[key]
        known = self._sessions.get(key, self._now)
        if known is None:
            return None
        entry = dict(known)
        if isinstance(entry.get("users"), set):
            entry["users"] = set(entry["users"])
        return entry

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._changes[key] = value

    def drop(self, key: str) -> None:
        self._changes[key] = None

    def commit(self) -> None:
        for key, value in self._changes.items():
            if value is None:
                self._sessions.unset(key)
            else:
                self._sessions.put(key, value, self._now)


def _host_of(fail: dict[str, Any]) -> str | None:
    """The id to blame: an address, else a name, else a failure id (fail2ban's order).
    When both an id and an address were captured the id wins and the address is kept
    as field `ip`."""
    fid = fail.get("fid")
    ip4 = fail.get("ip4")
    if ip4 is not None:
        ip = _normalise_address(ip4, fail.get("cidr"))
    else:
        ip6 = fail.get("ip6")
        if ip6 is not None:
            ip = _normalise_address(ip6, fail.get("cidr"))
        else:
            dns = fail.get("dns")
            if dns is None:
                return str(fid) if fid is not None else None
            ip = dns
    if fid is None or fid == ip:
        return ip
    fail["ip"] = ip
    return str(fid)


def merge_into_session(known: dict[str, Any], fail: dict[str, Any], gained: bool) -> set[str] | None:
    """Fold a line's fields into its <F-MLFID> session, as fail2ban does; the session's users.

    User names accumulate; a success (<F-MLFGAINED>) cancels the failures still pending. Shared by
    process_line and the block loop, whose results tests/engine/test_tally_block.py compares.
    """
    users = _add_user(known, fail.get("user"))
    known.pop("nofail", None)
    known.pop("mlfgained", None)
    if gained:
        known.pop("mlfpending", None)
    known.update({k: v for k, v in fail.items() if v is not None})
    return users


def _merge_session(sessions: _SessionTxn, mlfid: str, fail: dict[str, Any], matched: list[BufLine]) -> dict[str, Any]:
    """Fold this line's groups into its session (fail2ban's multi-line failure id).

    The session remembers groups (a host seen on an earlier line), the users tried,
    and the lines seen since the last reported failure (the attempts)."""
    known = sessions.get(mlfid)
    gained = bool(fail.get("mlfgained"))
    nofail = gained or bool(fail.get("nofail"))
    if gained and not fail.get("nofail"):
        fail["nofail"] = fail["mlfgained"]
    forget = bool(fail.pop("mlfforget", None))
    users: set[str] | None = None
    if known is not None:
        users = _add_user(known, fail.get("user"))
        was_quiet = bool(known.pop("nofail", None))
        was_quiet = bool(known.pop("mlfgained", None)) or was_quiet
        if gained:
            known.pop("mlfpending", None)  # a success cancels pending failures
        if not was_quiet and not known.get("mlfpending"):
            known.pop("matches", None)  # already reported: count afresh
        known.update({k: v for k, v in fail.items() if v is not None})
        fail = known
        if forget:
            sessions.drop(mlfid)
        else:
            sessions.put(mlfid, fail)
    elif not forget:
        users = _add_user(fail, fail.get("user"))
        sessions.put(mlfid, fail)
    if fail.pop("mlfpending", 0) or (users and len(users) > 1):
        # pending failures or several users tried: this is a failure after all
        fail.pop("nofail", None)
        fail.pop("mlfgained", None)
        nofail = gained = False
    if not nofail:
        lines: list[BufLine] = fail.pop("nofail-matches", [])
        lines = lines + (fail.get("matches") or [])
        if not gained:
            lines = lines + matched
        fail["matches"] = lines
    elif not forget:
        fail["nofail-matches"] = (fail.get("nofail-matches") or []) + matched
    return fail


def _count_session(
    fail: dict[str, Any], mlfid: str, changes: dict[str, dict[str, Any] | None], store: _Sessions, now: float
) -> dict[str, Any]:
    """_merge_session for counting: the same groups, users and flags, no lines.

    `changes` holds the line's session changes (committed by the caller once the
    line is done); a known session's groups are updated in place."""
    known = changes[mlfid] if mlfid in changes else store.get(mlfid, now)
    mlfgained = fail.get("mlfgained")
    gained = bool(mlfgained)
    if gained and not fail.get("nofail"):
        fail["nofail"] = mlfgained
    forget = bool(fail.pop("mlfforget", None))
    users: set[str] | None = None
    if known is not None:
        users = merge_into_session(known, fail, gained)
        fail = known
        changes[mlfid] = None if forget else fail
    elif not forget:
        users = _add_user(fail, fail.get("user"))
        changes[mlfid] = fail
    if fail.pop("mlfpending", 0) or (users and len(users) > 1):
        # pending failures or several users tried: this is a failure after all
        fail.pop("nofail", None)
        fail.pop("mlfgained", None)
    return fail


def _unreadable_date_span(dates: DateDetectorLike | None, line: str, now: float) -> tuple[int, int] | None:
    """Where a date the detector found but could not read sits in the line (only
    asked for lines without a usable date, which are rare)."""
    span = getattr(dates, "date_span", None)
    return span(line, now) if span is not None else None


def _add_user(groups: dict[str, Any], user: Any) -> set[str] | None:
    users: set[str] | None = groups.get("users")
    if user:
        if not users:
            users = set()
            groups["users"] = users
        users.add(user)
    return users


def _make_date_detector(datepattern: str | None, logtimezone: str | None, d: FilterDefinition) -> DateDetectorLike:
    from .dates.detector import DateDetector  # the date engine is a sibling package, imported when needed

    try:
        return DateDetector(datepattern, logtimezone)
    except FilterError:
        raise
    except (ValueError, re.error) as exc:
        raise FilterError(f"bad datepattern {datepattern!r}: {exc}", d.sources[-1] if d.sources else None) from None
