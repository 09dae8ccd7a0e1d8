"""Keeping a runaway regex from stalling log processing, and warning about risky ones.

A regex such as `(a+)+$` can take exponential time on a line an attacker wrote
(catastrophic backtracking). CPython's `re` checks for pending signals while it
matches, so a SIGALRM handler that raises interrupts it. Arming a timer per line
would cost two system calls per line, so `Watchdog` arms one interval timer for a
whole batch instead: the loop bumps a counter per line (`step()`) and the timer's
handler, ticking a few times per budget, raises `RegexTimeout` when the counter has
not moved for a whole budget, i.e. one line has run too long.

`lint_regex` flags the regex shapes that cause such trouble or blame the wrong
address, so the admin sees them when writing a filter. `dangerous_regex` is the part of
it that refuses a save: the loops that can backtrack exponentially (`backtrack.py`
decides, on the regex as the engine compiles it, fail2ban's tags expanded).
"""

from __future__ import annotations

import logging
import re
import re._constants as sre_c
import re._parser as sre_p
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

from jails.engine.backtrack import Backtracking, find_backtracking
from jails.engine.errors import RegexTimeout
from jails.engine.regex import translate

__all__ = ["DANGEROUS", "Watchdog", "dangerous_regex", "lint_regex"]

log = logging.getLogger(__name__)

# Ticks per budget: a line is interrupted after between 1 and 1 + 1/TICKS budgets
# (plus the time the regex engine takes to notice the signal).
TICKS_PER_BUDGET = 8

_Handler = Any  # what signal.getsignal returns: a callable, SIG_DFL, SIG_IGN or None


class Watchdog:
    """Interrupts a line whose processing runs longer than `budget` seconds.

    Usage, in the main thread::

        with Watchdog(budget=1.0) as watchdog:
            for line in lines:
                watchdog.step()
                try:
                    process(line)
                except RegexTimeout as timeout:
                    record(line, timeout)   # and go on with the next line

    `active` is False when no timer could be armed (not the main thread, no
    SIGALRM on this platform); the reason is logged and the loop runs unguarded.
    The timeout is raised wherever the main thread is at that moment, which after a
    whole budget on one line is almost surely inside the slow regex.
    """

    def __init__(self, budget: float = 1.0) -> None:
        if budget <= 0:
            raise ValueError(f"watchdog budget must be positive, got {budget!r}")
        self.budget = budget
        self.active = False
        self.count = 0  # lines started; step() bumps it
        self.timeouts = 0  # how many lines were interrupted
        self._seen = 0  # count at the last tick
        self._since = 0.0  # when the handler first saw `_seen`
        self._paused = 0
        self._previous_handler: _Handler = None
        self._previous_timer: tuple[float, float] = (0.0, 0.0)
        self._entered_at = 0.0

    def step(self) -> None:
        """Mark the start of a new line: only a counter increment."""
        self.count += 1

    # --- arming and disarming -----------------------------------------------------

    def __enter__(self) -> Watchdog:
        reason = _why_cannot_arm()
        if reason:
            log.warning("regex watchdog inactive: %s; a runaway regex will not be interrupted", reason)
            self.active = False
            return self
        now = time.monotonic()
        self._entered_at = now
        self._restart_clock(now)
        # Stop any outer timer before swapping handlers so it cannot fire in between.
        self._previous_timer = signal.setitimer(signal.ITIMER_REAL, 0.0)
        self._previous_handler = signal.signal(signal.SIGALRM, self._on_tick)
        self.active = True
        tick = self.budget / TICKS_PER_BUDGET
        signal.setitimer(signal.ITIMER_REAL, tick, tick)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.active:
            return
        # Disarm first: `active` False makes a signal already on its way harmless.
        self.active = False
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        previous = self._previous_handler
        # None: the handler was not set from Python; the default is the best guess.
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
        self._restore_previous_timer()
        outer = getattr(self._previous_handler, "__self__", None)
        if isinstance(outer, Watchdog):
            # The outer watchdog's current "line" waited on us: do not count that.
            outer._restart_clock(time.monotonic())

    def _restore_previous_timer(self) -> None:
        delay, interval = self._previous_timer
        if delay <= 0:
            return
        remaining = delay - (time.monotonic() - self._entered_at)
        if remaining <= 0:
            # It would have fired while we held the timer: let it fire now.
            remaining = 1e-6
        signal.setitimer(signal.ITIMER_REAL, remaining, interval)

    def _restart_clock(self, now: float) -> None:
        self._seen = self.count
        self._since = now

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent in this block (waiting for input, say) never times out."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1
            self._restart_clock(time.monotonic())

    # --- the signal handler ------------------------------------------------------

    def _on_tick(self, signum: int, frame: FrameType | None) -> None:
        if not self.active:
            return
        now = time.monotonic()
        if self.count != self._seen or self._paused:
            self._restart_clock(now)
            return
        if now - self._since >= self.budget:
            # Give the caller a fresh budget for its recovery and the next line.
            self._restart_clock(now)
            self.timeouts += 1
            raise RegexTimeout(f"a regex ran longer than {self.budget:g}s on one line; line skipped")


