"""Find the timestamp in a log line, the way fail2ban does.

A `DateDetector` holds an ordered list of *templates*. Each template is one compiled
regex whose group 1 is the date text (the span fail2ban cuts out of the line before the
failregexes see it) and whose named groups (`Y`, `m`, `d`, `H`, ...) feed the
conversion to epoch seconds.

Templates come from a filter's `datepattern` (strptime-like directives, fail2ban's
`%Ex..` forms, `{^LN-BEG}`, `{DATE}`, `{UNB}`, `{NONE}`, `EPOCH`, `TAI64N`, raw regexes
with named groups, several patterns on several lines) or, without a datepattern, from
fail2ban's default list.

Speed: everything is compiled in `__init__`; `match()` runs one regex in the common
case (the template that matched last time is tried first) and turns the date text into
epoch seconds through a cache keyed by the captured values, because a log repeats the
same second many times. `time.strptime` is never called.

A detector keeps state between lines (last template, last position), like fail2ban's:
use one detector per log stream and thread.
"""

from __future__ import annotations

import calendar
import datetime
import operator
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from jails.engine.errors import FilterError

__all__ = ["DateDetector", "DateHit", "parse_zone_offset"]


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
_MONTH_NUMBER = {name: i for i, name in enumerate(_MONTHS_FULL, 1)}
_MONTH_NUMBER.update({name[:3]: i for i, name in enumerate(_MONTHS_FULL, 1)})
_WEEKDAY_NUMBER = {name: i for i, name in enumerate(_DAYS_FULL)}  # Monday = 0
_WEEKDAY_NUMBER.update({name[:3]: i for i, name in enumerate(_DAYS_FULL)})


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
# Time zones
# --------------------------------------------------------------------------------------

# Zone abbreviations fail2ban knows, as fixed offsets in hours (no DST switching: "CET"
# always means +01:00). Ambiguous abbreviations follow fail2ban's choice.
_ZONE_HOURS: dict[float, str] = {
    -12: "Y",
    -11: "X NUT SST",
    -10: "W CKT HAST HST TAHT TKT",
    -9: "V AKST GAMT GIT HADT HNY",
    -8: "U AKDT CIST HAY HNP PST PT",
    -7: "T HAP HNR MST PDT",
    -6: "S CST EAST GALT HAR HNC MDT",
    -5: "R CDT COT EASST ECT EST ET HAC HNE PET",
    -4: "Q AST BOT CLT COST EDT FKT GYT HAE HNA PYT",
    -3: "P ADT ART BRT CLST FKST GFT HAA PMST PYST SRT UYT WGT",
    -2: "O BRST FNT PMDT UYST WGST",
    -1: "N AZOT CVT EGT",
    0: "Z EGST GMT UTC WET WT",
    1: "A CET DFT WAT WEDT WEST",
    2: "B CAT CEDT CEST EET SAST WAST",
    3: "C EAT EEDT EEST IDT MSK",
    4: "D AMT AZT GET GST KUYT MSD MUT RET SAMT SCT",
    5: "E AMST AQTT AZST HMT MAWT MVT PKT TFT TJT TMT UZT YEKT",
    6: "F ALMT BIOT BTT IOT KGT NOVT OMST YEKST",
    7: "G CXT DAVT HOVT ICT KRAT NOVST OMSST THA WIB",
    8: "H ACT AWST BDT BNT CAST HKT IRKT KRAST MYT PHT SGT ULAT WITA WST",
    9: "I AWDT IRKST JST KST PWT TLT WDT WIT YAKT",
    10: "K AEST ChST PGT VLAT YAKST YAPT",
    11: "L AEDT LHDT MAGT NCT PONT SBT VLAST VUT",
    12: "M ANAST ANAT FJT GILT MAGST MHT NZST PETST PETT TVT WFT",
    13: "FJST NZDT",
    11.5: "NFT",
    10.5: "ACDT LHST",
    9.5: "ACST",
    6.5: "CCT MMT",
    5.75: "NPT",
    5.5: "SLT",
    4.5: "AFT IRDT",
    3.5: "IRST",
    -2.5: "HAT NDT",
    -3.5: "HNT NST NT",
    -4.5: "HLV VET",
    -9.5: "MART MIT",
}
_ZONE_MINUTES = {abbr: int(hours * 60) for hours, names in _ZONE_HOURS.items() for abbr in names.split()}
_ZONE_RE = re.compile(rf"({_ZONE_ABBR_RE})?({_ZONE_OFFSET_RE})?$")


