"""Tests of the date detector (jails/engine/dates/) against fail2ban's semantics.

The corpus score at the bottom runs every dated sample line of fail2ban's test logs
through a detector built from that filter's datepattern (read by jails.engine.ini)
and checks the epoch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jails.engine.dates import DateDetector, DateHit, parse_zone_offset
from jails.engine.errors import FilterError
from jails.engine.ini import load_filter_file
from tests.paths import CORPUS, REPO, corpus_tool
from tests.zones import local_zone

CORPUS_TZ = "CET-01CEST-02,M3.5.0,M10.5.0"
NOW = 1124013600.0  # 2005-08-14T10:00:00Z = 12:00 CEST
# lines right in the corpus score, measured: raise it when the detector gets better
CORPUS_RIGHT_AT_LEAST = 1288


@pytest.fixture(autouse=True)
def corpus_zone() -> Iterator[None]:
    """Local time is the corpus's CET/CEST for every test; restored afterwards."""
    with local_zone(CORPUS_TZ):
        yield


def local(text: str) -> float:
    """Epoch of a local (CET/CEST) wall-clock time written 'YYYY-mm-ddTHH:MM:SS'."""
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def hit(line: str, datepattern: str | None = None, now: float = NOW, **kw: Any) -> DateHit | None:
    return DateDetector(datepattern, **kw).match(line, now)


def epoch_of(line: str, datepattern: str | None = None, now: float = NOW, **kw: Any) -> float | None:
    found = hit(line, datepattern, now, **kw)
    return None if found is None else found.epoch


# ---------------------------------------------------------------------------------------
# default templates


def test_it_reads_a_syslog_date_and_guesses_the_year() -> None:
    line = "Aug 14 11:59:58 host sshd[123]: Failed password"
    found = hit(line)
    assert found is not None
    assert (found.start, found.end) == (0, 15)
    assert found.epoch == local("2005-08-14T11:59:58")


def test_it_puts_a_date_from_the_future_in_the_previous_year() -> None:
    assert epoch_of("Dec 31 23:59:59 host x") == local("2004-12-31T23:59:59")
    # within a day ahead is still this year (clock skew, zone confusion)
    assert epoch_of("Aug 15 11:00:00 host x") == local("2005-08-15T11:00:00")
    assert epoch_of("Aug 15 13:00:00 host x") == local("2004-08-15T13:00:00")


def test_it_reads_iso_dates_with_and_without_zones() -> None:
    assert epoch_of("2005-08-14T11:59:58 x") == local("2005-08-14T11:59:58")
    assert epoch_of("2005-08-14 11:59:58.123456 x") == local("2005-08-14T11:59:58")
    assert epoch_of("2005-08-14T09:59:58Z x") == local("2005-08-14T11:59:58")
    assert epoch_of("2005-08-14T11:59:58+02:00 x") == local("2005-08-14T11:59:58")
    assert epoch_of("2005-08-14T04:59:58 -0500 x") == local("2005-08-14T11:59:58")
    assert epoch_of("2005/08/14 11:59:58 x") == local("2005-08-14T11:59:58")


def test_it_keeps_fractions_only_when_asked() -> None:
    line = "2005-08-14T11:59:58.25 x"
    assert epoch_of(line) == local("2005-08-14T11:59:58")  # fail2ban drops them
    assert epoch_of(line, keep_fractions=True) == local("2005-08-14T11:59:58") + 0.25


def test_it_reads_apache_dates_inside_brackets() -> None:
    line = '192.0.2.1 - - [14/Aug/2005:11:59:58 +0200] "GET / HTTP/1.1" 404'
    found = hit(line)
    assert found is not None
    assert line[found.start : found.end] == "14/Aug/2005:11:59:58 +0200"
    assert found.epoch == local("2005-08-14T11:59:58")


def test_it_reads_epoch_seconds_at_line_start_and_in_audit_records() -> None:
    assert epoch_of("1124013598.123 x") == pytest.approx(1124013598.123)
    assert epoch_of("[1124013598] x") == 1124013598.0
    line = "type=AVC msg=audit(1124013598.123:42): denied"
    found = hit(line)
    assert found is not None and line[found.start : found.end] == "1124013598.123"


