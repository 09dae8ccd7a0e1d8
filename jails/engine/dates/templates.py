"""Date templates: fail2ban's datepattern language, compiled into template regexes.

A template is one compiled regex whose group 1 is the date text (the span fail2ban
cuts out of the line before the failregexes see it) and whose named groups (`Y`, `m`,
`d`, `H`, ...) feed the conversion to epoch seconds (`fields.py`). Templates come from
a filter's `datepattern` (strptime-like directives, fail2ban's `%Ex..` forms,
`{^LN-BEG}`, `{DATE}`, `{UNB}`, `{NONE}`, `EPOCH`, `TAI64N`, raw regexes with named
groups, several patterns on several lines) or, without a datepattern, from fail2ban's
default list.

This module owns the pattern language: the `%X` directives and the regex each one
stands for, the word and line boundaries fail2ban puts around a date regex, the
`_Template` record (its regex, the counters the detector's ordering reads, the slot for
its resolver), fail2ban's default patterns and the pattern lines a datepattern stands
for; and `DateHit`, what reading a template's match gives. It imports neither
`fields.py` nor `detector.py`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from jails.engine.errors import FilterError


class DateHit(NamedTuple):
    """Where the date is in the line and what time it says. (A named tuple: one is
    made per distinct date text of a log, and a tuple is made fastest.)"""

    start: int  # where the date text starts in the line
    end: int  # where it ends: the engine cuts line[start:end] before regex matching
    epoch: float  # seconds since the epoch (UTC)
    template: str  # readable name of the template that matched


# --------------------------------------------------------------------------------------
# Directives: what each `%X` stands for in a datepattern.
# Group names are the directive letters; the resolver reads them back by name.
# --------------------------------------------------------------------------------------

_MONTHS_FULL = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_DAYS_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _alternatives(words: tuple[str, ...]) -> str:
    # longest first so that a prefix ("may" in a longer name) never wins too early
    return "|".join(sorted(words, key=len, reverse=True))


# A zone abbreviation as fail2ban accepts it in `%Exz`/`%ExZ` and in logtimezone.
_ZONE_ABBR_RE = r"[A-Z](?:[A-Z]{2,4})?"
_ZONE_OFFSET_RE = r"[+-][01]\d(?::?\d{2})?"


def _century_year_re(today_year: int) -> str:
    """`%ExY`: a 4-digit year of this century, from 2000 up to the decade of a few
    years ahead (fail2ban's guard against reading random 4-digit numbers as years)."""
    last = max(today_year + 3, 2009)
    decades = [str(y)[:3] for y in range(2000, last + 1, 10)]
    if str(last)[:3] not in decades:
        decades.append(str(last)[:3])
    return r"(?P<Y>(?:{})\d)".format("|".join(decades))


def _build_directives() -> dict[str, str]:
    d = r"(?P<d>[1-2]\d|[0 ]?[1-9]|3[0-1])"
    m = r"(?P<m>0?[1-9]|1[0-2])"
    y = r"(?P<y>\d\d)"
    hh = r"(?P<H>[0-1]?\d|2[0-3])"
    mm = r"(?P<M>[0-5]?\d)"
    ss = r"(?P<S>[0-5]?\d|6[0-1])"
    day_name = rf"(?P<a>{_alternatives(tuple(n[:3] for n in _DAYS_FULL))})"
    month_name = rf"(?P<b>{_alternatives(tuple(n[:3] for n in _MONTHS_FULL))})"
    return {
        "%": "%",
        "a": day_name,
        "A": rf"(?P<A>{_alternatives(_DAYS_FULL)})",
        "b": month_name,
        "B": rf"(?P<B>{_alternatives(_MONTHS_FULL)})",
        "d": d,
        "m": m,
        "Y": r"(?P<Y>\d{4})",
        "y": y,
        "H": hh,
        "M": mm,
        "S": ss,
        "k": r" ?(?P<H>[0-2]?\d)",  # hour 0-23, space-padded
        "l": r" ?(?P<I>1?\d)",  # hour 1-12, space-padded
        "I": r"(?P<I>1[0-2]|0[1-9]|[1-9])",
        "p": r"(?P<p>am|pm)",
        "f": r"(?P<f>[0-9]{1,6})",
        "j": r"(?P<j>36[0-6]|3[0-5]\d|[1-2]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9])",
        "U": r"(?P<U>5[0-3]|[0-4]\d|\d)",
        "W": r"(?P<W>5[0-3]|[0-4]\d|\d)",
        "w": r"(?P<w>[0-6])",
        "x": f"{m}/{d}/{y}",
        "X": f"{hh}:{mm}:{ss}",
        # the C locale's date and time: Sun Jan 23 21:59:59 2005
        "c": rf"{day_name}\s+{month_name}\s+{d}\s+{hh}:{mm}:{ss}\s+(?P<Y>\d{{4}})",
        # offsets and the few zone names that mean UTC; %Z takes any upper-case name
        "z": rf"(?P<z>Z|UTC|GMT|{_ZONE_OFFSET_RE})",
        "Z": r"(?P<Z>Z|[A-Z]{3,5})",
        # our extension (fail2ban has no %s): seconds since the epoch
        "s": r"(?P<s>\d{1,11})",
        # fail2ban's exact forms: fixed widths, so glued digits split unambiguously
        "ExY": _century_year_re(time.gmtime().tm_year),
        "Exy": y,
        "Exd": r"(?P<d>[1-2]\d|0[1-9]|3[0-1])",
        "Exm": r"(?P<m>0[1-9]|1[0-2])",
        "ExH": r"(?P<H>[0-1]\d|2[0-3])",
        "Exk": r" ?(?P<H>[0-1]?\d|2[0-3])",
        "Exl": r" ?(?P<I>1[0-2]|\d)",
        "ExM": r"(?P<M>[0-5]\d)",
        "ExS": r"(?P<S>[0-5]\d|6[0-1])",
        "ExZ": rf"(?P<Z>{_ZONE_ABBR_RE})",
        "Exz": rf"(?P<z>(?:{_ZONE_ABBR_RE})?{_ZONE_OFFSET_RE}|{_ZONE_ABBR_RE})",
    }


_DIRECTIVES = _build_directives()

# Readable names for template names (what fail2ban-regex shows as "template").
_DIRECTIVE_NAMES = {
    "a": "DAY",
    "A": "DAYNAME",
    "b": "MON",
    "B": "MONTH",
    "d": "Day",
    "H": "24hour",
    "I": "12hour",
    "j": "Yearday",
    "m": "Month",
    "M": "Minute",
    "p": "AMPM",
    "S": "Second",
    "U": "Yearweek",
    "w": "Weekday",
    "W": "Yearweek",
    "y": "Year2",
    "Y": "Year",
    "%": "%",
    "z": "Zone offset",
    "f": "Microseconds",
    "Z": "Zone name",
    "s": "Epoch",
}

_DIRECTIVE_RE = re.compile(r"%(Ex[A-Za-z]|.)", re.DOTALL)
# directives whose text is a name: the pattern then matches case-insensitively
_ALPHA_DIRECTIVE_RE = re.compile(r"(?<!%)%[aAbBpc]")


def _directive_name(key: str) -> str:
    if key.startswith("Ex"):
        return "Ex" + _DIRECTIVE_NAMES.get(key[2:], key[2:])
    return _DIRECTIVE_NAMES.get(key, "%" + key)


def _expand_directives(pattern: str) -> tuple[str, str]:
    """Return (regex, readable name) for a pattern; unknown directives are an error."""
    regex: list[str] = []
    name: list[str] = []
    pos = 0
    for found in _DIRECTIVE_RE.finditer(pattern):
        key = found.group(1)
        if key not in _DIRECTIVES:
            raise FilterError(
                f"datepattern {pattern!r}: unknown directive %{key} (write %% for a literal percent sign)"
            )
        regex.append(pattern[pos : found.start()])
        name.append(pattern[pos : found.start()])
        regex.append(_DIRECTIVES[key])
        name.append(_directive_name(key))
        pos = found.end()
    regex.append(pattern[pos:])
    name.append(pattern[pos:])
    return "".join(regex), "".join(name)


# --------------------------------------------------------------------------------------
# Turning a pattern into a template regex
# --------------------------------------------------------------------------------------

_WORD_START = r"(?=^|\b|\W)"  # the date starts at a word boundary
_WORD_END = r"(?=\b|\W|$)"  # ... and ends at one
_LINE_START = r"^(?:\W{0,2})?"  # {^LN-BEG}: at line start, after at most 2 non-word chars

_GLOBAL_FLAGS_RE = re.compile(r"(?:^|(?<!\\))\(\?[aiLmsux]+\)")
_HAS_GROUP_RE = re.compile(r"(?<!\(\?)(?<!\\)\((?!\?)")
_SPLIT_FOR_GROUP_RE = re.compile(r"^((?:\(\?\w+\))?\^?(?:\(\?\w+\))?)(.*?)(\$?)$", re.DOTALL)
_STARTS_BOUNDED_RE = re.compile(r"^\(*(?:\(\?\w+\))?(?:\^|\(*\*\*|\((?:\?:)?\^)")
_ENDS_BOUNDED_RE = re.compile(r"(?<!\\)(?:\$\)?|\\b|\\s|\*\*\)*)$")
_STARTS_AT_LINE_RE = re.compile(r"^(?:\(\?\w+\))?(?:\^|\((?:\?:)?\^(?!\|))")
_ENDS_AT_LINE_RE = re.compile(r"(?<![\\|])(?:\$\)?)$")
_NO_BOUND_MARKS_RE = re.compile(r"^\(*(?:\(\?\w+\))?\(*\*\*|(?<!\\)\*\*\)*$")

_UNBOUND_TAG = "{UNB}"
_LINE_BEGIN_TAG = "{^LN-BEG}"
_DATE_TAG_RE = re.compile(r"(?<!\\)\{DATE\}", re.IGNORECASE)
_EPOCH_TAG_RE = re.compile(r"(?<!\\)\{(L?)EPOCH\}", re.IGNORECASE)

_EPOCH_DIGITS = r"\d{10,11}\b(?:\.\d{3,6})?"
# milliseconds/microseconds glued to the seconds: 1234567890123, 1234567890123456
_LONG_EPOCH_DIGITS = r"\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?"


@dataclass(frozen=True)
class _RegexSpec:
    regex: str
    name: str
    anchored: bool  # bound to the line start or end: a match there needs no second opinion


def _bounded_regex(regex: str, name: str, begin: str, end: bool) -> _RegexSpec:
    """Add the group and word/line boundaries fail2ban puts around a date regex.

    begin: "word" (word boundary), "line" ({^LN-BEG}) or "" (none). A regex that
    already starts with `^` (or `**`) gets no start boundary; one that ends with `$`,
    `\\b`, `\\s` (or `**`) gets no end boundary.
    """
    regex = regex.strip()
    flags = _GLOBAL_FLAGS_RE.search(regex)
    if flags:  # Python wants global flags first: take them out, put them back in front
        regex = _GLOBAL_FLAGS_RE.sub("", regex, count=1)
    add_begin = bool(begin) and not _STARTS_BOUNDED_RE.search(regex)
    add_end = end and not _ENDS_BOUNDED_RE.search(regex)
    if not _HAS_GROUP_RE.search(regex):  # group 1 must be the date text
        regex = _SPLIT_FOR_GROUP_RE.sub(r"\1(\2)\3", regex)
    anchored = False
    if add_begin and begin == "line":
        regex = _LINE_START + regex
        anchored = True
        if not name.startswith(_LINE_BEGIN_TAG):
            name = _LINE_BEGIN_TAG + name
    elif add_begin:
        regex = _WORD_START + regex
    if add_end:
        regex += _WORD_END
    anchored = anchored or bool(_STARTS_AT_LINE_RE.search(regex) or _ENDS_AT_LINE_RE.search(regex))
    regex = _NO_BOUND_MARKS_RE.sub(lambda m: m.group().replace("**", ""), regex)
    if flags:
        regex = flags.group() + regex
    return _RegexSpec(regex, name, anchored)


# --------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------

# A resolver turns a template's match into a DateHit (None: not a valid date), given now.
_Resolve = Callable[["re.Match[str]", float], "DateHit | None"]


class _Template:
    """One compiled date regex and the way to read a time out of its match."""

    __slots__ = (
        "name",
        "source",
        "compiled",
        "search",
        "anchored",
        "resolve",
        "is_none",
        "weight",
        "hits",
        "matches",
        "distance",
        "last_used",
    )

    def __init__(
        self, name: str, source: str, regex: str, anchored: bool, flags: int = 0, is_none: bool = False
    ) -> None:
        self.name = name
        self.source = source
        try:
            self.compiled = re.compile(regex, flags)
        except re.error as exc:
            raise FilterError(f"datepattern {source!r} is not a valid regex: {exc}") from exc
        if self.compiled.groups < 1:
            raise FilterError(f"datepattern {source!r}: no group for the date text")
        # (no need for match() on `^` regexes: the regex engine stops after position 0)
        self.search: Callable[[str], re.Match[str] | None] = self.compiled.search
        self.anchored = anchored
        self.is_none = is_none
        self.resolve: _Resolve = _no_date
        # what fail2ban's template ordering looks at (see DateDetector._promote)
        self.weight = 1.0  # 100 for the line-start twins of the defaults: always preferred
        self.hits = 0  # lines this template won
        self.matches = 0  # lines its regex matched, won or not
        self.distance = 0x7FFFFFFF  # where it matched last time
        self.last_used = 0.0

    def rank(self) -> float:
        """Many wins close to the line start rank high."""
        return self.hits * self.weight / max(1, self.distance)


def _no_date(match: re.Match[str], now: float) -> DateHit | None:
    return None


# fail2ban's default templates, in fail2ban's order (most specific first).
_DEFAULT_PATTERNS = (
    # ISO 8601 and friends: 2005-01-23T21:59:59.981746+01:00, 2005/01/23 21:59:59, 2006.12.21 06:43:20
    r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    # asctime / syslog: [Sun ]Jan 23 21:59:59[.011][ 2005]
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    # Sun Jan 23 2005 21:59:59.011
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    # 23/01/2005 21:59:59, 23/01/05 21:59:59, 17-07-2008 17:23:25
    r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S",
    # Apache/CLF [31/Oct/2006:09:22:55 -0000], 26-Jul-2007 15:20:52.252 +0200
    r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    # CPanel 05/20/2008:01:57:39
    r"%m/%d/%ExY:%H:%M:%S",
    # 01-27-2012 16:22:44.252
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    "EPOCH",
    # only a time of day
    r"{^LN-BEG}%H:%M:%S",
    # <09/16/08@05:03:30>
    r"^<%m/%d/%Exy@%H:%M:%S>",
    # MySQL 130322 11:46:11
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    # Tomcat: Jan 23, 2005 9:59:59 PM
    r"%b %d, %ExY %I:%M:%S %p",
    # ASSP Apr-27-13 02:33:06
    r"^%b-%d-%Exy %k:%M:%S",
    # 20050123T215959, 20050123 215959
    r"%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?",
    # monit: PDT Apr 16 21:05:29
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    # +00:00 Jan 23 21:59:59.011 2005
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    "TAI64N",
)


def _line_begin_variant(pattern: str) -> str | None:
    """The `{^LN-BEG}` twin of a default pattern, or None when it is already anchored."""
    if pattern.startswith((_LINE_BEGIN_TAG, "^")):
        return None
    return _LINE_BEGIN_TAG + pattern


def _strip_bounds(source: str) -> str:
    """A template's pattern without its own boundary marks, for use inside {DATE}."""
    for tag in (_UNBOUND_TAG, _LINE_BEGIN_TAG):
        if source.startswith(tag):
            source = source[len(tag) :]
    source = re.sub(r"^\((?:\?:)?\^\|\\b\|\\W\)", "", source)
    return re.sub(r"\(\?=\\b\|\\W\|\$\)$", "", source)


_TWIN_WEIGHT = 100.0


def _default_patterns(line_begin_only: bool) -> list[tuple[str, float]]:
    """fail2ban's full default list, as (pattern, weight): every unanchored template
    gets a line-start twin, and the twins come first and weigh more (a date at the line
    start is the safest bet, and the cheapest to find)."""
    twins = [(t, _TWIN_WEIGHT) for t in map(_line_begin_variant, _DEFAULT_PATTERNS) if t]
    anchored = [(p, 1.0) for p in _DEFAULT_PATTERNS if _line_begin_variant(p) is None]
    if line_begin_only:
        return twins + anchored
    return twins + [(p, 1.0) for p in _DEFAULT_PATTERNS]


def _frame_date(frame: str, body: str) -> str:
    return _DATE_TAG_RE.sub(lambda _m: body, frame)


def _expand_datepattern(datepattern: str | None) -> list[tuple[str, float]]:
    """The pattern texts a datepattern stands for, in order, with their weights."""
    if datepattern is None or not datepattern.strip():
        return _default_patterns(line_begin_only=False)
    out: list[tuple[str, float]] = []
    for line in (ln.strip() for ln in datepattern.splitlines()):
        if not line:
            continue
        keyword = line.upper() if "%" not in line else line
        if keyword == _LINE_BEGIN_TAG:
            out += _default_patterns(line_begin_only=True)
        elif keyword == "{DEFAULT}":
            out += _default_patterns(line_begin_only=False)
        elif _DATE_TAG_RE.search(line):
            # the line is a frame: {DATE} stands for each default pattern in turn
            for source in _DEFAULT_PATTERNS:
                out.append((_frame_date(line, _strip_bounds("Epoch" if source == "EPOCH" else source)), 1.0))
        else:
            out.append((line, 1.0))
    return out
