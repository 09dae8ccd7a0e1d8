"""fail2ban's duration syntax (MyTime.str2seconds) and our short display form."""

from __future__ import annotations

import pytest

from jails.engine.durations import MONTH, YEAR, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("600", 600),
        ("0", 0),
        ("10m", 600),
        ("1h", 3600),
        ("1d", 86400),
        ("7d", 604800),
        ("1w", 604800),
        ("1mo", 2629800),
        ("1y", 31557600),
        ("1d 12h", 129600),
        ("1d12h", 129600),
        ("1h30m", 5400),
        ("1hour+30min", 5400),
        ("0d 1h 30m", 5400),
        ("1year-6mo", 15778800),
        ("6 months", 15778800),
        ("7 days", 604800),
        ("2 hours", 7200),
        ("90 Minutes", 5400),
        ("30 seconds", 30),
        ("2weeks", 1209600),
        ("1.5h", 5400),
        ("  24h ", 86400),
    ],
)
def test_it_parses_fail2ban_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_it_uses_fail2ban_month_and_year_lengths() -> None:
    # a year is 365.25 days, a month a twelfth of it (fail2ban's str2seconds docstring)
    assert YEAR == 365.25 * 86400
    assert MONTH * 12 == YEAR
    assert parse_duration("1month") / 86400 == 30.4375


@pytest.mark.parametrize("text", ["-1", "permanent", "PERMANENT", " -1 "])
def test_it_reads_permanent(text: str) -> None:
    assert parse_duration(text) == -1


@pytest.mark.parametrize("text", ["10 parsecs", "", "abc", "h", "1 2", "10m x", "1h;2h", "1e5"])
def test_it_rejects_what_is_no_duration_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as info:
        parse_duration(text)
    assert "is not a duration: use e.g. 600, 10m, 1h, 7d, 1w, 1mo, 1y or -1/permanent" in str(info.value)


def test_it_names_the_bad_text_in_the_message() -> None:
    with pytest.raises(ValueError, match=r'^"10 parsecs" is not a duration'):
        parse_duration("10 parsecs")


@pytest.mark.parametrize("text", ["-5", "1h-2h"])
def test_it_rejects_negative_durations_other_than_permanent(text: str) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (86400, "1d"),
        (5400, "1h30m"),
        (-1, "permanent"),
        (0, "0"),
        (59, "59s"),
        (600, "10m"),
        (604800, "1w"),
        (10 * 86400, "10d"),
        (14 * 86400, "2w"),
        (129600, "1d12h"),
        (2629800, "1mo"),
        (31557600, "1y"),
        (365 * 86400, "365d"),
        (371 * 86400, "53w"),
        (3661, "1h1m1s"),
    ],
)
def test_it_formats_the_shortest_readable_form(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 59, 61, 3599, 86399, 86401, 700000, 2629800 * 5 + 7, 31557600 * 3 + 12345])
def test_it_formats_what_it_parses_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