def test_it_reads_tai64n_labels() -> None:
    found = hit("@4000000042ff2d6e2e8ac2a4 x")
    assert found is not None and found.epoch == 0x42FF2D6E and found.end == 25


def test_it_prefers_the_date_at_the_line_start_over_one_in_the_message() -> None:
    line = "Aug 14 11:59:58 host sshd: user 2001-01-01 01:01:01 from 192.0.2.1"
    found = hit(line)
    assert found is not None and found.start == 0


def test_it_reads_asctime_with_year_and_weekday() -> None:
    assert epoch_of("[Sun Aug 14 11:59:58.123 2005] [error] x") == local("2005-08-14T11:59:58")
    assert epoch_of("Sun Aug 14 2005 11:59:58 x") == local("2005-08-14T11:59:58")


def test_it_reads_two_digit_years_in_this_century() -> None:
    assert epoch_of("14/08/05 11:59:58 x") == local("2005-08-14T11:59:58")
    assert epoch_of("050814 11:59:58 x") == local("2005-08-14T11:59:58")  # MySQL


def test_it_reads_a_time_of_day_as_today_or_yesterday() -> None:
    assert epoch_of("11:59:58 x") == local("2005-08-14T11:59:58")
    assert epoch_of("13:00:00 x") == local("2005-08-13T13:00:00")


def test_it_finds_no_date_in_a_line_without_one() -> None:
    assert hit("no date in here at all") is None


# ---------------------------------------------------------------------------------------
# datepattern forms


def test_it_reads_strptime_directives() -> None:
    assert epoch_of("L 14/08/2005 - 11:59:58: x", "^L %d/%m/%Y - %H:%M:%S") == local("2005-08-14T11:59:58")
    assert epoch_of("Aug 14, 2005 11:59:58 AM x", "^%b %d, %ExY %I:%M:%S %p") == local("2005-08-14T11:59:58")
    assert epoch_of("Aug 14, 2005 12:59:58 PM x", "^%b %d, %ExY %I:%M:%S %p") == local("2005-08-14T12:59:58")
    assert epoch_of("August 14 2005 11:59:58 x", "^%B %d %Y %H:%M:%S") == local("2005-08-14T11:59:58")
    assert epoch_of("2005.226 11:59:58 x", "^%Y.%j %H:%M:%S") == local("2005-08-14T11:59:58")


def test_it_reads_fail2ban_exact_directives() -> None:
    pattern = r"^\[?%ExY%Exm%Exd-%ExH:%ExM:%ExS\]?"
    assert epoch_of("[20050814-11:59:58] x", pattern) == local("2005-08-14T11:59:58")
    assert hit("[2005814-11:59:58] x", pattern) is None


def test_it_anchors_line_begin_patterns() -> None:
    pattern = "{^LN-BEG}%b-%d-%Exy %H:%M:%S"
    assert epoch_of("Aug-14-05 11:59:58 x", pattern) == local("2005-08-14T11:59:58")
    assert epoch_of("[Aug-14-05 11:59:58] x", pattern) == local("2005-08-14T11:59:58")
    assert hit("text Aug-14-05 11:59:58 x", pattern) is None


def test_it_uses_only_line_start_defaults_for_bare_line_begin() -> None:
    assert epoch_of("Aug 14 11:59:58 host x", "{^LN-BEG}") == local("2005-08-14T11:59:58")
    assert hit("host: Aug 14 11:59:58 x", "{^LN-BEG}") is None
    assert hit("host: Aug 14 11:59:58 x") is not None  # the full list searches anywhere


def test_it_frames_the_default_templates_with_date_tag() -> None:
    pattern = r"^[^\[]*\[({DATE})"
    line = "host [14/Aug/2005:11:59:58 +0200] GET /"
    found = hit(line, pattern)
    assert found is not None
    assert line[found.start : found.end] == "14/Aug/2005:11:59:58 +0200"
    assert found.epoch == local("2005-08-14T11:59:58")


def test_it_cuts_the_whole_frame_when_the_frame_has_no_group() -> None:
    line = "<W>2005-08-14 11:59:58.123 1 => <1:user(-1)> Rejected"
    found = hit(line, "^<W>{DATE}")
    assert found is not None
    assert line[found.start : found.end] == "<W>2005-08-14 11:59:58.123"


