"""The ban decision policy (bans.policy): counting, ban time, recidive, ignore rules.

Every expected number marked "fail2ban 1.0.2" was taken from running Debian's fail2ban 1.0.2
(its FailManager/FailTicket with the periodic cleanup called before each failure, and its
Jail.setBanTimeExtra + ObserverThread.incrBanTime over a real in-memory Fail2BanDb) in a scratch
script outside the repository, not worked out by hand.
"""

from __future__ import annotations

import ipaddress
import random
import re
import socket
from collections.abc import Callable, Sequence
from typing import NoReturn

import pytest

from bans import policy
from bans.policy import (
    DEFAULT_FORMULA,
    FailureEvent,
    IncrementSettings,
    Tally,
    add_failure,
    earlier_ban_count,
    ignore_reason,
    is_stale,
    next_bantime,
    recidive_offenders,
    time_in_operation,
)
from jails.engine.formula import compile_formula

IP = "192.0.2.1"


Step = tuple[Tally | None, bool]


def count_all(
    events: list[tuple[int, int]], *, findtime: int = 600, maxretry: int = 5, maxmatches: int | None = 5,
) -> list[Step]:
    """Feed (time, attempts) pairs in, with now = the failure's time; return each step's result."""
    steps: list[Step] = []
    tally: Tally | None = None
    for time, attempts in events:
        tally, ban = add_failure(
            tally, FailureEvent(IP, time, attempts, f"l{time}"),
            findtime=findtime, maxretry=maxretry, maxmatches=maxmatches, now=time,
        )
        steps.append((tally, ban))
        if ban:
            tally = None  # the caller drops a banned tally, as fail2ban's toBan does
    return steps


def state(tally: Tally | None) -> tuple[int, float, float, list[str]]:
    assert tally is not None
    return tally.count, tally.first_time, tally.last_time, tally.matches


# -- counting -----------------------------------------------------------------------------------


def test_it_starts_a_tally_at_the_first_failure() -> None:
    tally, ban = add_failure(None, FailureEvent(IP, 100.0, line="Failed password from 192.0.2.1"),
                             findtime=600, maxretry=3, maxmatches=None, now=100.0)
    assert tally == Tally(IP, 100.0, 100.0, 1, ["Failed password from 192.0.2.1"])
    assert ban is False


def test_it_bans_when_the_count_reaches_maxretry() -> None:
    steps = count_all([(0, 1), (10, 1), (20, 1)], maxretry=3)
    assert [ban for _, ban in steps] == [False, False, True]
    banned = steps[-1][0]
    assert banned is not None and state(banned) == (3, 0, 20, ["l0", "l10", "l20"])  # the evidence


def test_it_counts_from_zero_after_a_ban() -> None:
    # fail2ban 1.0.2, maxretry 3: retry 1 2 3(ban) 1 2 3(ban) 1
    steps = count_all([(t, 1) for t in range(0, 70, 10)], maxretry=3)
    assert [(t.count if t else None, ban) for t, ban in steps] == [
        (1, False), (2, False), (3, True), (1, False), (2, False), (3, True), (1, False),
    ]


def test_it_rescales_the_count_to_one_findtime_like_fail2ban() -> None:
    # fail2ban 1.0.2, findtime 600, maxretry 10: (retry, first, last) after each failure
    steps = count_all([(t, 1) for t in (0, 1, 2, 3, 500, 1000, 1100, 1150)], maxretry=10)
    assert [(t.count, t.first_time, t.last_time) for t, _ in steps if t] == [
        (1, 0, 0), (2, 0, 1), (3, 0, 2), (4, 0, 3), (5, 0, 500),
        (4, 400, 1000),  # round(5 / 1000 * 600) + 1
        (4, 500, 1100),  # round(4 / 700 * 600) + 1
        (5, 550, 1150),  # round(4 / 650 * 600) + 1
    ]