def _why_cannot_arm() -> str:
    if not hasattr(signal, "setitimer") or not hasattr(signal, "SIGALRM"):
        return "this platform has no SIGALRM interval timer"
    if threading.current_thread() is not threading.main_thread():
        name = threading.current_thread().name
        return f"signal handlers can only be set in the main thread, not in thread {name!r}"
    return ""


# --- lint --------------------------------------------------------------------------

# fail2ban tags an admin writes, replaced by stand-ins so the regex parses.
_TAG = re.compile(r"<(/?)(F-[A-Za-z0-9_-]+|[A-Za-z_][A-Za-z0-9_-]*)>")
_HOST_TAGS = frozenset({"HOST", "ADDR", "IP4", "IP6", "DNS", "CIDR", "SUBNET"})
_HOST_GROUP_NAMES = frozenset({"host", "addr", "ip", "ip4", "ip6", "dns", "cidr", "subnet"})

_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT)
_BEGIN = (sre_c.AT_BEGINNING, sre_c.AT_BEGINNING_STRING)
_END = (sre_c.AT_END, sre_c.AT_END_STRING)

_Items = Sequence[tuple[Any, Any]]

# The start of every message about a regex that can take exponential time (the ones a save refuses).
DANGEROUS = "catastrophic backtracking"
DANGEROUS_MESSAGE = (
    DANGEROUS + ": {kind} {shape}: {explanation}; a crafted line of a few thousand characters "
    "can take exponential time (hours) to fail"
)
GREEDY_BEFORE_HOST = (
    "greedy catch-all {shape} before the host without an end anchor $: it runs to the last "
    "address-like text in the line, which an attacker can write (use .*? or anchor the end)"
)
NOT_ANCHORED = (
    "not anchored at ^: the regex can match anywhere in the line, so text an attacker "
    "controls (a user name, a URL) can imitate the whole message and blame another address"
)


def dangerous_regex(pattern: str) -> list[Backtracking]:
    """The loops of a fail2ban regex (tags allowed) that can backtrack exponentially; [] when
    it does not parse (compiling it says why)."""
    try:
        return find_backtracking(translate(pattern).source)
    except (re.error, RecursionError, OverflowError):
        return []


def describe_dangerous(found: Backtracking) -> str:
    return DANGEROUS_MESSAGE.format(kind=found.kind, shape=f"`{found.shape}`", explanation=found.explanation)


