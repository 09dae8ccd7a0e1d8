"""The regex watchdog interrupts runaway regexes; lint_regex warns about risky ones."""

from __future__ import annotations

import logging
import re
import signal
import threading
import time

import pytest

from jails.engine.errors import RegexTimeout
from jails.engine.guard import Watchdog, lint_regex

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM timers")

EVIL = re.compile(r"(a+)+$")
EVIL_LINE = "a" * 40 + "b"  # would take hours to fail without interruption


def _process(watchdog: Watchdog, lines: list[str]) -> tuple[list[str], list[float]]:
    """The caller's loop: step per line, record timeouts, go on."""
    outcomes: list[str] = []
    durations: list[float] = []
    for line in lines:
        watchdog.step()
        started = time.monotonic()
        try:
            outcomes.append("match" if EVIL.match(line) else "no match")
        except RegexTimeout:
            outcomes.append("timeout")
        durations.append(time.monotonic() - started)
    return outcomes, durations


def test_it_interrupts_catastrophic_backtracking_and_goes_on() -> None:
    budget = 0.3
    with Watchdog(budget) as watchdog:
        assert watchdog.active
        outcomes, durations = _process(watchdog, [EVIL_LINE, "aaa", EVIL_LINE, "aaaa"])
    assert outcomes == ["timeout", "match", "timeout", "match"]
    assert budget <= durations[0] <= budget * 1.5
    assert budget <= durations[2] <= budget * 1.5
    assert watchdog.timeouts == 2


def test_it_never_times_out_fast_lines() -> None:
    pattern = re.compile(r"^Failed password for (?P<user>\S+) from (?P<host>\S+)")
    lines = [f"Failed password for user{n} from 192.0.2.{n % 250}" for n in range(100_000)]
    found = 0
    # A tiny budget makes a false timeout likely if the counter logic were wrong.
    with Watchdog(0.02) as watchdog:
        for line in lines:
            watchdog.step()
            if pattern.match(line):
                found += 1
    assert found == len(lines)
    assert watchdog.timeouts == 0


def test_it_is_inactive_off_the_main_thread(caplog: pytest.LogCaptureFixture) -> None:
    results: dict[str, object] = {}

    def worker() -> None:
        try:
            with Watchdog(0.05) as watchdog:
                watchdog.step()
                results["active"] = watchdog.active
                results["matched"] = bool(EVIL.match("aaaa"))
        except BaseException as error:  # the test reports any crash
            results["error"] = error

    with caplog.at_level(logging.WARNING, logger="jails.engine.guard"):
        thread = threading.Thread(target=worker, name="log-reader")
        thread.start()
        thread.join(5)
    assert results == {"active": False, "matched": True}
    assert "main thread" in caplog.text and "log-reader" in caplog.text


def test_it_restores_the_previous_handler_and_timer() -> None:
    fired: list[int] = []

    def previous(signum: int, frame: object) -> None:
        fired.append(signum)

    old_handler = signal.signal(signal.SIGALRM, previous)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.4)
        with Watchdog(0.1) as watchdog:
            watchdog.step()
            assert signal.getsignal(signal.SIGALRM) != previous
        assert signal.getsignal(signal.SIGALRM) == previous
        remaining, _interval = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < remaining <= 0.4
        time.sleep(remaining + 0.2)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)


def test_it_nests_and_the_outer_watchdog_keeps_working() -> None:
    with Watchdog(0.3) as outer:
        outer.step()
        with Watchdog(0.2) as inner:
            outcomes, _ = _process(inner, [EVIL_LINE, "aa"])
        assert outcomes == ["timeout", "match"]
        # Time spent in the inner block is not charged to the outer line...
        outer.step()
        assert EVIL.match("aaa")
        # ...and the outer watchdog is armed again.
        outcomes, _ = _process(outer, [EVIL_LINE])
        assert outcomes == ["timeout"]
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_it_does_not_count_paused_time() -> None:
    with Watchdog(0.05) as watchdog:
        watchdog.step()
        with watchdog.paused():
            time.sleep(0.2)  # waiting for input is not a runaway regex
        watchdog.step()
    assert watchdog.timeouts == 0


def test_it_rejects_a_useless_budget() -> None:
    with pytest.raises(ValueError, match="positive"):
        Watchdog(0)


# --- lint -------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [r"^(a+)+$", r"^(.*)*x", r"^(\w+\s?)+$", r"^(?:\d*)*:"])
def test_it_warns_about_nested_quantifiers(pattern: str) -> None:
    warnings = lint_regex(pattern)
    assert len(warnings) == 1 and "nested quantifier" in warnings[0] and "backtracking" in warnings[0]


@pytest.mark.parametrize(
    "pattern",
    [
        r"^(?:\w+\.)+com$",  # a mandatory separator: one way to split only
        r"^(?: (?:port \d+|on \S+)){0,3}$",  # bounded
        r"^User \S+ from <HOST>$",
        r"^Failed .*? from <HOST>",
        r"^Failed .* from <HOST>(?: port \d+)?$",
    ],
)
def test_it_stays_quiet_about_safe_regexes(pattern: str) -> None:
    assert lint_regex(pattern) == []


def test_it_warns_about_a_greedy_catch_all_before_the_host() -> None:
    warnings = lint_regex(r"^Failed .* from <HOST>")
    assert len(warnings) == 1 and "greedy catch-all .*" in warnings[0] and "$" in warnings[0]
    assert lint_regex(r"^x .+ (?P<host>\S+) y")[0].startswith("greedy catch-all .+")


def test_it_warns_about_a_regex_not_anchored_at_the_start() -> None:
    warnings = lint_regex(r"Failed password for \S+ from <HOST>")
    assert len(warnings) == 1 and "not anchored at ^" in warnings[0]
    assert "not anchored" in lint_regex(r"(?:^a|b) <HOST>")[0]
    assert lint_regex(r"(?:^a|^b) <HOST>") == []


def test_it_reports_a_regex_that_does_not_parse() -> None:
    assert lint_regex("^x(")[0].startswith("the regex does not parse")


def test_it_understands_field_tags() -> None:
    assert lint_regex(r"^<F-USER>\S+</F-USER> from <ADDR>$") == []