def test_it_reads_a_raw_regex_with_named_groups() -> None:
    pattern = r"^stamp=(?P<Y>\d{4})(?P<m>\d\d)(?P<d>\d\d)T(?P<H>\d\d)(?P<M>\d\d)(?P<S>\d\d)"
    found = hit("stamp=20050814T115958 x", pattern)
    assert found is not None and found.epoch == local("2005-08-14T11:59:58")


def test_it_tries_several_patterns_in_order() -> None:
    detector = DateDetector("^%Y-%m-%d %H:%M:%S\n^\\[%d/%b/%Y %H:%M:%S\\]")
    assert detector.match("2005-08-14 11:59:58 x", NOW) is not None
    found = detector.match("[14/Aug/2005 11:59:58] x", NOW)
    assert found is not None and found.epoch == local("2005-08-14T11:59:58")


def test_it_reads_epoch_patterns() -> None:
    assert epoch_of("1124013598 x", "{^LN-BEG}Epoch") == 1124013598.0
    assert epoch_of("1124013598123 x", "LEPOCH") == pytest.approx(1124013598.123)
    assert epoch_of("t=1124013598 x", r"^t={EPOCH}") == 1124013598.0
    assert epoch_of("1124013598 x", "^%s") == 1124013598.0  # our %s extension


def test_it_reports_no_date_for_none() -> None:
    detector = DateDetector("{NONE}")
    assert detector.match("Aug 14 11:59:58 host x", NOW) is None


def test_it_reads_zones_written_in_the_line() -> None:
    assert epoch_of("2005-08-14 09:59:58 UTC x", "^%Y-%m-%d %H:%M:%S %Z") == local("2005-08-14T11:59:58")
    assert epoch_of("2005-08-14 11:59:58 CEST x", "^%Y-%m-%d %H:%M:%S %Z") == local("2005-08-14T11:59:58")
    assert epoch_of("2005-08-14 11:59:58 +02 x", "^%Y-%m-%d %H:%M:%S %z") == local("2005-08-14T11:59:58")
    assert hit("2005-08-14 11:59:58 QQQ x", "^%Y-%m-%d %H:%M:%S %Z") is None  # unknown: no guess


def test_it_applies_logtimezone_to_dates_without_a_zone() -> None:
    line = "2005-08-14 09:59:58 x"
    assert epoch_of(line, logtimezone="UTC") == local("2005-08-14T11:59:58")
    assert epoch_of(line, logtimezone="UTC+0200") == local("2005-08-14T09:59:58")
    assert epoch_of(line, logtimezone="UTC-0530") == local("2005-08-14T17:29:58")
    # a zone in the line wins over logtimezone
    assert epoch_of("2005-08-14T09:59:58Z x", logtimezone="UTC+0500") == local("2005-08-14T11:59:58")


def test_it_parses_zone_offsets() -> None:
    assert parse_zone_offset("UTC") == 0
    assert parse_zone_offset("CEST") == 120
    assert parse_zone_offset("-05:30") == -330
    assert parse_zone_offset("UTC+02") == 120
    assert parse_zone_offset("Europe/Paris") is None


@pytest.mark.parametrize("pattern", ["%Y-%Q", "^(%Y", "%H %H"])
def test_it_rejects_unusable_patterns_with_a_filter_error(pattern: str) -> None:
    with pytest.raises(FilterError) as caught:
        DateDetector(pattern)
    assert pattern in str(caught.value)


def test_it_names_the_file_and_line_of_a_bad_pattern() -> None:
    with pytest.raises(FilterError) as caught:
        DateDetector("^%Y-%m-%d\n%Q", path="/etc/f2b/filter.d/x.conf", lineno=12)
    assert str(caught.value).startswith("/etc/f2b/filter.d/x.conf:12: ")
    assert "%Q" in str(caught.value)


def test_it_ignores_lower_case_zone_names_like_fail2ban() -> None:
    # a case-insensitive pattern (%b) lets "utc" through; fail2ban reads no date then
    assert hit("[14/Aug/2005:09:59:58 utc] x", "%d/%b/%Y:%H:%M:%S %z") is None
    assert epoch_of("[14/Aug/2005:09:59:58 UTC] x", "%d/%b/%Y:%H:%M:%S %z") == local("2005-08-14T11:59:58")