def test_it_keeps_adding_up_failures_that_come_within_findtime_of_each_other() -> None:
    # fail2ban 1.0.2: 0, 100, 200, 500, 650 -> retry 5 at 650 (first moved to 50), ban at maxretry 5
    steps = count_all([(0, 1), (100, 1), (200, 1), (500, 1), (650, 1)])
    assert state(steps[-1][0])[:3] == (5, 50, 650)
    assert steps[-1][1] is True


def test_it_forgets_a_tally_quiet_for_findtime() -> None:
    # fail2ban 1.0.2 (cleanup before each failure): 0, 100, then 700 starts afresh, 701 -> 2
    steps = count_all([(0, 1), (100, 1), (700, 1), (701, 1)])
    assert [state(t)[:3] for t, _ in steps] == [(1, 0, 0), (2, 0, 100), (1, 700, 700), (2, 700, 701)]


def test_it_forgets_a_tally_whose_last_failure_is_exactly_findtime_old() -> None:
    # fail2ban 1.0.2: cleanup removes tickets with last <= now - findtime
    steps = count_all([(0, 1), (600, 1)])
    assert state(steps[-1][0])[:3] == (1, 600, 600)


def test_it_returns_none_when_the_tally_is_forgotten_and_the_failure_too_old() -> None:
    old = Tally(IP, 0.0, 100.0, 4, ["x"])
    assert add_failure(old, FailureEvent(IP, 50.0), findtime=600, maxretry=5, maxmatches=None, now=1000.0) == (
        None, False,
    )


def test_it_counts_out_of_order_failures_without_moving_the_window() -> None:
    # fail2ban 1.0.2: 100, then 40 and 30 (older), then 200 -> retry 4, first 100, last 200
    tally = None
    for time, now in ((100, 100), (40, 101), (30, 102), (200, 200)):
        tally, _ = add_failure(tally, FailureEvent(IP, time, line=f"l{time}"),
                               findtime=600, maxretry=10, maxmatches=None, now=now)
    assert state(tally) == (4, 100, 200, ["l100", "l40", "l30", "l200"])


def test_it_does_not_count_a_failure_older_than_findtime() -> None:
    current = Tally(IP, 900.0, 950.0, 2, ["a", "b"])
    tally, ban = add_failure(current, FailureEvent(IP, 399.0, line="old"),
                             findtime=600, maxretry=3, maxmatches=None, now=1000.0)
    assert (tally, ban) == (current, False)
    assert add_failure(None, FailureEvent(IP, 399.0), findtime=600, maxretry=1, maxmatches=None, now=1000.0) == (
        None, False,
    )


def test_it_counts_a_failure_exactly_findtime_old() -> None:
    tally, ban = add_failure(None, FailureEvent(IP, 400.0), findtime=600, maxretry=1, maxmatches=None, now=1000.0)
    assert ban is True and tally is not None and tally.first_time == 400.0


def test_it_counts_a_failure_from_the_future_as_now() -> None:
    tally, _ = add_failure(None, FailureEvent(IP, 5000.0), findtime=600, maxretry=3, maxmatches=None, now=1000.0)
    assert tally is not None and (tally.first_time, tally.last_time) == (1000.0, 1000.0)


def test_it_grows_the_count_by_the_attempts_of_each_failure() -> None:
    # fail2ban 1.0.2 addFailure(ticket, count): count 3, then 2, then 1 -> retry 3, 5, 6
    steps = count_all([(0, 3), (10, 2), (20, 1)], maxretry=10)
    assert [t.count for t, _ in steps if t] == [3, 5, 6]


def test_it_counts_at_least_one_attempt() -> None:
    tally, _ = add_failure(None, FailureEvent(IP, 0.0, attempts=0), findtime=600, maxretry=3, maxmatches=None, now=0.0)
    assert tally is not None and tally.count == 1


