"""Durations as fail2ban writes them: ``600``, ``10m``, ``1h30m``, ``1d 12h``, ``7 days``...

fail2ban (MyTime.str2seconds) rewrites the text into a Python expression and eval()s
it. We parse the same syntax with a small tokenizer instead: a sum of signed terms,
each a number with an optional unit. Unit lengths are fail2ban's: a year is 365.25
days (leap years averaged) and a month is a twelfth of that (30.4375 days); ``m`` is
minutes, months are ``mo``/``mon``/``month(s)``.
"""

from __future__ import annotations

import re

__all__ = ["PERMANENT", "format_duration", "parse_duration"]

PERMANENT = -1

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
YEAR = (365 * 3 + 366) * DAY // 4  # 31_557_600
MONTH = YEAR // 12  # 2_629_800

# Every spelling fail2ban accepts (its regexes: `days?|da|dd?`, `weeks?|wee?|ww?`, ...).
_UNITS: dict[str, int] = {}
for _names, _seconds in (
    (("s", "ss", "se", "sec", "second", "seconds"), 1),
    (("m", "mm", "mi", "min", "minute", "minutes"), MINUTE),
    (("h", "hh", "ho", "hou", "hour", "hours"), HOUR),
    (("d", "dd", "da", "day", "days"), DAY),
    (("w", "ww", "we", "wee", "week", "weeks"), WEEK),
    (("mo", "mon", "month", "months"), MONTH),
    (("y", "yy", "ye", "yea", "year", "years"), YEAR),
):
    for _name in _names:
        _UNITS[_name] = _seconds

_TERM_RE = re.compile(r"\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*")
_PERMANENT_WORDS = frozenset({"-1", "permanent"})

_HINT = "use e.g. 600, 10m, 1h, 7d, 1w, 1mo, 1y or -1/permanent"


def parse_duration(text: str) -> int:
    """Seconds in `text` (fail2ban's syntax); -1 for ``-1``/``permanent``.

    Raises ValueError with an admin-readable message for anything else.
    """
    clean = text.strip().lower()
    if clean in _PERMANENT_WORDS:
        return PERMANENT
    total = 0.0
    pos = 0
    terms = 0
    while pos < len(clean):
        match = _TERM_RE.match(clean, pos)
        if match is None or match.end() == pos:
            raise ValueError(_not_a_duration(text))
        sign, number, unit = match.groups()
        if terms and not sign and unit == "" and _previous_char_is_digit(clean, match.start()):
            raise ValueError(_not_a_duration(text))
        seconds = _UNITS.get(unit or "s")
        if seconds is None:
            raise ValueError(_not_a_duration(text))
        value = float(number) * seconds
        total += -value if sign == "-" else value
        pos = match.end()
        terms += 1
    if not terms:
        raise ValueError(_not_a_duration(text))
    if total < 0:
        raise ValueError(f'"{text.strip()}" is negative: only -1 (permanent) may be')
    return round(total)


def _previous_char_is_digit(text: str, start: int) -> bool:
    # "1 2" is no duration (fail2ban would read 1+2: we prefer to refuse such a typo)
    before = text[:start].rstrip()
    return bool(before) and before[-1].isdigit()


def _not_a_duration(text: str) -> str:
    return f'"{text.strip()}" is not a duration: {_HINT}'


# Units for display, largest first. Month and year are not whole days, so they only
# appear when they give the shorter text (2629800 -> "1mo", 31536000 -> "365d").
_DISPLAY_SETS: tuple[tuple[tuple[str, int], ...], ...] = (
    (("y", YEAR), ("mo", MONTH), ("w", WEEK), ("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1)),
    (("w", WEEK), ("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1)),
    (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1)),
)


def format_duration(seconds: int) -> str:
    """The shortest text `parse_duration` reads back as `seconds` (86400 -> "1d")."""
    if seconds < 0:
        return "permanent"
    if seconds == 0:
        return "0"
    candidates = [_greedy(seconds, units) for units in _DISPLAY_SETS]
    return min(candidates, key=len)  # min() keeps the first of equal lengths


def _greedy(seconds: int, units: tuple[tuple[str, int], ...]) -> str:
    parts: list[str] = []
    rest = seconds
    for name, size in units:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{name}")
    return "".join(parts)