def lint_regex(pattern: str) -> list[str]:
    """Warnings an admin should read about a failregex (tags like <HOST> allowed).

    Messages starting with DANGEROUS are the ones a save refuses without an override."""
    translated = _stand_in_tags(pattern)
    try:
        tree = sre_p.parse(translated)
    except re.error as error:
        return [f"the regex does not parse: {error}"]
    items = list(tree.data)
    group_names = {index: name for name, index in tree.state.groupdict.items()}
    warnings = [describe_dangerous(found) for found in dangerous_regex(pattern)]
    catch_all = _greedy_catch_all_before_host(items, group_names)
    if catch_all and not _has_end_anchor(items):
        warnings.append(GREEDY_BEFORE_HOST.format(shape=catch_all))
    if not _starts_anchored(items):
        warnings.append(NOT_ANCHORED)
    return warnings


def _stand_in_tags(pattern: str) -> str:
    hosts = 0

    def stand_in(tag: re.Match[str]) -> str:
        nonlocal hosts
        closing, name = tag.group(1), tag.group(2)
        if name.startswith("F-"):
            return ")" if closing else "(?:"
        if name in _HOST_TAGS and not closing:
            hosts += 1
            return f"(?P<host{hosts}>\\S+)"
        # Other tags (<SKIPLINES>, ...) stand for some text: any text does for linting.
        return "(?:.*?)"

    # A named group `(?P<name>` looks like a tag: leave those alone.
    return re.sub(r"(?<!\?P)" + _TAG.pattern, stand_in, pattern)


def _children(op: Any, arg: Any) -> list[_Items]:
    """The sub-sequences of one node, for walking the tree."""
    if op in _REPEATS:
        return [arg[2]]
    if op is sre_c.SUBPATTERN:
        return [arg[3]]
    if op is sre_c.ATOMIC_GROUP:
        return [arg]
    if op is sre_c.BRANCH:
        return list(arg[1])
    if op is sre_c.GROUPREF_EXISTS:
        return [arg[1]] + ([arg[2]] if arg[2] is not None else [])
    if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
        return [arg[1]]
    return []


def _is_catch_all(op: Any, arg: Any) -> str:
    """'.*' or '.+' for a greedy unbounded repeat of any character, else ''."""
    if op is not sre_c.MAX_REPEAT or arg[1] != sre_c.MAXREPEAT:
        return ""
    body = list(arg[2])
    if len(body) == 1 and body[0][0] is sre_c.ANY:
        return ".*" if arg[0] == 0 else ".+"
    return ""


def _greedy_catch_all_before_host(items: _Items, names: dict[int, str]) -> str:
    """The first greedy catch-all followed (in reading order) by a host group."""
    found = ""

    def walk(sequence: _Items) -> bool:
        nonlocal found
        for op, arg in sequence:
            if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
                continue
            if op is sre_c.SUBPATTERN and _is_host_group(arg[0], names) and found:
                return True
            shape = _is_catch_all(op, arg)
            if shape:
                found = found or shape
                continue
            if any(walk(child) for child in _children(op, arg)):
                return True
        return False

    return found if walk(items) else ""


def _is_host_group(index: int | None, names: dict[int, str]) -> bool:
    if index is None or index not in names:
        return False
    name = names[index].lower().removeprefix("f_").rstrip("0123456789")
    return name in _HOST_GROUP_NAMES


def _has_end_anchor(items: _Items) -> bool:
    for op, arg in items:
        if op is sre_c.AT and arg in _END:
            return True
        if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            continue
        if any(_has_end_anchor(child) for child in _children(op, arg)):
            return True
    return False


def _starts_anchored(items: _Items) -> bool:
    """Does every way through the regex begin with ^ (skipping empty-width lookarounds)?"""
    for op, arg in items:
        if op is sre_c.AT:
            return bool(arg in _BEGIN)
        if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            continue
        if op in (sre_c.SUBPATTERN, sre_c.ATOMIC_GROUP):
            return _starts_anchored(_children(op, arg)[0])
        if op is sre_c.BRANCH:
            return all(_starts_anchored(branch) for branch in arg[1])
        return False
    return False