def test_it_bans_at_once_when_one_event_brings_enough_attempts() -> None:
    _, ban = add_failure(None, FailureEvent(IP, 0.0, attempts=5), findtime=600, maxretry=5, maxmatches=None, now=0.0)
    assert ban is True


def test_it_keeps_only_the_last_maxmatches_lines() -> None:
    # fail2ban 1.0.2, maxmatches 2: [l0], [l0 l1], [l1 l2], [l2 l3]
    steps = count_all([(t, 1) for t in range(4)], maxmatches=2)
    assert [t.matches for t, _ in steps if t] == [["l0"], ["l0", "l1"], ["l1", "l2"], ["l2", "l3"]]


def test_it_keeps_as_many_matches_as_maxretry_when_maxmatches_is_not_set() -> None:
    steps = count_all([(t, 1) for t in range(4)], maxretry=10, maxmatches=None)
    assert state(steps[-1][0])[3] == ["l0", "l1", "l2", "l3"]
    steps = count_all([(t, 1) for t in range(4)], maxretry=2 + 1, maxmatches=None)
    assert state(steps[2][0])[3] == ["l0", "l1", "l2"]


def test_it_keeps_no_matches_with_maxmatches_zero() -> None:
    steps = count_all([(0, 1), (1, 1)], maxmatches=0)
    assert [t.matches for t, _ in steps if t] == [[], []]


def test_it_keeps_each_line_of_a_multi_line_failure_as_one_match() -> None:
    event = FailureEvent(IP, 0.0, line="auth begin\nsomething\nfailed from 192.0.2.1")
    tally, _ = add_failure(None, event, findtime=600, maxretry=5, maxmatches=2, now=0.0)
    assert tally is not None and tally.matches == ["something", "failed from 192.0.2.1"]
    assert tally.count == 1  # fail2ban 1.0.2 counts a multi-line failure from a log as one


def test_it_does_not_change_the_tally_it_is_given() -> None:
    before = Tally(IP, 0.0, 10.0, 2, ["a", "b"])
    add_failure(before, FailureEvent(IP, 20.0, line="c"), findtime=600, maxretry=5, maxmatches=None, now=20.0)
    assert before == Tally(IP, 0.0, 10.0, 2, ["a", "b"])


def test_it_refuses_a_tally_of_another_address() -> None:
    with pytest.raises(ValueError, match=re.escape("192.0.2.9")):
        add_failure(Tally("192.0.2.9", 0, 0, 1), FailureEvent(IP, 1.0),
                    findtime=600, maxretry=5, maxmatches=None, now=1.0)


@pytest.mark.parametrize(("event_time", "stale"), [(399.0, True), (399.999, True), (400.0, False), (1000.0, False)])
def test_it_calls_stale_only_what_is_older_than_findtime(event_time: float, stale: bool) -> None:
    assert is_stale(event_time, now=1000.0, findtime=600) is stale


@pytest.mark.parametrize(
    ("event_time", "expected"),
    # fail2ban: delta = int(date - now); abs(delta) > 60 -> treated as now
    [(940.0, 940.0), (939.5, 939.5), (939.0, 1000.0), (1060.0, 1060.0), (1061.0, 1000.0), (0.0, 1000.0)],
)
def test_it_treats_odd_times_as_now_while_following_a_log(event_time: float, expected: float) -> None:
    assert time_in_operation(event_time, now=1000.0) == expected


# -- ban time -----------------------------------------------------------------------------------

EXP_FORMULA = "ban.Time * math.exp(float(ban.Count+1)*banFactor)/math.exp(1*banFactor)"


def bantimes(base: int, settings: IncrementSettings, n: int = 9, random: float = 0.5) -> list[int]:
    return [next_bantime(base, count, settings, random=lambda: random) for count in range(n)]