def test_it_rejects_an_unknown_logtimezone() -> None:
    with pytest.raises(FilterError, match="Europe/Nowhere"):
        DateDetector(None, "Europe/Nowhere")


def test_it_skips_impossible_dates() -> None:
    assert hit("2005-02-30 11:59:58 x") is None


def test_it_reads_local_times_across_dst_switches() -> None:
    for text in (
        "2005-03-27T01:59:59",
        "2005-03-27T03:00:00",
        "2005-10-30T01:30:00",
        "2005-10-30T03:30:00",
        "2005-03-27T02:30:00",
        "2005-10-30T02:30:00",
    ):  # the last two: skipped, doubled hour
        line = text.replace("T", " ") + " host x"
        assert epoch_of(line) == time.mktime((*time.strptime(text, "%Y-%m-%dT%H:%M:%S")[:8], -1)), text


def _without_day_cache(detector: DateDetector) -> DateDetector:
    for template in detector.templates:
        resolver = getattr(template.resolve, "__self__", None)
        if resolver is not None and hasattr(resolver, "clock"):
            resolver.clock = None
    return detector


@pytest.mark.parametrize("logtimezone", [None, "UTC+0530"])
def test_it_reads_the_same_with_and_without_its_day_cache(logtimezone: str | None) -> None:
    formats = [
        "%b %d %H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%d/%b/%Y:%H:%M:%S +0200",
        "%H:%M:%S",
        "%Y-%m-%dT%H:%M:%SZ",
        "%m/%d/%Y:%H:%M:%S",
        "%y%m%d %H:%M:%S",
    ]
    lines = []
    for i in range(3000):
        moment = NOW - 400 * 86400 + i * 14407.3  # every hour of the day, over a year and more
        lines.append(time.strftime(formats[i % len(formats)], time.localtime(moment)) + " host x")
    fast = DateDetector(None, logtimezone)
    general = _without_day_cache(DateDetector(None, logtimezone))
    for i, line in enumerate(lines):
        now = NOW + (i % 7) * 40000.0
        assert fast.match(line, now) == general.match(line, now), line


def test_it_moves_the_template_a_log_uses_up_the_list() -> None:
    detector = DateDetector()
    cpanel = "05/20/2005:01:57:39 x"  # a rare format, far down the default list
    before = next(i for i, name in enumerate(detector.template_names) if name.startswith("{^LN-BEG}Month/Day"))
    for _ in range(5):
        assert detector.match(cpanel, NOW) is not None
    after = detector.template_names.index(detector.match(cpanel, NOW).template)  # type: ignore[union-attr]
    assert after < before


def test_it_does_not_import_django() -> None:
    for path in (REPO / "jails" / "engine" / "dates").glob("*.py"):
        assert "django" not in path.read_text().lower(), path


# ---------------------------------------------------------------------------------------
# speed


@pytest.mark.parametrize(
    "line",
    [
        "Aug 14 11:59:58 host sshd[123]: Failed password for root from 192.0.2.1 port 22 ssh2",
        "2005-08-14T11:59:58.123456+02:00 host sshd[123]: Failed password for root from 192.0.2.1",
    ],
)
def test_it_matches_a_line_in_a_few_microseconds(line: str) -> None:
    detector = DateDetector()
    count = 20000
    detector.match(line, NOW)
    started = time.perf_counter()
    for i in range(count):
        detector.match(line, NOW + i)
    micros = (time.perf_counter() - started) / count * 1e6
    print(f"{micros:.2f} us per match: {line[:40]}")
    assert micros < 50  # generous: shared CI machines; measured ~2 us


# ---------------------------------------------------------------------------------------
# fail2ban's corpus


def datepattern_of(conf: Path, options: dict[str, str]) -> str | None:
    """A filter's datepattern as the INI reader gives it (interpolated, %% already %)."""
    return load_filter_file(str(conf), options).datepattern


