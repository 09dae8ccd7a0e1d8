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
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from jails.engine.errors import FilterError

__all__ = ["DateDetector", "DateHit", "parse_zone_offset"]


@dataclass(frozen=True, slots=True)
class DateHit:
    """Where the date is in the line and what time it says."""

    start: int  # where the date text starts in the line
    end: int  # where it ends: the engine cuts line[start:end] before regex matching
    epoch: float  # seconds since the epoch (UTC)
    template: str  # readable name of the template that matched


# --------------------------------------------------------------------------------------
# Directives: what each `%X` stands for in a datepattern.
# Group names are the directive letters; the converter reads them back by name.
# --------------------------------------------------------------------------------------

_MONTHS_FULL = ("january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december")
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
    return {
        "%": "%",
        "a": rf"(?P<a>{_alternatives(tuple(n[:3] for n in _DAYS_FULL))})",
        "A": rf"(?P<A>{_alternatives(_DAYS_FULL)})",
        "b": rf"(?P<b>{_alternatives(tuple(n[:3] for n in _MONTHS_FULL))})",
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
    "a": "DAY", "A": "DAYNAME", "b": "MON", "B": "MONTH", "d": "Day", "H": "24hour",
    "I": "12hour", "j": "Yearday", "m": "Month", "M": "Minute", "p": "AMPM", "S": "Second",
    "U": "Yearweek", "w": "Weekday", "W": "Yearweek", "y": "Year2", "Y": "Year", "%": "%",
    "z": "Zone offset", "f": "Microseconds", "Z": "Zone name", "s": "Epoch",
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
            raise FilterError(f"datepattern {pattern!r}: unknown directive %{key} "
                              "(write %% for a literal percent sign)")
        regex.append(pattern[pos:found.start()])
        name.append(pattern[pos:found.start()])
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
    -12: "Y", -11: "X NUT SST", -10: "W CKT HAST HST TAHT TKT", -9: "V AKST GAMT GIT HADT HNY",
    -8: "U AKDT CIST HAY HNP PST PT", -7: "T HAP HNR MST PDT", -6: "S CST EAST GALT HAR HNC MDT",
    -5: "R CDT COT EASST ECT EST ET HAC HNE PET", -4: "Q AST BOT CLT COST EDT FKT GYT HAE HNA PYT",
    -3: "P ADT ART BRT CLST FKST GFT HAA PMST PYST SRT UYT WGT", -2: "O BRST FNT PMDT UYST WGST",
    -1: "N AZOT CVT EGT", 0: "Z EGST GMT UTC WET WT", 1: "A CET DFT WAT WEDT WEST",
    2: "B CAT CEDT CEST EET SAST WAST", 3: "C EAT EEDT EEST IDT MSK",
    4: "D AMT AZT GET GST KUYT MSD MUT RET SAMT SCT",
    5: "E AMST AQTT AZST HMT MAWT MVT PKT TFT TJT TMT UZT YEKT",
    6: "F ALMT BIOT BTT IOT KGT NOVT OMST YEKST", 7: "G CXT DAVT HOVT ICT KRAT NOVST OMSST THA WIB",
    8: "H ACT AWST BDT BNT CAST HKT IRKT KRAST MYT PHT SGT ULAT WITA WST",
    9: "I AWDT IRKST JST KST PWT TLT WDT WIT YAKT", 10: "K AEST ChST PGT VLAT YAKST YAPT",
    11: "L AEDT LHDT MAGT NCT PONT SBT VLAST VUT", 12: "M ANAST ANAT FJT GILT MAGST MHT NZST PETST PETT TVT WFT",
    13: "FJST NZDT", 11.5: "NFT", 10.5: "ACDT LHST", 9.5: "ACST", 6.5: "CCT MMT", 5.75: "NPT",
    5.5: "SLT", 4.5: "AFT IRDT", 3.5: "IRST", -2.5: "HAT NDT", -3.5: "HNT NST NT", -4.5: "HLV VET",
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
    # the value of a %z/%Z group; upper-cased because name directives make the whole
    # pattern case-insensitive, so "utc" can reach here
    text = text.upper()
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

# A converter turns a match into epoch seconds (None: not a valid date) given "now".
_Converter = Callable[["re.Match[str]", float], "float | None"]


class _Template:
    """One compiled date regex and the way to read a time out of its match."""

    __slots__ = ("name", "source", "compiled", "search", "anchored", "convert", "is_none",
                 "weight", "hits", "matches", "distance", "last_used")

    def __init__(self, name: str, source: str, regex: str, anchored: bool, flags: int = 0,
                 is_none: bool = False) -> None:
        self.name = name
        self.source = source  # what {DATE} substitution re-uses
        try:
            self.compiled = re.compile(regex, flags)
        except re.error as exc:
            raise FilterError(f"datepattern {source!r} is not a valid regex: {exc}") from exc
        if self.compiled.groups < 1:
            raise FilterError(f"datepattern {source!r}: no group for the date text")
        # a regex that starts with `^` can only match at 0: match() says so without
        # trying every position of a long line (search() would too, just slower)
        starts_at_0 = regex.startswith("^") or re.match(r"\(\?[aiLmsux]+\)\^", regex) is not None
        self.search = self.compiled.match if starts_at_0 else self.compiled.search
        self.anchored = anchored
        self.is_none = is_none
        self.convert: _Converter = _no_date
        # what fail2ban's template ordering looks at (see DateDetector._promote)
        self.weight = 1.0  # 100 for the line-start twins of the defaults: always preferred
        self.hits = 0  # lines this template won
        self.matches = 0  # lines its regex matched, won or not
        self.distance = 0x7FFFFFFF  # where it matched last time
        self.last_used = 0.0

    def rank(self) -> float:
        """Many wins close to the line start rank high."""
        return self.hits * self.weight / max(1, self.distance)


def _no_date(match: re.Match[str], now: float) -> float | None:
    return None


def _pattern_template(pattern: str, context: _Context) -> _Template:
    """A template from a strptime-like pattern ({^LN-BEG}/{UNB} prefixes allowed)."""
    begin, end = "word", True
    body = pattern
    if body.startswith(_UNBOUND_TAG):
        body, begin, end = body[len(_UNBOUND_TAG):], "", False
    if begin and body.startswith(_LINE_BEGIN_TAG):
        body, begin = body[len(_LINE_BEGIN_TAG):], "line"
    regex, name = _expand_directives(body)
    flags = re.IGNORECASE if _ALPHA_DIRECTIVE_RE.search(body) else 0
    spec = _bounded_regex(regex, name, begin, end)
    template = _Template(spec.name, pattern, spec.regex, spec.anchored, flags)
    template.convert = _FieldConverter(template.compiled, context, pattern).convert
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
        regex = (rf"((?:^|(?P<square>(?<=^\[))|(?P<selinux>(?<=\baudit\())){digits})"
                 r"(?:(?(selinux)(?=:\d+\)))|(?(square)(?=\])))")
        spec = _bounded_regex(regex, name, "", True)
    template = _Template(spec.name, name, spec.regex, spec.anchored)
    template.convert = _epoch_converter(value_group, long_form)
    return template


def _epoch_converter(group: int, long_form: bool) -> _Converter:
    def convert(match: re.Match[str], now: float) -> float | None:
        text = match.group(group)
        value = float(text)
        if long_form and len(text) >= 13:  # glued milli- or microseconds
            value /= 1_000_000 if len(text) >= 16 and "." not in text else 1000
        return value

    return convert


def _tai64n_template(line_begin: bool) -> _Template:
    # "@" + 16 hex digits of 2^62 + seconds + 8 hex digits of nanoseconds
    spec = _bounded_regex("@[0-9a-f]{24}", "TAI64N", "line" if line_begin else "", True)
    template = _Template(spec.name, "TAI64N", spec.regex, spec.anchored)

    def convert(match: re.Match[str], now: float) -> float | None:
        # like fail2ban: the seconds label without the 2^62 bit; nanoseconds dropped
        return float(int(match.group(1)[2:17], 16))

    template.convert = convert
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
            source = source[len(tag):]
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

_DAY = datetime.timedelta(days=1)
_CACHE_LIMIT = 20000


class _Context:
    """What conversion needs besides the line: the log's zone, fractions policy, and a
    memo of "now" in local time (year, naive seconds) so match() rarely asks libc."""

    __slots__ = ("default_offset", "keep_fractions", "_valid_from", "_valid_to", "_offset", "_year",
                 "_today")

    def __init__(self, default_offset: int | None, keep_fractions: bool) -> None:
        self.default_offset = default_offset
        self.keep_fractions = keep_fractions
        self._valid_from = 1.0
        self._valid_to = 0.0
        self._offset = 0
        self._year = 1970
        self._today = 0

    def _refresh(self, now: float) -> None:
        local = time.localtime(now)
        self._offset = local.tm_gmtoff
        self._year = local.tm_year
        self._today = datetime.date(local.tm_year, local.tm_mon, local.tm_mday).toordinal()
        # valid for a minute at most, and never across local midnight (day and year change)
        to_midnight = 86400 - (local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec) - now % 1.0
        self._valid_from = now
        self._valid_to = now + min(60.0, to_midnight)

    def local_year(self, now: float) -> int:
        if not self._valid_from <= now < self._valid_to:
            self._refresh(now)
        return self._year

    def local_today(self, now: float) -> int:
        if not self._valid_from <= now < self._valid_to:
            self._refresh(now)
        return self._today

    def naive_now(self, now: float) -> float:
        """`now` as local wall-clock seconds (how fail2ban compares guessed dates)."""
        if not self._valid_from <= now < self._valid_to:
            self._refresh(now)
        return now + self._offset


@dataclass
class _Fields:
    """The date parts read from a match; None where the pattern gave nothing."""

    year: int | None = None
    month: int | None = None
    day: int | None = None
    hour: int = 0
    minute: int = 0
    second: int = 0
    fraction: float = 0.0
    offset: int | None = None  # minutes east of UTC written in the line
    yearday: int | None = None
    weekday: int | None = None  # Monday = 0
    week: int | None = None
    week_starts_sunday: bool = False
    epoch: float | None = None  # %s


def _read_fields(values: dict[str, str]) -> _Fields | None:
    """Parse captured texts into numbers; None when a value cannot be a date part."""
    f = _Fields()
    for key, text in values.items():
        if key == "Y":
            f.year = int(text)
        elif key == "y":
            year = int(text)
            f.year = year + 2000 if year <= 2000 else year  # two digits: this century
        elif key == "m":
            f.month = int(text)
        elif key in ("b", "B"):
            f.month = _MONTH_NUMBER.get(text.lower())
            if f.month is None:
                return None
        elif key == "d":
            f.day = int(text)
        elif key == "H":
            f.hour = int(text)
        elif key == "I":
            f.hour = _twelve_hour(int(text), values.get("p", ""))
        elif key == "M":
            f.minute = int(text)
        elif key == "S":
            f.second = int(text)
        elif key == "f":
            f.fraction = int(text) / 10 ** len(text)
        elif key in ("a", "A"):
            f.weekday = _WEEKDAY_NUMBER.get(text.lower())
        elif key == "w":
            f.weekday = (int(text) - 1) % 7
        elif key == "j":
            f.yearday = int(text)
        elif key in ("U", "W"):
            f.week = int(text)
            f.week_starts_sunday = key == "U"
        elif key in ("z", "Z"):
            f.offset = _zone_value_offset(text)
            if f.offset is None:
                return None
        elif key == "s":
            f.epoch = float(text)
    return f


def _twelve_hour(hour: int, ampm: str) -> int:
    if ampm.lower() == "pm":
        return hour if hour == 12 else hour + 12
    return 0 if hour == 12 else hour  # AM, or no AM/PM at all


def _date_from_week(year: int, week: int, weekday: int, sunday_first: bool) -> tuple[int, int] | None:
    """(month, day) for %U/%W week number + weekday, like strptime does."""
    jan1 = datetime.date(year, 1, 1)
    if sunday_first:  # %U: week 1 starts on the first Sunday
        first = jan1 + datetime.timedelta(days=(6 - jan1.weekday()) % 7)
        offset = (weekday + 1) % 7
    else:  # %W: week 1 starts on the first Monday
        first = jan1 + datetime.timedelta(days=(7 - jan1.weekday()) % 7)
        offset = weekday
    when = first + datetime.timedelta(weeks=week - 1, days=offset)
    if week == 0:
        when = first - datetime.timedelta(days=7 - offset)
    return (when.month, when.day) if when.year == year else None


class _FieldConverter:
    """Reads a pattern template's named groups and turns them into epoch seconds.

    Results are cached by the captured values. When the year (or the whole date) is
    not in the line it depends on "now" too: the cache then keys on the local year
    (or day) of now and does fail2ban's "not in the future" check per call.
    """

    def __init__(self, compiled: re.Pattern[str], context: _Context, pattern: str) -> None:
        self.context = context
        self.pattern = pattern
        # only date groups matter (not helpers like _sep); sorted for a stable key
        self.names = tuple(sorted(n for n in compiled.groupindex if n in _KNOWN_GROUPS))
        self.cache: dict[object, tuple[float, ...]] = {}

    def convert(self, match: re.Match[str], now: float) -> float | None:
        values = match.group(*self.names) if len(self.names) > 1 else (
            (match.group(self.names[0]),) if self.names else ())
        cached = self.cache.get(values)
        if cached is None:
            if len(self.cache) > _CACHE_LIMIT:
                self.cache.clear()
            cached = self._compute(values, now)
            self.cache[values] = cached
        if not cached:
            return None
        kind = cached[0]
        if kind == 0.0:  # complete date: now does not matter
            return cached[1]
        if kind == 1.0:  # year guessed
            return self._guess_year(cached, values, now)
        return self._guess_day(values, now)

    # -- cache entries: (0, epoch) | (1, year, naive_limit_this_year, epoch_this_year) | (2,)
    def _compute(self, values: tuple[str | None, ...], now: float) -> tuple[float, ...]:
        found = {n: v for n, v in zip(self.names, values, strict=True) if v is not None}
        fields = _read_fields(found)
        if fields is None:
            return ()
        if fields.epoch is not None:
            return (0.0, fields.epoch)
        if fields.month is None and fields.day is None and fields.yearday is None and fields.week is None:
            return (2.0,)
        if fields.year is None:
            return (1.0, float("nan"))
        epoch = self._epoch_of(fields, fields.year)
        return () if epoch is None else (0.0, epoch)

    def _guess_year(self, cached: tuple[float, ...], values: tuple[str | None, ...], now: float) -> float | None:
        year = self.context.local_year(now)
        key = (values, year)
        entry = self.cache.get(key)
        if entry is None:
            entry = self._year_candidates(values, year)
            self.cache[key] = entry
        if not entry:
            return None
        naive_this_year, epoch_this_year, epoch_last_year = entry
        # fail2ban: a date more than a day in the future is from last year
        if naive_this_year > self.context.naive_now(now) + 86400.0:
            return None if math.isnan(epoch_last_year) else epoch_last_year
        return epoch_this_year

    def _year_candidates(self, values: tuple[str | None, ...], year: int) -> tuple[float, ...]:
        found = {n: v for n, v in zip(self.names, values, strict=True) if v is not None}
        fields = _read_fields(found)
        if fields is None:
            return ()
        naive = self._naive(fields, year)
        if naive is None:
            return ()
        this_year = self._epoch_of(fields, year)
        last_year = self._epoch_of(fields, year - 1)
        if this_year is None:
            return ()
        # naive datetimes compared as if UTC: only the difference between them matters
        return (float(calendar.timegm(naive.timetuple())), this_year,
                float("nan") if last_year is None else last_year)

    def _guess_day(self, values: tuple[str | None, ...], now: float) -> float | None:
        """Only a time of day: today, or yesterday when today's would be in the future."""
        today = self.context.local_today(now)
        key = (values, today)
        entry = self.cache.get(key)
        if entry is None:
            entry = self._day_candidates(values, today)
            self.cache[key] = entry
        if not entry:
            return None
        naive_today, epoch_today, epoch_yesterday = entry
        if naive_today > self.context.naive_now(now):
            return epoch_yesterday
        return epoch_today

    def _day_candidates(self, values: tuple[str | None, ...], today: int) -> tuple[float, ...]:
        found = {n: v for n, v in zip(self.names, values, strict=True) if v is not None}
        fields = _read_fields(found)
        if fields is None:
            return ()
        day = datetime.date.fromordinal(today)
        yesterday = day - _DAY
        fields.month, fields.day = day.month, day.day
        naive = self._naive(fields, day.year)
        epoch_today = self._epoch_of(fields, day.year)
        fields.month, fields.day = yesterday.month, yesterday.day
        epoch_yesterday = self._epoch_of(fields, yesterday.year)
        if naive is None or epoch_today is None or epoch_yesterday is None:
            return ()
        return (float(calendar.timegm(naive.timetuple())), epoch_today, epoch_yesterday)

    def _naive(self, f: _Fields, year: int) -> datetime.datetime | None:
        """fail2ban's comparison value: the date as written, moved to UTC when a zone is known."""
        month, day = f.month, f.day
        if f.yearday is not None and (month is None or day is None):
            try:
                when = datetime.date(year, 1, 1) + datetime.timedelta(days=f.yearday - 1)
            except (ValueError, OverflowError):
                return None
            year, month, day = when.year, when.month, when.day
        elif f.week is not None and f.weekday is not None and (month is None or day is None):
            found = _date_from_week(year, f.week, f.weekday, f.week_starts_sunday)
            if found is None:
                return None
            month, day = found
        if month is None or day is None:
            return None
        try:
            naive = datetime.datetime(year, month, day, f.hour, f.minute, f.second)
        except ValueError:  # 31 February, hour 24...
            return None
        offset = f.offset if f.offset is not None else self.context.default_offset
        if offset is not None:
            naive -= datetime.timedelta(minutes=offset)
        return naive

    def _epoch_of(self, f: _Fields, year: int) -> float | None:
        naive = self._naive(f, year)
        if naive is None:
            return None
        zoned = f.offset is not None or self.context.default_offset is not None
        if zoned:
            epoch = float(calendar.timegm(naive.timetuple()))
        else:  # local time as the TZ environment variable says, DST guessed by libc
            epoch = time.mktime((naive.year, naive.month, naive.day, naive.hour, naive.minute,
                                 naive.second, 0, 0, -1))
        # fail2ban drops fractions of pattern dates; epoch templates keep theirs
        return epoch + f.fraction if self.context.keep_fractions else epoch


_KNOWN_GROUPS = frozenset("YymbBdHIMSfaAwjUWzZsp")


# --------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------


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

    def __init__(self, datepattern: str | None = None, logtimezone: str | None = None,
                 *, keep_fractions: bool = False) -> None:
        default_offset = None
        if logtimezone is not None and logtimezone.strip():
            default_offset = parse_zone_offset(logtimezone.strip())
            if default_offset is None:
                raise FilterError(f"logtimezone {logtimezone!r}: unknown time zone "
                                  "(use UTC, UTC+HHMM, UTC-HHMM or a zone abbreviation like CET)")
        self._context = _Context(default_offset, keep_fractions)
        templates: list[_Template] = []
        seen: set[str] = set()
        for text, weight in _expand_datepattern(datepattern):
            template = _none_template() if text.upper() == "{NONE}" else _template_from_text(text, self._context)
            if template.name in seen:
                continue
            seen.add(template.name)
            template.weight = weight
            templates.append(template)
        self.templates: list[_Template] = templates
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
        found = self._find(line)
        if found is None:
            return None
        template, m = found
        start, end = m.span(1)
        if start == end or template.is_none:
            return None  # an empty date: the line has none, the caller uses now
        try:
            epoch = template.convert(m, now)
        except (ValueError, OverflowError):
            return None
        if epoch is None:
            return None
        return DateHit(start, end, epoch, template.name)

    # -- which template: fail2ban's search order and preferences ---------------------

    def _find(self, line: str) -> tuple[_Template, re.Match[str]] | None:
        reserve: tuple[_Template, re.Match[str]] | None = None
        skip: _Template | None = None
        last = self._last
        if last is not None:
            m = self._try_last(last, line)
            if m is not None:
                if (last.anchored or len(self.templates) == 1
                        or (m.start() == self._start and m.end() == self._end)):
                    return self._won(last, m, line)
                reserve = (last, m)  # moved: maybe a different date now, ask the others
            if last.anchored or not self._same_surroundings(line):
                skip = last  # already searched the whole line
        return self._search_all(line, skip, reserve)

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
        left = line[start - 1:start] == self._before or (
            line[start:start + 1] == self._first and not self._first.isalnum())
        right = line[end:end + 1] == self._after or (
            line[end - 1:end] == self._last_char and not self._last_char.isalnum())
        return left and right

    def _search_all(self, line: str, skip: _Template | None,
                    reserve: tuple[_Template, re.Match[str]] | None) -> tuple[_Template, re.Match[str]] | None:
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
                return self._won(template, m, line)
            if start == 0 and template.hits and not templates[i + 1].matches:
                return self._won(template, m, line)  # a known format, and nothing else ever matched
            if start > template.distance or start > self._start:
                if start < best_start:
                    reserve, best_start = (template, m), start
                continue
            return self._won(template, m, line)
        return None if reserve is None else self._won(*reserve, line)

    def _won(self, template: _Template, m: re.Match[str], line: str) -> tuple[_Template, re.Match[str]]:
        start, end = m.span()
        template.hits += 1
        template.last_used = time.time()
        template.distance = start
        self._start, self._before, self._first = start, line[start - 1:start], line[start:start + 1]
        self._end, self._last_char, self._after = end, line[end - 1:end], line[end:end + 1]
        templates = self.templates
        index = templates.index(template) if template is not templates[0] else 0
        if self._first_unused == index:
            self._first_unused += 1
        if index and template is not self._last:
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