@pytest.mark.parametrize(
    ("base", "settings", "expected"),
    [
        # fail2ban 1.0.2, one address banned again and again in one jail (rounded to seconds)
        pytest.param(600, IncrementSettings(True),
                     [600, 1200, 2400, 4800, 9600, 19200, 38400, 76800, 153600], id="default formula"),
        pytest.param(600, IncrementSettings(True, factor=2),
                     [600, 2400, 4800, 9600, 19200, 38400, 76800, 153600, 307200], id="default formula, factor 2"),
        pytest.param(600, IncrementSettings(True, factor=0.5),
                     [600, 600, 1200, 2400, 4800, 9600, 19200, 38400, 76800], id="default formula, factor 0.5"),
        pytest.param(600, IncrementSettings(True, formula=EXP_FORMULA),
                     [600, 1631, 4433, 12051, 32759, 89048, 242057, 657980, 1788575], id="exp formula"),
        pytest.param(600, IncrementSettings(True, factor=2.0 / 2.885385, formula=EXP_FORMULA),
                     [600, 1200, 2400, 4800, 9600, 19200, 38400, 76801, 153602], id="exp formula, factor 2/2.885385"),
        pytest.param(600, IncrementSettings(True, multipliers=(1, 2, 4, 8, 16, 32, 64)),
                     [600, 1200, 2400, 4800, 9600, 19200, 38400, 38400, 38400], id="multipliers"),
        pytest.param(600, IncrementSettings(True, factor=1.5, multipliers=(1, 2, 4, 8, 16, 32, 64)),
                     [600, 1800, 3600, 7200, 14400, 28800, 57600, 57600, 57600], id="multipliers, factor 1.5"),
        pytest.param(60, IncrementSettings(True, multipliers=(1, 5, 30, 60, 300, 720, 1440, 2880)),
                     [60, 300, 1800, 3600, 18000, 43200, 86400, 172800, 172800], id="jail.conf's minute multipliers"),
        pytest.param(600, IncrementSettings(True, factor=0.5, multipliers=(1, 1, 2)),
                     [600, 300, 600, 600], id="multipliers may go below the ban time"),
        pytest.param(3600, IncrementSettings(True, maxtime=86400),
                     [3600, 7200, 14400, 28800, 57600, 86400, 86400, 86400, 86400], id="maxtime 1d"),
        pytest.param(600, IncrementSettings(True, formula=EXP_FORMULA, maxtime=18000),
                     [600, 1631, 4433, 12051, 18000, 18000, 18000, 18000, 18000], id="exp formula, maxtime 5h"),
        pytest.param(600, IncrementSettings(True, rndtime=100),
                     [600, 1250, 2450, 4850], id="rndtime 100, random() = 0.5"),
        pytest.param(600, IncrementSettings(True, maxtime=3000, rndtime=100),
                     [600, 1250, 2450, 3050, 3050], id="jitter comes after maxtime"),
        pytest.param(600, IncrementSettings(True, formula="ban.Time / 2"),
                     [600, 600, 600], id="a formula never goes below the ban time"),
        pytest.param(600, IncrementSettings(True, maxtime=300),
                     [600, 300, 300], id="maxtime below the ban time wins from the second ban"),
        pytest.param(-1, IncrementSettings(True, factor=3, multipliers=(1, 2)),
                     [-1, -1, -1], id="permanent stays permanent"),
    ],
)
def test_it_computes_ban_times_as_fail2ban(base: int, settings: IncrementSettings, expected: list[int]) -> None:
    assert bantimes(base, settings, n=len(expected)) == expected


def test_it_stops_the_default_formula_doubling_at_two_to_the_twentieth() -> None:
    # fail2ban 1.0.2, bantime 1: 1, 2, 4 ... 1048576, then flat
    times = bantimes(1, IncrementSettings(True), n=25)
    assert times[:21] == [2**n for n in range(21)]
    assert times[21:] == [2**20] * 4


