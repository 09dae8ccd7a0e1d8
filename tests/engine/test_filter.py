"""The per-line matcher (jails/engine/filter/), with hand-built filter definitions.

Dates come from a stub detector: a line starting with `@<epoch>` carries that date,
so each test controls time exactly.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from jails.engine.dates import DateHit
from jails.engine.definition import FilterDefinition, RegexLine
from jails.engine.errors import FilterError, RegexTimeout
from jails.engine.filter import CompiledFilter, LineResult
from jails.engine.ini import load_filter_file
from tests.paths import CORPUS

NOW = 1_700_000_000.0
_STAMP = re.compile(r"@(\d+(?:\.\d+)?)")


class StubDates:
    templates: list[Any] = []

    def match(self, line: str, now: float) -> DateHit | None:
        m = _STAMP.search(line)
        if m is None:
            return None
        return DateHit(m.start(), m.end(), float(m.group(1)), "stub")


def make(
    failregex: list[str],
    *,
    ignoreregex: tuple[str, ...] = (),
    prefregex: str | None = None,
    maxlines: int = 1,
    check_all: bool = False,
) -> CompiledFilter:
    d = FilterDefinition(
        "t",
        tuple(RegexLine(p, "/f/t.conf", i + 1) for i, p in enumerate(failregex)),
        tuple(RegexLine(p) for p in ignoreregex),
        RegexLine(prefregex) if prefregex else None,
        maxlines=maxlines,
    )
    return CompiledFilter.from_definition(d, check_all=check_all, date_detector=StubDates())


def hosts(result: LineResult) -> list[str | None]:
    return [f.host for f in result.failures if not f.nofail]


def test_it_finds_a_failure_with_host_time_and_user() -> None:
    f = make([r"^ sshd: Failed password for <F-USER>\S+</F-USER> from <HOST>"])
    r = f.process_line("@1000 sshd: Failed password for root from 192.0.2.1 port 22", NOW)
    (failure,) = r.failures
    assert (failure.host, failure.time, failure.attempts) == ("192.0.2.1", 1000.0, 1)
    assert failure.fields["user"] == "root" and failure.fields["ip4"] == "192.0.2.1"
    assert failure.lines == ["@1000 sshd: Failed password for root from 192.0.2.1 port 22"]
    assert r.matched == [0] and r.date is not None and not r.ignored


def test_it_cuts_the_date_out_before_matching() -> None:
    f = make([r"^ x from <HOST>$"])
    assert hosts(f.process_line("@5 x from 192.0.2.1", NOW)) == ["192.0.2.1"]
    # a date in the middle is cut too: the text around it is joined
    assert hosts(f.process_line(" x@5 from 192.0.2.2", NOW)) == ["192.0.2.2"]
    assert hosts(f.process_line("x from 192.0.2.3", NOW)) == []


def test_it_normalises_addresses_but_keeps_names_raw() -> None:
    f = make([r"^ from <HOST>$"])
    assert hosts(f.process_line("@1 from 2001:DB8:0::1", NOW)) == ["2001:db8::1"]
    assert hosts(f.process_line("@1 from Host-1.Example.com", NOW)) == ["Host-1.Example.com"]


def test_it_applies_prefregex_content_then_failregex() -> None:
    f = make(
        [r"^Failed for <F-USER>\S+</F-USER>$", r"^Refused$"],
        prefregex=r"^ sshd\[\d+\]: from <HOST>: <F-CONTENT>.+</F-CONTENT>$",
    )
    r = f.process_line("@9 sshd[1]: from 192.0.2.3: Failed for bob", NOW)
    assert hosts(r) == ["192.0.2.3"] and r.failures[0].fields["user"] == "bob"
    assert hosts(f.process_line("@9 cron[1]: from 192.0.2.3: Failed for bob", NOW)) == []
    # the failregex sees the content only: its `^` is the content start
    assert hosts(f.process_line("@9 sshd[1]: from 192.0.2.3: Refused", NOW)) == ["192.0.2.3"]


def test_it_honours_ignoreregex() -> None:
    f = make([r"^ bad from <HOST>"], ignoreregex=(r"from 10\.",))
    r = f.process_line("@1 bad from 10.0.0.1", NOW)
    assert r.failures == [] and r.ignored and r.ignore_index == 0
    assert hosts(f.process_line("@1 bad from 192.0.2.1", NOW)) == ["192.0.2.1"]


def test_it_checks_all_regexes_only_when_asked() -> None:
    regexes = [r"^ a <HOST>", r"^ a (?:\S+) <F-USER>x</F-USER>.*?<HOST>$"]
    line = "@1 a 192.0.2.1 x 192.0.2.1"
    assert make(regexes).process_line(line, NOW).matched == [0]
    assert make(regexes, check_all=True).process_line(line, NOW).matched == [0, 1]


def test_it_matches_multi_line_buffers_with_skiplines() -> None:
    f = make([r"^ conn (?P<cid>\d+) from <HOST><SKIPLINES>^ conn (?P=cid) auth failed$"], maxlines=5)
    assert f.process_line("@1 conn 7 from 192.0.2.9", NOW).failures == []
    assert f.process_line("@2 unrelated noise", NOW).failures == []
    r = f.process_line("@3 conn 7 auth failed", NOW)
    (failure,) = r.failures
    assert failure.host == "192.0.2.9" and failure.time == 3.0
    # matched lines exclude the skipped noise line
    assert failure.lines == ["@1 conn 7 from 192.0.2.9", "@3 conn 7 auth failed"]
    assert failure.attempts == 2
    # the matched lines left the buffer: the same tail cannot match again
    assert f.process_line("@4 conn 7 auth failed", NOW).failures == []


def test_it_forgets_lines_beyond_maxlines() -> None:
    f = make([r"^ a$\n^ b <HOST>$"], maxlines=2)
    f.process_line("@1 a", NOW)
    assert hosts(f.process_line("@2 b 192.0.2.1", NOW)) == ["192.0.2.1"]
    f.process_line("@3 a", NOW)
    f.process_line("@4 noise", NOW)
    assert hosts(f.process_line("@5 b 192.0.2.1", NOW)) == []


SESSION = [
    r"^ s<F-MLFID>\d+</F-MLFID>: <F-NOFAIL>connect</F-NOFAIL> from <HOST>$",
    r"^ s<F-MLFID>\d+</F-MLFID>: failed for <F-USER>\S+</F-USER>$",
    r"^ s<F-MLFID>\d+</F-MLFID>: <F-MLFFORGET><F-MLFGAINED>accepted</F-MLFGAINED></F-MLFFORGET> <F-USER>\S+</F-USER>$",
    r"^ s<F-MLFID>\d+</F-MLFID>: <F-NOFAIL><F-MLFFORGET>closed</F-MLFFORGET></F-NOFAIL>$",
]


def test_it_lends_a_session_address_to_later_lines() -> None:
    f = make(SESSION)
    r = f.process_line("@1 s1: connect from 192.0.2.5", NOW)
    assert [x.nofail for x in r.failures] == [True] and r.ignored
    r = f.process_line("@2 s1: failed for root", NOW)
    (failure,) = r.failures
    assert (failure.host, failure.fields["user"], failure.nofail) == ("192.0.2.5", "root", False)
    assert failure.attempts == 2  # the connect line and the failure
    r = f.process_line("@3 s1: failed for admin", NOW)
    assert r.failures[0].fields["users"] == ["admin", "root"]
    assert r.failures[0].attempts == 1  # counted afresh after a reported failure


def test_it_waits_for_an_address_and_a_success_cancels() -> None:
    f = make(SESSION)
    r = f.process_line("@1 s2: failed for root", NOW)
    assert [x.host for x in r.failures] == [None]  # pending: no address yet
    r = f.process_line("@2 s2: accepted root", NOW)
    assert hosts(r) == []  # success, and the session is forgotten
    r = f.process_line("@3 s2: failed for root", NOW)
    assert [x.host for x in r.failures] == [None]


def test_it_forgets_a_closed_session() -> None:
    f = make(SESSION)
    f.process_line("@1 s3: connect from 192.0.2.6", NOW)
    f.process_line("@2 s3: closed", NOW)
    r = f.process_line("@3 s3: failed for root", NOW)
    assert [x.host for x in r.failures] == [None]


def test_it_dates_lines_without_a_date() -> None:
    f = make([r"^ ?x <HOST>$"])
    recent = NOW - 10
    f.process_line(f"@{recent:.0f} x 192.0.2.1", NOW)
    assert f.process_line("x 192.0.2.2", NOW).failures[0].time == recent  # borrowed
    old = make([r"^ ?x <HOST>$"])
    old.process_line("@1000 x 192.0.2.1", NOW)
    assert old.process_line("x 192.0.2.2", NOW).failures[0].time == NOW  # too old: now


def test_it_uses_now_in_journal_mode() -> None:
    f = make([r"^x @\d+ <HOST>$"])
    r = f.process_line("x @55 192.0.2.1", NOW, journal=True)
    assert r.failures[0].time == NOW and r.date is None


def test_it_keeps_state_when_a_regex_times_out() -> None:
    f = make([r"^ a$\n^ b <HOST>$", r"^ slow <HOST>"], maxlines=3, check_all=True)
    f.process_line("@1 a", NOW)
    real = f._fail_searches[1]

    def runaway(text: str) -> Any:
        raise RegexTimeout("too slow")

    f._fail_searches[1] = runaway
    f._all_runs = tuple(enumerate(f._fail_searches))
    r = f.process_line("@2 slow line", NOW)
    assert r.timed_out is not None and "failregex 2" in r.timed_out and r.failures == []
    f._fail_searches[1] = real
    f._all_runs = tuple(enumerate(f._fail_searches))
    # the timed-out line never entered the buffer: "a" is still right before "b"
    assert hosts(f.process_line("@3 b 192.0.2.1", NOW)) == ["192.0.2.1"]


def test_it_reports_bad_filters_with_file_and_line() -> None:
    with pytest.raises(FilterError, match=r"^/f/t\.conf:2: "):
        make([r"^ ok <HOST>", r"^ no host here"])
    with pytest.raises(FilterError, match="no failregex"):
        make([])


def test_it_blames_the_sender_not_the_user_name() -> None:
    """Injection: a user name that looks like `root from <address>`."""
    d = load_filter_file(CORPUS / "config" / "filter.d" / "sshd.conf", {})
    for check_all in (False, True):
        f = CompiledFilter.from_definition(d, check_all=check_all)
        for line in (
            "Mar  1 10:00:00 host sshd[4711]: Failed password for invalid user root from 198.51.100.1 "
            "from 203.0.113.9 port 4242 ssh2",
            "Mar  1 10:00:01 host sshd[4712]: Failed password for root from 198.51.100.1 "
            "from 203.0.113.9 port 4242 ssh2",
            "Mar  1 10:00:02 host sshd[4713]: Invalid user root from 198.51.100.1 from 203.0.113.9 port 4242",
        ):
            found = [x.host for x in f.process_line(line, NOW).failures if not x.nofail]
            assert found == ["203.0.113.9"], (line, found)


# --- tally(): count-only sessions decide as process_line does -----------------------


@pytest.mark.skipif(not CORPUS.is_dir(), reason="fail2ban corpus not present")
@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("sshd", "normal"),
        ("sshd", "aggressive"),
        ("sshd", "ddos"),
        ("sendmail-auth", None),
        ("sendmail-reject", None),
        ("slapd", None),
        ("dovecot", None),
        ("pam-generic", None),
    ],
)
def test_tally_decides_line_by_line_as_process_line(name: str, mode: str | None) -> None:
    # tally skips the matched-line lists of sessions; every decision must stay: which
    # failregexes count, nofail, whether someone is named, ignored. Two copies of the
    # sample, so that sessions carry over.
    conf = CORPUS / "config" / "filter.d" / f"{name}.conf"
    log = CORPUS / "logs" / name
    if not conf.is_file() or not log.is_file():
        pytest.skip(f"no {name} in the corpus")
    lines = [
        ln.rstrip("\r")
        for ln in log.read_text(errors="surrogateescape").splitlines() * 2
        if ln and not ln.startswith("#")
    ]
    options = {"mode": mode} if mode else {}
    slow = CompiledFilter.from_definition(load_filter_file(str(conf), options), check_all=True)
    fast = CompiledFilter.from_definition(load_filter_file(str(conf), options), check_all=True)
    counted = 0
    for line in lines:
        full = slow.process_line(line, NOW)
        light = fast.tally(line, NOW)
        if light is None:
            assert not full.failures and not full.ignored and full.timed_out is None, line
            continue
        counted += 1
        assert [(f.regex_index, f.nofail, f.host is None) for f in light.failures] == [
            (f.regex_index, f.nofail, f.host is None) for f in full.failures
        ], line
        assert (light.ignored, light.ignore_index) == (full.ignored, full.ignore_index), line
    assert counted


@pytest.mark.parametrize("check_all", [False, True])
def test_tally_follows_random_sessions_as_process_line(check_all: bool) -> None:
    import random

    regexes = [
        *SESSION,
        r"^ s<F-MLFID>\d+</F-MLFID>: <F-NOFAIL>probe</F-NOFAIL> <F-USER>\S+</F-USER>(?: from <HOST>)?$",
        r"^ s<F-MLFID>\d+</F-MLFID>: (?:probe|failed for) <F-USER>\S+</F-USER>.*$",
    ]
    shapes = [
        "s{s}: connect from 192.0.2.{h}",
        "s{s}: failed for {u}",
        "s{s}: accepted {u}",
        "s{s}: closed",
        "s{s}: probe {u}",
        "s{s}: probe {u} from 192.0.2.{h}",
    ]
    rng = random.Random(5)
    slow, fast = make(regexes, check_all=check_all), make(regexes, check_all=check_all)
    for n in range(3000):
        text = rng.choice(shapes).format(s=rng.randint(1, 4), h=rng.randint(1, 3), u=rng.choice("abc"))
        line = f"@{n + 1} {text}"
        full, light = slow.process_line(line, NOW), fast.tally(line, NOW)
        if light is None:
            assert not full.failures and not full.ignored, line
            continue
        assert [(f.regex_index, f.nofail, f.host is None) for f in light.failures] == [
            (f.regex_index, f.nofail, f.host is None) for f in full.failures
        ], (n, line)
        assert light.ignored == full.ignored, line
