"""Field resolution: a template's match read into epoch seconds (a `DateHit`).

Owns time zones (fail2ban's abbreviations and offsets, `parse_zone_offset`), the
named groups read back into date fields (month and day names, 12-hour clocks, day of
year, week numbers, `%s`), the year or day a date without one gets (fail2ban's "not
in the future" rule against now), local time and its DST switches, and the caches
that make a log's repeated seconds cost one dict lookup. `time.strptime` is never
called. It also gives each kind of template its resolver: strptime-like patterns,
`EPOCH`/`LEPOCH`, `TAI64N` and `{NONE}` (`_template_from_text`).

Built on `templates.py`; `detector.py` builds on this.
"""

from __future__ import annotations

import calendar
import datetime
import operator
import re
import time
from collections.abc import Callable
from typing import NamedTuple

from .templates import (
    _ALPHA_DIRECTIVE_RE,
    _DAYS_FULL,
    _EPOCH_DIGITS,
    _EPOCH_TAG_RE,
    _LINE_BEGIN_TAG,
    _LONG_EPOCH_DIGITS,
    _MONTHS_FULL,
    _UNBOUND_TAG,
    _ZONE_ABBR_RE,
    _ZONE_OFFSET_RE,
    DateHit,
    _bounded_regex,
    _expand_directives,
    _Template,
)

_MONTH_NUMBER = {name: i for i, name in enumerate(_MONTHS_FULL, 1)}
_MONTH_NUMBER.update({name[:3]: i for i, name in enumerate(_MONTHS_FULL, 1)})
_WEEKDAY_NUMBER = {name: i for i, name in enumerate(_DAYS_FULL)}  # Monday = 0
_WEEKDAY_NUMBER.update({name[:3]: i for i, name in enumerate(_DAYS_FULL)})


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
            assert self.fields is not None  # noqa: S101 - narrows the type: set with kind _GUESS_YEAR
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
        assert self.clock is not None  # noqa: S101 - narrows the type: the fast path has a clock
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
# Templates with their readers
# --------------------------------------------------------------------------------------


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