def test_it_leaves_the_ban_time_alone_without_increment() -> None:
    settings = IncrementSettings(False, factor=5, multipliers=(1, 2), maxtime=10, rndtime=100)
    assert bantimes(600, settings, n=4) == [600, 600, 600, 600]


def test_it_adds_no_jitter_to_a_first_ban() -> None:
    assert next_bantime(600, 0, IncrementSettings(True, rndtime=100), random=lambda: 0.99) == 600


def test_it_draws_the_jitter_from_the_random_function_it_is_given() -> None:
    settings = IncrementSettings(True, rndtime=100)
    assert next_bantime(600, 1, settings, random=lambda: 0.0) == 1200
    assert next_bantime(600, 1, settings, random=lambda: 0.999) == 1300
    assert 1200 <= next_bantime(600, 1, settings) <= 1300  # the real random.random by default


def test_it_uses_fail2bans_default_formula_when_none_is_written() -> None:
    assert next_bantime(600, 3, IncrementSettings(True, formula="   ")) == next_bantime(
        600, 3, IncrementSettings(True, formula=DEFAULT_FORMULA)
    ) == 4800


def test_it_never_bans_for_less_than_a_second() -> None:
    assert next_bantime(600, 2, IncrementSettings(True, factor=0, multipliers=(1, 2))) == 1


def test_it_counts_earlier_bans_in_this_jail_or_in_all_jails() -> None:
    history = ["a", "b", "a", "b"]
    assert earlier_ban_count(history, "b", overalljails=False) == 2
    assert earlier_ban_count(history, "b", overalljails=True) == 4
    assert earlier_ban_count([], "b", overalljails=True) == 0


def test_it_grows_ban_times_per_jail_or_over_all_jails() -> None:
    # Bans in jails a, b, a, b, b. Per jail, fail2ban 1.0.2 gave 600 600 1200 1200 2400 (same here).
    # Over all jails it gave 600 1200 4800 38400 1228800: it sums each jail's cumulative count
    # (ban.Count 0 1 3 6 11); we count the real earlier bans (0 1 2 3 4), on purpose.
    jails = ["a", "b", "a", "b", "b"]
    for overall, expected in ((False, [600, 600, 1200, 1200, 2400]), (True, [600, 1200, 2400, 4800, 9600])):
        settings = IncrementSettings(True, overalljails=overall)
        got = [
            next_bantime(600, earlier_ban_count(jails[:i], jail, overalljails=settings.overalljails), settings)
            for i, jail in enumerate(jails)
        ]
        assert got == expected