def parse_zone_offset(text: str) -> int | None:
    """Minutes east of UTC for 'UTC', 'CEST', '+0200', '-05:30', 'UTC+0200', 'CET-01'...

    None when the text is not a zone we know (unknown abbreviation, garbage).
    """
    found = _ZONE_RE.match(text)
    if found is None:
        return None
    abbr, offset = found.groups()
    minutes = 0
    if abbr:
        known = _ZONE_MINUTES.get(abbr)
        if known is None:
            return None
        minutes = known
    if offset:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        minutes += sign * (int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0))
    return minutes


def _zone_value_offset(text: str) -> int | None:
    # the value of a %z/%Z group. Name directives make a whole pattern case-insensitive,
    # so "utc" or "error" can get here: like fail2ban, only upper-case zones count.
    if text in ("Z", "UTC", "GMT"):
        return 0
    return parse_zone_offset(text)


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


def _pattern_template(pattern: str, context: _Context) -> _Template:
    """A template from a strptime-like pattern ({^LN-BEG}/{UNB} prefixes allowed)."""
    begin, end = "word", True
    body = pattern
    if body.startswith(_UNBOUND_TAG):
        body, begin, end = body[len(_UNBOUND_TAG) :], "", False
    if begin and body.startswith(_LINE_BEGIN_TAG):
        body, begin = body[len(_LINE_BEGIN_TAG) :], "line"
    regex, name = _expand_directives(body)
    flags = re.IGNORECASE if _ALPHA_DIRECTIVE_RE.search(body) else 0
    spec = _bounded_regex(regex, name, begin, end)
    template = _Template(spec.name, pattern, spec.regex, spec.anchored, flags)
    template.resolve = _FieldsResolver(template, context).resolve
    return template


def _epoch_template(pattern: str | None, line_begin: bool, long_form: bool) -> _Template:
    """Seconds since the epoch: `EPOCH`, `{^LN-BEG}EPOCH`, `LEPOCH`, or `...{EPOCH}...`."""
    digits = _LONG_EPOCH_DIGITS if long_form else _EPOCH_DIGITS
    name = pattern or ("LongEpoch" if long_form else "Epoch")
    value_group = 1
    if pattern:
        regex = "(" + _EPOCH_TAG_RE.sub(lambda _m: f"({digits})", pattern) + ")"
        spec = _bounded_regex(regex, name, "word", True)
        value_group = 2
    elif line_begin:
        # optionally inside [brackets] at the start of the line (nsd, squid...)
        spec = _bounded_regex(rf"((?P<square>(?<=^\[))?{digits})(?(square)(?=\]))", name, "line", True)
    else:
        # at line start, just after a leading "[", or in SELinux's audit(1234567890.123:42)
        regex = (
            rf"((?:^|(?P<square>(?<=^\[))|(?P<selinux>(?<=\baudit\())){digits})"
            r"(?:(?(selinux)(?=:\d+\)))|(?(square)(?=\])))"
        )
        spec = _bounded_regex(regex, name, "", True)
    template = _Template(spec.name, name, spec.regex, spec.anchored)

    def epoch_of(match: re.Match[str]) -> float:
        text = match.group(value_group)
        value = float(text)
        if long_form and len(text) >= 13:  # glued milli- or microseconds
            value /= 1_000_000 if len(text) >= 16 and "." not in text else 1000
        return value

    template.resolve = _ValueResolver(template, epoch_of).resolve
    return template