def corpus_score() -> tuple[int, int, list[str]]:
    """(right, total, failures) over the corpus lines that must match and carry a time.

    Journal runs have no dates and are skipped. A line without a date of its own (the
    2nd line of a multi-line failure) gets the last date found, as fail2ban's filter
    does when that date is less than a minute older than now.
    """
    tool = corpus_tool()
    right = total = 0
    failures: list[str] = []
    for run in tool.all_runs(str(CORPUS)):
        if run["journal"]:
            continue
        dated = [ln for ln in run["lines"] if ln["expect"].get("match") and ln["expect"].get("time")]
        try:
            detector = DateDetector(datepattern_of(Path(run["conf"]), run["options"]))
        except FilterError as exc:
            failures.append(f"{run['key']}: {exc}")
            total += len(dated)
            continue
        last: DateHit | None = None
        for ln in run["lines"]:
            found = detector.match(ln["text"], NOW)  # every line: the detector keeps state
            if found is None and last is not None and last.epoch > NOW - 60:
                found = last
            last = found or last
            if ln not in dated:
                continue
            total += 1
            expected = tool.local_epoch(ln["expect"]["time"])
            if found is not None and abs(found.epoch - expected) < 1e-3:
                right += 1
            else:
                got = None if found is None else (found.epoch, found.template)
                failures.append(
                    f"{run['key']} [{ln['src']}] {ln['text'][:100]}\n"
                    f"    got {got}, want {ln['expect']['time']} = {expected}"
                )
    return right, total, failures


@pytest.mark.skipif(not CORPUS.is_dir(), reason="fail2ban corpus not checked out beside the repo")
def test_it_reads_the_corpus_dates() -> None:
    right, total, failures = corpus_score()
    print("\n".join(failures))
    print(f"corpus dates right: {right}/{total}")
    assert right >= CORPUS_RIGHT_AT_LEAST


# --- the guarded searches of unanchored templates ------------------------------------


def _sample_lines() -> list[str]:
    lines = [
        '192.0.2.1 - - [20/Nov/2026:00:00:00 +0000] "GET /blog/2026/11/x HTTP/1.1" 200 5 "-" "Mozilla/5.0"',
        "Nov 20 00:00:00 host sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2",
        "x 2026-11-20 10:00:00 y 1700000000 audit(1700000000.123:45): z",
        "a-b 20/11/2026 10:00:00 b 11/20/2026:10:00:00 c 261120 10:00:00",
        "Mon Nov 20 10:00:00 2026 weekday, Nov 20, 2026 10:00:00 AM, 20261120T100000",
        "2026.11.20 1:02:03 20-11-26 1:02:03 11-20-2026 1:02:03 UTC Nov 20 10:00:00",
        "[1700000000] 2026/1/2 03:04:05 20/1/2026 3:4:5 word2026-11-20 10:00:00word",
        "@4000000065c7b5e81234abcd 12:00:00 a_2026-11-20 10:00:00",
    ]
    if CORPUS.is_dir():
        for path in sorted((CORPUS / "logs").glob("*"))[:60]:
            if path.is_file():
                lines += path.read_text(errors="replace").splitlines()[:40]
    return lines


def test_guarded_template_searches_find_exactly_what_the_regex_finds() -> None:
    import re

    templates = DateDetector(None).templates
    guarded = [t for t in templates if t.search != t.compiled.search]
    assert guarded  # the unanchored defaults get guards
    lines = _sample_lines()
    for line in lines + [line[k:] for line in lines[:8] for k in range(1, 40, 3)]:
        for template in guarded:
            expected = template.compiled.search(line)
            got = template.search(line)
            assert (got is None) == (expected is None), (template.name, line)
            if got is not None and expected is not None:
                assert got.span() == expected.span() and got.groups() == expected.groups(), (template.name, line)
    # the boundary-first search: an inner match that fails the boundary is skipped
    rx = re.compile(r"(?=^|\b|\W)((?P<Y>\d{4})-(?P<m>\d\d))")
    from jails.engine.dates import _boundary_first

    search = _boundary_first(rx)
    assert search is not None
    for line in ["x12026-11 2026-11", "2026-11", "a2026-11", "-2026-11", "12026-11"]:
        expected, got = rx.search(line), search(line)
        assert (got and got.span()) == (expected and expected.span()), line


def test_date_span_finds_unreadable_dates() -> None:
    # 30 February: the template matches, the date cannot be read
    assert DateDetector(None).match("2026-02-30 10:00:00 x", NOW) is None
    assert DateDetector(None).date_span("2026-02-30 10:00:00 x", NOW) == (0, 19)
    assert DateDetector(None).date_span("no date here", NOW) is None