# -- the formula --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DEFAULT_FORMULA, 600 * 8 * 1.5),
        (EXP_FORMULA, 600 * 2.718281828459045 ** (4 * 1.5) / 2.718281828459045 ** 1.5),
        ("ban.Time * 2 ** ban.Count", 4800),
        ("ban.Time * (ban.Count > 2) + 1", 601),
        ("ban.Time if 1 < ban.Count <= 3 else 0", 600),
        ("ban.Time if 1 < ban.Count < 3 else -ban.Time", -600),
        ("min(ban.Time * ban.Count, 1000, 5000)", 1000),
        ("max(ban.Time, ban.Count) // 7 % 50", 35),
        ("abs(-ban.Time) + int(2.7) + float(1) + round(2.5) + round(1.2345, 2)", 606.23),
        ("math.log(math.exp(2)) + math.log(8, 2) + math.log2(4) + math.log10(100) + math.sqrt(16)", 13),
        ("math.pow(2, 3) + math.floor(1.9) + math.ceil(1.1) + (64 >> 2) + +1", 28),
        ("banFactor * 1e3 == 1500 != 0", 1),
    ],
)
def test_it_evaluates_formulas_as_python_would(text: str, expected: float) -> None:
    assert compile_formula(text)(600, 3, 1.5) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('id')", "not allowed"),
        ("open('/etc/passwd')", r"open\(\) \(column 1\) is not allowed"),
        ("ban.__class__", "unknown name 'ban.__class__'"),
        ("ban.Time.real", "unknown name"),
        ("math.e", "unknown name 'math.e'"),
        ("os.system", "unknown name"),
        ("banCount", "unknown name 'banCount'"),
        ("ban", "ban alone"),
        ("ban + 1", "ban alone"),
        ("min", "must be called"),
        ("math.exp + 1", "must be called"),
        ("max(min, 1)", "not a number"),
        ("'600'", "not a number"),
        ("True", "not a number"),
        ("[1, 2]", "List"),
        ("(lambda: 1)()", "not allowed"),
        ("ban.Time and 1", "BoolOp"),
        ("not ban.Time", "operator"),
        ("ban.Time | 1", "operator"),
        ("ban.Time in (1, 2)", "comparison"),
        ("ban.Time is 1", "comparison"),
        ("x := 1", "not an expression"),
        ("ban.Time +", "not an expression"),
        ("", "not an expression"),
        ("max(ban.Time, key=abs)", "plain arguments"),
        ("max(*ban.Time)", "plain arguments"),
        ("min(ban.Time)", "does not take 1"),
        ("math.exp(1, 2)", "does not take 2"),
        ("1 + " * 400 + "1", "longer than 1000"),
    ],
)
def test_it_refuses_formulas_that_are_not_plain_arithmetic(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_formula(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ban.Time / (ban.Count - 3)", "division by zero"),
        ("math.exp(ban.Count * 1000)", "too large"),
        ("10.0 ** 400", "too large"),
        ("1 << (ban.Count * 1000)", "out of range"),
        ("1.5 << 2", "whole numbers"),
        ("math.log(ban.Count - 3)", "domain"),
        ("round(ban.Time, 10 ** 9)", "digits"),
        ("int(1e308 * 10)", "too large .*infinity"),
    ],
)
def test_it_reports_a_formula_that_fails_as_a_value_error(text: str, message: str) -> None:
    formula = compile_formula(text)
    with pytest.raises(ValueError, match=f"ban.Count=3.*{message}"):
        formula(600, 3, 1.0)


def test_it_reports_a_ban_time_that_comes_out_infinite() -> None:
    with pytest.raises(ValueError, match=re.escape("set bantime.maxtime")):
        next_bantime(600, 1, IncrementSettings(True, formula="1e308 * 10"))
    assert next_bantime(600, 1, IncrementSettings(True, formula="1e308 * 10", maxtime=86400)) == 86400


# -- recidive -----------------------------------------------------------------------------------


def test_it_finds_addresses_banned_maxretry_times_within_findtime() -> None:
    day = 86400
    now = 10 * day
    bans = [
        ("203.0.113.5", now - 3 * 3600), ("198.51.100.7", now - 100), ("203.0.113.5", now - 2 * 3600),
        ("203.0.113.5", now - 60), ("198.51.100.7", now - 2 * day),  # too old
        ("198.51.100.7", now - 50), ("2001:db8::1", now - 10), ("2001:db8::1", now - 20),
    ]
    assert recidive_offenders(bans, findtime=day, maxretry=3, now=now) == ["203.0.113.5"]
    assert recidive_offenders(bans, findtime=day, maxretry=2, now=now) == ["203.0.113.5", "198.51.100.7", "2001:db8::1"]


def test_it_counts_a_ban_exactly_findtime_old_and_one_from_the_future() -> None:
    bans = [("203.0.113.5", 400.0), ("203.0.113.5", 1000.0), ("203.0.113.5", 1500.0), ("198.51.100.1", 399.0)]
    assert recidive_offenders(bans, findtime=600, maxretry=3, now=1000.0) == ["203.0.113.5"]
    assert recidive_offenders(bans, findtime=600, maxretry=4, now=1000.0) == []