def _tai64n_template(line_begin: bool) -> _Template:
    # "@" + 16 hex digits of 2^62 + seconds, then 8 hex digits of nanoseconds
    spec = _bounded_regex("@[0-9a-f]{24}", "TAI64N", "line" if line_begin else "", True)
    template = _Template(spec.name, "TAI64N", spec.regex, spec.anchored)

    def epoch_of(match: re.Match[str]) -> float:
        # like fail2ban: the seconds label without the 2^62 bit; nanoseconds dropped
        return float(int(match.group(1)[2:17], 16))

    template.resolve = _ValueResolver(template, epoch_of).resolve
    return template


def _none_template() -> _Template:
    return _Template("{NONE}", "{NONE}", "^()", True, is_none=True)


def _template_from_text(pattern: str, context: _Context) -> _Template:
    """One datepattern line (after the {DATE}/{^LN-BEG}/{DEFAULT} forms are handled)."""
    keyword = pattern.upper() if "%" not in pattern else pattern
    if "EPOCH" in keyword:
        tag = _EPOCH_TAG_RE.search(pattern)
        if tag:
            return _epoch_template(pattern, line_begin=False, long_form=bool(tag.group(1)))
        for long_form, word in ((False, "EPOCH"), (True, "LEPOCH")):
            if keyword == word:
                return _epoch_template(None, line_begin=False, long_form=long_form)
            if keyword in (_LINE_BEGIN_TAG + word, "^" + word):
                return _epoch_template(None, line_begin=True, long_form=long_form)
    if keyword == "TAI64N":
        return _tai64n_template(line_begin=False)
    if keyword in (_LINE_BEGIN_TAG + "TAI64N", "^TAI64N"):
        return _tai64n_template(line_begin=True)
    return _pattern_template(pattern, context)


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


# --------------------------------------------------------------------------------------
# Reading the captured fields
# --------------------------------------------------------------------------------------

_CACHE_LIMIT = 512
_UNIX_EPOCH_ORDINAL = 719163  # datetime.date(1970, 1, 1).toordinal()


class _Context:
    """What conversion needs besides the line: the log's zone, the fractions policy, a
    memo of "now" in local time, and the local UTC offset of each calendar day."""

    __slots__ = ("default_offset", "keep_fractions", "valid_from", "valid_to", "offset", "year", "today", "day_offsets")

    def __init__(self, default_offset: int | None, keep_fractions: bool) -> None:
        self.default_offset = default_offset
        self.keep_fractions = keep_fractions
        # facts about "now", valid while valid_from <= now < valid_to
        self.valid_from = 1.0
        self.valid_to = 0.0
        self.offset = 0  # local UTC offset in seconds
        self.year = 1970  # local year
        self.today = 0  # local date as a proleptic ordinal
        self.day_offsets: dict[int, int | None] = {}

    def refresh(self, now: float) -> None:
        local = time.localtime(now)
        self.offset = local.tm_gmtoff
        self.year = local.tm_year
        self.today = datetime.date(local.tm_year, local.tm_mon, local.tm_mday).toordinal()
        # valid for a minute at most (DST switches), never across local midnight
        to_midnight = 86400 - (local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec) - now % 1.0
        self.valid_from = now
        self.valid_to = now + min(60.0, to_midnight)

    def local_epoch(self, wall: int) -> float:
        """Epoch of local wall-clock seconds (seconds since 1970-01-01 00:00 *local*).

        Days without a DST switch use their one offset (cached per day); switch days ask
        libc, which picks the same answer as fail2ban's mktime for skipped/doubled hours.
        """
        day = wall // 86400
        if day not in self.day_offsets:
            if len(self.day_offsets) > _CACHE_LIMIT:
                self.day_offsets.clear()
            first, last = self._libc_epoch(day * 86400), self._libc_epoch(day * 86400 + 86399)
            same = (day * 86400 - first) == (day * 86400 + 86399 - last)
            self.day_offsets[day] = int(day * 86400 - first) if same else None
        offset = self.day_offsets[day]
        return float(wall - offset) if offset is not None else self._libc_epoch(wall)

    @staticmethod
    def _libc_epoch(wall: int) -> float:
        t = time.gmtime(wall)
        return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, 0, 0, -1))


