"""What the filter reports about a line: `Failure`, `LineResult`, `BlockTally`.

A `Failure` is who a matched line blames and what it captured; a `LineResult` is
everything one line gave (failures, the regexes that matched, the ignoreregex that
took it, its date, or the step that ran out of time); a `BlockTally` is what the block
loop counted over the candidate lines of a block. This module also owns the small
vocabulary the filter and its block loop share: the steps a timeout names (`_Step`,
`_STEP_*`, `step_text`) and the outcome codes of counting a line (`_COUNTS`,
`_NOFAIL`, `_NOBODY`), plus the shared empty containers of tally()'s light failures.

It imports nothing of the engine; `compiled.py` and `blockloop.py` build on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Failure:
    host: str | None
    time: float
    fields: dict[str, object]
    attempts: int
    lines: list[str]
    nofail: bool
    regex_index: int


@dataclass(slots=True)
class LineResult:
    failures: list[Failure] = field(default_factory=list)
    ignored: bool = False
    matched: list[int] = field(default_factory=list)
    ignore_index: int | None = None
    date: Any = None  # DateHit | None (dates/templates.py)
    timed_out: str | None = None


class BlockTally:
    """What CompiledFilter.tally_block counted among a block's candidate lines.

    Lines are counted as fail2ban-regex's summary counts them (matched, ignored,
    missed, hits per regex), except the `notable` ones: those come with their
    tally() result for the caller to count and show itself."""

    __slots__ = ("matched", "ignored", "missed", "comments", "fail_hits", "ignore_hits", "notable", "_shown")

    def __init__(self, fails: int, ignores: int) -> None:
        self.matched = 0
        self.ignored = 0
        self.missed = 0
        self.comments = 0  # candidate lines that are empty, "\r" or comments: not tested
        self.fail_hits = [0] * fails
        self.ignore_hits = [0] * ignores
        self.notable: list[tuple[str, LineResult]] = []
        self._shown = 0  # ignored lines handed over in `notable`

    def wants(self, result: LineResult, keep_ignored: int, keep_matched: bool) -> bool:
        """Whether the caller asked to see this line (see tally_block)."""
        if result.timed_out is not None:
            return True
        if result.ignored:
            if keep_ignored < 0 or self._shown < keep_ignored:
                self._shown += 1
                return True
            return False
        return keep_matched and any(not f.nofail for f in result.failures)

    def add(self, line: str, result: LineResult | None, keep_ignored: int, keep_matched: bool) -> None:
        """Count one line from its tally() result (filtertest's Runner._count, in sums)."""
        if result is None:
            self.missed += 1
            return
        if self.wants(result, keep_ignored, keep_matched):
            self.notable.append((line, result))
            return
        for failure in result.failures:
            self.fail_hits[failure.regex_index] += 1
        if result.ignore_index is not None:
            self.ignore_hits[result.ignore_index] += 1
        if result.ignored:
            self.ignored += 1
        elif any(not f.nofail for f in result.failures):
            self.matched += 1
        else:
            self.missed += 1


# shared, never filled: the fields and lines of tally()'s light failures
_NO_FIELDS: dict[str, object] = {}
_NO_LINES: list[Any] = []


_STEP_DATE, _STEP_PREF, _STEP_FAIL, _STEP_IGNORE = range(4)
# CompiledFilter._count_groups' outcome: a failure that counts, or a nofail one, and
# whether it names nobody yet (0: no failure at all)
_COUNTS, _NOFAIL, _NOBODY = 1, 2, 4


class _Step:
    """What the line is busy with, for the timeout message (ints: cheap to set)."""

    __slots__ = ("kind", "index")

    def __init__(self) -> None:
        self.kind = _STEP_DATE
        self.index = 0

    def describe(self) -> str:
        if self.kind == _STEP_DATE:
            return "date detection"
        if self.kind == _STEP_PREF:
            return "prefregex"
        return f"{'failregex' if self.kind == _STEP_FAIL else 'ignoreregex'} {self.index + 1}"


def step_text(kind: int, index: int) -> str:
    step = _Step()
    step.kind, step.index = kind, index
    return step.describe()