def test_it_counts_an_ipv4_mapped_address_with_its_ipv4_form() -> None:
    bans = [("::ffff:203.0.113.5", 990.0), ("203.0.113.5", 995.0)]
    assert recidive_offenders(bans, findtime=600, maxretry=2, now=1000.0) == ["203.0.113.5"]


# -- addresses as text --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "203.0.113.9", "0.0.0.0", "255.255.255.255", "1.2.3.4", "10.0.0.255",
    "010.0.0.1", "1.2.3.04", "256.1.1.1", "1.2.3", "1.2.3.4.5", "1.2.3.", " 1.2.3.4", "1.2.3.4 ", "1.2.3.-4",
    "1.2.3.+4", "1.2.3.4%eth0", "\u0661.2.3.4", "1.2.3.²", "1.2.3.0004", "", "...", "::1", "::ffff:1.2.3.4", "a.b.c.d",
    "1_0.2.3.4", "99999999999999999999.1.1.1",
])
def test_the_plain_ipv4_reader_agrees_with_ipaddress(text: str) -> None:
    """plain_ipv4 (the live path's fast reader) says a value only for text ipaddress reads as IPv4 and
    writes back the same; anything else is left to ipaddress."""
    import ipaddress

    value = policy.plain_ipv4(text)
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        parsed = None
    if value is not None:
        assert isinstance(parsed, ipaddress.IPv4Address) and int(parsed) == value and str(parsed) == text
    else:
        assert not (isinstance(parsed, ipaddress.IPv4Address) and str(parsed) == text)


# -- ignore rules -------------------------------------------------------------------------------


def reason(
    address: str,
    ignoreip: Sequence[str] = (),
    own: Sequence[str] = (),
    resolve: Callable[[str], list[str]] | None = None,
) -> str | None:
    return ignore_reason(address, ignoreip=list(ignoreip), own_addresses=list(own), resolve=resolve)


def test_it_ignores_addresses_listed_in_ignoreip() -> None:
    assert reason("192.0.2.7", ["198.51.100.1", "192.0.2.7"]) == "listed in ignoreip as 192.0.2.7"
    assert reason("192.0.2.77", ["192.0.2.0/24"]) == "listed in ignoreip as 192.0.2.0/24"
    assert reason("192.0.2.77", ["192.0.2.0/255.255.255.0"]) == "listed in ignoreip as 192.0.2.0/255.255.255.0"
    assert reason("192.0.2.77", ["192.0.2.5/24"]) == "listed in ignoreip as 192.0.2.5/24"  # host bits ignored
    assert reason("2001:db8::5", ["2001:db8::/32"]) == "listed in ignoreip as 2001:db8::/32"
    assert reason("2001:DB8:0::5", ["2001:db8::5"]) == "listed in ignoreip as 2001:db8::5"


def test_it_does_not_ignore_addresses_outside_ignoreip() -> None:
    assert reason("192.0.3.1", ["192.0.2.0/24", "2001:db8::/32", "", "  "]) is None
    assert reason("2001:db9::1", ["192.0.2.0/24", "2001:db8::/32"]) is None


def test_it_compares_ipv4_mapped_ipv6_as_ipv4() -> None:
    assert reason("::ffff:192.0.2.7", ["192.0.2.0/24"]) == "listed in ignoreip as 192.0.2.0/24"
    assert reason("192.0.2.7", ["::ffff:192.0.2.0/120"]) == "listed in ignoreip as ::ffff:192.0.2.0/120"
    assert reason("::ffff:192.0.2.7", ["::ffff:192.0.2.7"]) == "listed in ignoreip as ::ffff:192.0.2.7"
    assert reason("::ffff:192.0.2.7", own=["192.0.2.7"]) == "an address of this host"