class _Fields(NamedTuple):
    """The date parts read from a match; None where the pattern gave nothing."""

    year: int | None
    month: int | None
    day: int | None
    hour: int
    minute: int
    second: int
    fraction: float
    offset: int | None  # minutes east of UTC written in the line
    yearday: int | None
    weekday: int | None  # Monday = 0
    week: int | None
    week_starts_sunday: bool
    epoch: float | None  # %s


# plain numbers: group name -> place in the parts list of _FieldReader
_NUMBER_SLOTS = {"Y": 0, "m": 1, "d": 2, "H": 3, "M": 4, "S": 5}
_DATE_GROUPS = frozenset("YymbBdHIMSfaAwjUWzZsp")


class _FieldReader:
    """Parses one template's captured texts into `_Fields`.

    The group layout is known when the template is compiled, so the plain numbers are
    read by position (the common case, and the hot part of a cache miss) and only the
    other directives go through the general loop.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.numbers = tuple((_NUMBER_SLOTS[n], i) for i, n in enumerate(names) if n in _NUMBER_SLOTS)
        self.others = tuple((n, i) for i, n in enumerate(names) if n not in _NUMBER_SLOTS)
        self.ampm = names.index("p") if "p" in names else -1

    def read(self, values: tuple[str | None, ...]) -> _Fields | None:
        """None when a value cannot be a date part (unknown month name or zone)."""
        parts: list[int | None] = [None, None, None, 0, 0, 0]  # year month day hour minute second
        for slot, i in self.numbers:
            text = values[i]
            if text is not None:
                parts[slot] = int(text)
        offset = yearday = weekday = week = None
        fraction = 0.0
        epoch = None
        sunday_first = False
        for key, i in self.others:
            text = values[i]
            if text is None:
                continue
            if key == "b" or key == "B":
                parts[1] = _MONTH_NUMBER.get(text.lower())
                if parts[1] is None:
                    return None
            elif key == "f":
                fraction = int(text) / 10 ** len(text)
            elif key == "z" or key == "Z":
                offset = _zone_value_offset(text)
                if offset is None:
                    return None  # a zone we do not know: no guessing
            elif key == "y":
                short = int(text)
                parts[0] = short + 2000 if short <= 2000 else short  # this century, like fail2ban
            elif key == "I":
                parts[3] = _twelve_hour(int(text), (values[self.ampm] if self.ampm >= 0 else None) or "")
            elif key == "a" or key == "A":
                weekday = _WEEKDAY_NUMBER.get(text.lower())
            elif key == "w":
                weekday = (int(text) - 1) % 7
            elif key == "j":
                yearday = int(text)
            elif key == "U" or key == "W":
                week, sunday_first = int(text), key == "U"
            elif key == "s":
                epoch = float(text)
        year, month, day, hour, minute, second = parts
        return _Fields(
            year,
            month,
            day,
            hour or 0,
            minute or 0,
            second or 0,
            fraction,
            offset,
            yearday,
            weekday,
            week,
            sunday_first,
            epoch,
        )


def _twelve_hour(hour: int, ampm: str) -> int:
    if ampm.lower() == "pm":
        return hour if hour == 12 else hour + 12
    return 0 if hour == 12 else hour  # AM, or no AM/PM at all


def _date_from_week(year: int, week: int, weekday: int, sunday_first: bool) -> tuple[int, int] | None:
    """(month, day) for a %U/%W week number and a weekday, like strptime."""
    jan1 = datetime.date(year, 1, 1)
    if sunday_first:  # %U: week 1 starts on the first Sunday
        first = jan1 + datetime.timedelta(days=(6 - jan1.weekday()) % 7)
        offset = (weekday + 1) % 7
    else:  # %W: week 1 starts on the first Monday
        first = jan1 + datetime.timedelta(days=(7 - jan1.weekday()) % 7)
        offset = weekday
    when = first + datetime.timedelta(weeks=week - 1, days=offset)
    return (when.month, when.day) if when.year == year else None


def _calendar_day(f: _Fields, year: int) -> tuple[int, int] | None:
    """(month, day) of the fields in `year`, from month/day, day of year or week."""
    if f.month is not None and f.day is not None:
        return f.month, f.day
    if f.yearday is not None:
        if not 1 <= f.yearday <= (366 if calendar.isleap(year) else 365):
            return None
        when = datetime.date(year, 1, 1) + datetime.timedelta(days=f.yearday - 1)
        return when.month, when.day
    if f.week is not None and f.weekday is not None:
        return _date_from_week(year, f.week, f.weekday, f.week_starts_sunday)
    return None


def _wall_and_epoch(f: _Fields, year: int, month: int, day: int, ctx: _Context) -> tuple[float, float] | None:
    """(fail2ban's comparison value, epoch) of the fields on a given day; None if invalid.

    The comparison value is the written wall-clock time as naive seconds, moved to UTC
    when a zone is known: what fail2ban compares with its local "now".
    """
    if not (0 <= f.hour <= 23 and 0 <= f.minute <= 59 and 0 <= f.second <= 59):
        return None  # datetime() refuses these in fail2ban as well
    try:
        ordinal = datetime.date(year, month, day).toordinal()
    except ValueError:  # 30 February...
        return None
    wall = (ordinal - _UNIX_EPOCH_ORDINAL) * 86400 + f.hour * 3600 + f.minute * 60 + f.second
    offset = f.offset if f.offset is not None else ctx.default_offset
    if offset is not None:
        wall -= offset * 60
        epoch = float(wall)
    else:  # local time as the TZ environment variable says
        epoch = ctx.local_epoch(wall)
    # fail2ban drops fractions of pattern dates (epoch templates keep theirs)
    return float(wall), (epoch + f.fraction if ctx.keep_fractions else epoch)


_NEVER = float("inf")

# A cached reading: the hit (None: not a date) and the `now` range it holds for
# (lo <= now < hi). Dates with a year hold forever; the others depend on now.
_Reading = tuple[DateHit | None, float, float]


class _ValueResolver:
    """For templates whose text is the time itself (epoch seconds, TAI64N)."""

    def __init__(self, template: _Template, epoch_of: Callable[[re.Match[str]], float]) -> None:
        self.name = template.name
        self.epoch_of = epoch_of
        self.cache: dict[str, DateHit] = {}

    def resolve(self, m: re.Match[str], now: float) -> DateHit | None:
        key = m.group()
        hit = self.cache.get(key)
        start, end = m.span(1)
        if hit is None or hit.start != start:
            if len(self.cache) > _CACHE_LIMIT:
                self.cache.clear()
            hit = self.cache[key] = DateHit(start, end, self.epoch_of(m), self.name)
        return hit


_FIXED, _GUESS_YEAR, _GUESS_DAY, _INVALID = range(4)


def _no_key(values: tuple[str | None, ...]) -> object:
    return ()


class _Day:
    """The day part of a date, for the clock fast path of `_FieldsResolver`.

    wall0: naive seconds of 00:00 on that day as written (None: no valid day);
    zone: the UTC offset in seconds when known (line or logtimezone), None for local.
    A day without a year (or a time without a day) is settled against the local year
    (or date) of now, and settled again when that changes.
    """

    __slots__ = ("fields", "kind", "key", "wall0", "zone")

    def __init__(self, fields: _Fields | None, default_offset: int | None) -> None:
        self.fields = fields
        self.key = -1
        self.wall0: int | None = None
        # minutes from the line, else the logtimezone's, else local time (None)
        offset = fields.offset if fields is not None and fields.offset is not None else default_offset
        self.zone: int | None = offset * 60 if offset is not None else None
        if fields is None:
            self.kind = _INVALID
        elif fields.month is None and fields.day is None and fields.yearday is None and fields.week is None:
            self.kind = _GUESS_DAY
        elif fields.year is None:
            self.kind = _GUESS_YEAR
        else:
            self.kind = _FIXED
            self._place(fields.year, _calendar_day(fields, fields.year))

    def settle(self, ctx: _Context) -> None:
        if self.kind == _GUESS_YEAR and self.key != ctx.year:
            assert self.fields is not None
            self.key = ctx.year
            self._place(ctx.year, _calendar_day(self.fields, ctx.year))
        elif self.kind == _GUESS_DAY and self.key != ctx.today:
            self.key = ctx.today
            today = datetime.date.fromordinal(ctx.today)
            self._place(today.year, (today.month, today.day))

    def _place(self, year: int, day: tuple[int, int] | None) -> None:
        self.wall0 = None
        if day is None or self.fields is None:
            return
        try:
            ordinal = datetime.date(year, *day).toordinal()
        except ValueError:
            return
        self.wall0 = (ordinal - _UNIX_EPOCH_ORDINAL) * 86400


class _FieldsResolver:
    """Reads a pattern template's named groups into a DateHit.

    Cached by the matched text: a busy log repeats each second many times, so the
    usual cost is one dict lookup. Logs are chronological, so a small cache that is
    dropped when full does as well as a big one, and keeps the garbage collector idle.
    Dates without a year (or without a day) get fail2ban's "not in the future" check
    against `now`; their cached readings say for which `now` they hold.
    """

    def __init__(self, template: _Template, context: _Context) -> None:
        self.name = template.name
        self.context = context
        self.cache: dict[str, _Reading] = {}
        # the groups that make the date (not helpers like _sep), in a fixed order
        names = self.names = tuple(n for n in template.compiled.groupindex if n in _DATE_GROUPS)
        self.reader = _FieldReader(names)
        # Fast path of a miss: the day part (everything but the clock) is read once per
        # day and cached; then a new second costs three int() calls. Not for 12-hour
        # clocks or epoch seconds, which the general reader handles.
        self.days: dict[object, _Day] = {}
        self.clock: tuple[int, int, int, int] | None = None
        if "H" in names and "I" not in names and "s" not in names:
            self.clock = tuple(names.index(n) if n in names else -1 for n in "HMSf")  # type: ignore[assignment]
            day_places = [i for i, n in enumerate(names) if n not in "HMSf"]
            self.day_key: Callable[[tuple[str | None, ...]], object] = (
                operator.itemgetter(*day_places) if day_places else _no_key
            )

    def resolve(self, m: re.Match[str], now: float) -> DateHit | None:
        text = m.group()
        cached = self.cache.get(text)
        if cached is not None and cached[1] <= now < cached[2]:
            hit = cached[0]
            if hit is None or hit.start == m.start(1):
                return hit
        if len(self.cache) > _CACHE_LIMIT:
            self.cache.clear()
        names = self.names
        values = m.group(*names) if len(names) > 1 else (m.group(names[0]),) if names else ()
        reading = None
        if self.clock is not None:
            reading = self._read_clock(values, m.span(1), now)
        if reading is None:
            reading = self._read(values, m.span(1), now)
        self.cache[text] = reading
        return reading[0]

    def _read_clock(self, values: tuple[str | None, ...], span: tuple[int, int], now: float) -> _Reading | None:
        """The fast path: the cached day plus the clock. None: ask the general reader
        (invalid values, or a date that must step back a year or a day)."""
        assert self.clock is not None
        key = self.day_key(values)
        day = self.days.get(key)
        if day is None:
            if len(self.days) > _CACHE_LIMIT:
                self.days.clear()
            day = self.days[key] = _Day(self.reader.read(values), self.context.default_offset)
        ctx = self.context
        kind = day.kind
        if kind != _FIXED:
            if not ctx.valid_from <= now < ctx.valid_to:
                ctx.refresh(now)
            if day.key != (ctx.year if kind == _GUESS_YEAR else ctx.today):
                day.settle(ctx)
        if day.wall0 is None:
            return None
        at_h, at_m, at_s, at_f = self.clock
        text = values[at_h]
        hour = int(text) if text is not None else 0
        text = values[at_m] if at_m >= 0 else None
        minute = int(text) if text is not None else 0
        text = values[at_s] if at_s >= 0 else None
        second = int(text) if text is not None else 0
        if hour > 23 or minute > 59 or second > 59:
            return None
        wall = day.wall0 + hour * 3600 + minute * 60 + second
        if day.zone is not None:
            wall -= day.zone
            epoch = float(wall)
        else:
            offset = ctx.day_offsets.get(wall // 86400)  # (inlined first step of local_epoch)
            epoch = float(wall - offset) if offset is not None else ctx.local_epoch(wall)
        if ctx.keep_fractions and at_f >= 0 and values[at_f]:
            fraction = values[at_f] or "0"
            epoch += int(fraction) / 10 ** len(fraction)
        hit = DateHit(span[0], span[1], epoch, self.name)
        if kind == _FIXED:
            return hit, -_NEVER, _NEVER
        edge = wall - ctx.offset - (86400 if kind == _GUESS_YEAR else 0)
        if now < edge:
            return None  # this year's (today's) date lies ahead: the general reader steps back
        return hit, edge if edge > ctx.valid_from else ctx.valid_from, ctx.valid_to

    def _read(self, values: tuple[str | None, ...], span: tuple[int, int], now: float) -> _Reading:
        fields = self.reader.read(values)
        if fields is None:
            return None, -_NEVER, _NEVER
        if fields.epoch is not None:
            return DateHit(span[0], span[1], fields.epoch, self.name), -_NEVER, _NEVER
        ctx = self.context
        if fields.month is None and fields.day is None and fields.yearday is None and fields.week is None:
            return self._guess_day(fields, span, now)
        if fields.year is None:
            return self._guess_year(fields, span, now)
        day = _calendar_day(fields, fields.year)
        found = day and _wall_and_epoch(fields, fields.year, *day, ctx)
        if not found:
            return None, -_NEVER, _NEVER
        return DateHit(span[0], span[1], found[1], self.name), -_NEVER, _NEVER

    def _guess_year(self, fields: _Fields, span: tuple[int, int], now: float) -> _Reading:
        """This year, unless that is more than a day ahead of now: then last year."""
        ctx = self.context
        if not ctx.valid_from <= now < ctx.valid_to:
            ctx.refresh(now)
        year = ctx.year
        day = _calendar_day(fields, year)
        this_year = day and _wall_and_epoch(fields, year, *day, ctx)
        if not this_year:  # 29 February in a common year: fail2ban gives up too
            return None, ctx.valid_from, ctx.valid_to
        # the now from which this year's date is no longer "more than a day ahead"
        edge = this_year[0] - ctx.offset - 86400
        if now >= edge:
            return DateHit(span[0], span[1], this_year[1], self.name), max(edge, ctx.valid_from), ctx.valid_to
        day = _calendar_day(fields, year - 1)
        last_year = day and _wall_and_epoch(fields, year - 1, *day, ctx)
        stepped = DateHit(span[0], span[1], last_year[1], self.name) if last_year else None
        return stepped, ctx.valid_from, min(edge, ctx.valid_to)

    def _guess_day(self, fields: _Fields, span: tuple[int, int], now: float) -> _Reading:
        """Only a time of day: today, unless that is still to come: then yesterday."""
        ctx = self.context
        if not ctx.valid_from <= now < ctx.valid_to:
            ctx.refresh(now)
        today = datetime.date.fromordinal(ctx.today)
        this_day = _wall_and_epoch(fields, today.year, today.month, today.day, ctx)
        if not this_day:
            return None, ctx.valid_from, ctx.valid_to
        edge = this_day[0] - ctx.offset
        if now >= edge:
            return DateHit(span[0], span[1], this_day[1], self.name), max(edge, ctx.valid_from), ctx.valid_to
        before = datetime.date.fromordinal(ctx.today - 1)
        day_before = _wall_and_epoch(fields, before.year, before.month, before.day, ctx)
        hit = DateHit(span[0], span[1], day_before[1], self.name) if day_before else None
        return hit, ctx.valid_from, min(edge, ctx.valid_to)


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
        from .literals import analyse_all, fold_text
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