def test_it_resolves_host_names_only_through_the_resolver_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("must not resolve by itself")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(socket, "gethostbyname", no_dns)
    asked = []

    def resolve(name: str) -> list[str]:
        asked.append(name)
        return ["198.51.100.9", "2001:db8::9"]

    assert reason("198.51.100.9", ["gw.example.org"]) is None  # no resolver: names never match
    assert reason("198.51.100.9", ["gw.example.org"], resolve=resolve) == (
        "listed in ignoreip as gw.example.org (198.51.100.9)"
    )
    assert reason("2001:db8::9", ["gw.example.org"], resolve=resolve) == (
        "listed in ignoreip as gw.example.org (2001:db8::9)"
    )
    assert reason("198.51.100.10", ["gw.example.org"], resolve=resolve) is None
    assert asked == ["gw.example.org"] * 3


def test_it_treats_a_failing_lookup_as_no_match() -> None:
    def broken(name: str) -> list[str]:
        raise socket.gaierror(-2, "Name or service not known")

    assert reason("198.51.100.9", ["gw.example.org", "198.51.100.0/24"], resolve=broken) == (
        "listed in ignoreip as 198.51.100.0/24"
    )
    assert reason("198.51.100.9", ["gw.example.org"], resolve=lambda name: ["not an address"]) is None


def test_it_never_resolves_a_broken_address_as_a_name() -> None:
    def resolve(name: str) -> list[str]:
        raise AssertionError(name)

    assert reason("10.0.0.1", ["10.1", "192.0.2.300"], resolve=resolve) is None


def test_it_ignores_this_hosts_own_addresses() -> None:
    own = ["192.0.2.2", "fe80::1%eth0", "garbage"]
    assert reason("192.0.2.2", own=own) == "an address of this host"
    assert reason("fe80::1", own=own) == "an address of this host"
    assert reason("192.0.2.3", own=own) is None


def test_it_always_ignores_loopback() -> None:
    assert reason("127.0.0.1") == "loopback"
    assert reason("127.8.9.10") == "loopback"
    assert reason("::1") == "loopback"
    assert reason("::ffff:127.0.0.1") == "loopback"


def test_it_names_ignoreip_first_then_the_host_then_loopback() -> None:
    assert reason("127.0.0.1", ["127.0.0.1/8"], own=["127.0.0.1"]) == "listed in ignoreip as 127.0.0.1/8"
    assert reason("127.0.0.1", own=["127.0.0.1"]) == "an address of this host"


def test_it_refuses_something_that_is_not_an_address() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        reason("gw.example.org")


def test_the_ignore_list_names_the_first_entry_holding_an_address_as_a_scan_would() -> None:
    rng = random.Random(12)
    entries = ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.7", "2001:db8::/32", "2001:db8:1::/48", "::ffff:198.51.100.0/120",
               "office.example.org", "198.51.100.0/24", "0.0.0.0/1"]
    global_entries = [f"203.0.113.{n}" for n in range(0, 256, 7)] + ["172.16.0.0/12", "10.1.2.0/24"]
    listed = policy.IgnoreList(entries, [], None, global_entries=global_entries)
    reference = [(entry, ipaddress.ip_network(entry.replace("::ffff:198.51.100.0/120", "198.51.100.0/24"),
                                              strict=False), where)
                 for entries_of, where in ((global_entries, policy.GLOBAL_LIST), (entries, policy.JAIL_LIST))
                 for entry in entries_of if entry != "office.example.org"]
    addresses = [f"{rng.choice([10, 172, 192, 198, 203, 100])}.{rng.randrange(256)}.{rng.randrange(256)}."
                 f"{rng.randrange(256)}" for _ in range(3000)]
    addresses += ["192.0.2.7", "198.51.100.9", "10.1.2.3", "2001:db8:1::5", "2001:db8:ffff::1", "2001:db9::1"]

    for text in addresses:
        ip = ipaddress.ip_address(text)
        expected = next((f"listed in {where} as {entry}" for entry, network, where in reference
                         if ip.version == network.version and ip in network), None)
        if expected is None and ip.is_loopback:
            expected = "loopback"
        assert listed.reason(text) == expected, text
