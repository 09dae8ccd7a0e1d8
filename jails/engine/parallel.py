"""Matching a large log on several cores, with exactly the results of one (filtertest).

The main process reads the log and cuts it into pieces of whole lines. Worker
processes, forked so that they start with the compiled filter, its literal prefilter
and its date detector as they are, scan each piece for candidate lines and take them
through the date, the prefregex and the failregexes (blockloop.BlockLoop.prematch_all).
The main process commits their segments in log order (BlockLoop.commit_prematched):
the sessions, the decisions and the counts stay in one process, and a segment a
worker made with another date template than the main process would have used is
matched again there. Workers never decide anything; at worst they waste work.

Only the counting path uses it (filtertest's summary): JSON output and
--print-all-missed need every line in order, and small logs are not worth a fork.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from .blockloop import BlockLoop, Segment
from .filter.compiled import CompiledFilter
from .filter.results import BlockTally
from .guard import Watchdog

PIECE_SIZE = 1 << 20  # characters per piece a worker takes at once (about 10,000 lines)
PieceCounter = Callable[[str], tuple[int, int]]  # a piece -> (lines, comment or empty lines)


class Prematched:
    """What a worker sends back for a piece: its line counts and its segments
    (the candidates themselves stay in the worker: few are ever needed again)."""

    __slots__ = ("lines", "comments", "candidates", "segments")

    def __init__(self, lines: int, comments: int, candidates: int, segments: list[Segment]) -> None:
        self.lines = lines
        self.comments = comments
        self.candidates = candidates
        self.segments = segments

    def __getstate__(self) -> tuple[Any, ...]:
        return self.lines, self.comments, self.candidates, self.segments

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.lines, self.comments, self.candidates, self.segments = state


@dataclass
class _WorkerState:
    cf: CompiledFilter
    prefilter: Any  # literals.Prefilter
    now: float
    timeout: float  # regex seconds per line (0: unguarded)
    count_piece: PieceCounter


# Set in the main process just before the workers are forked, which inherit it: the
# compiled filter is never pickled (its regexes would be compiled again per worker).
_STATE: _WorkerState | None = None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def prematch(piece: str) -> Prematched:
    """In a worker: a piece's candidate lines and what prematch saw of them."""
    state = _STATE
    if state is None:
        raise RuntimeError("prematch runs in a worker forked by Prematcher")
    candidates = state.prefilter.candidate_masks(piece)
    cf = state.cf
    if state.timeout <= 0:
        segments = _prematch_all(cf, state.now, None, piece, candidates)
    else:
        # each worker guards its own regexes, and only them: the scan and the counts
        # are no line's time (as in the main process, which pauses its watchdog then)
        with Watchdog(state.timeout) as watchdog:
            segments = _prematch_all(cf, state.now, watchdog if watchdog.active else None, piece, candidates)
    lines, comments = state.count_piece(piece)
    return Prematched(lines, comments, len(candidates), segments)


def _prematch_all(cf: CompiledFilter, now: float, watchdog: Any, piece: str, candidates: Any) -> list[Segment]:
    unused = BlockTally(len(cf.failregex_patterns), len(cf.ignoreregex_patterns))
    return BlockLoop(cf, now, watchdog, 0, False, unused).prematch_all(piece, candidates)


def pieces(blocks: Iterable[str], size: int = PIECE_SIZE) -> Iterator[str]:
    """Newline-terminated blocks cut into pieces of about `size` characters, at newlines."""
    for block in blocks:
        start = 0
        while len(block) - start > size:
            cut = block.find("\n", start + size) + 1
            if cut == 0:
                break
            yield block[start:cut]
            start = cut
        if start < len(block):
            yield block[start:] if start else block


class Prematcher:
    """A pool of forked workers prematching pieces; results come back in order.

    Use as a context manager: the workers are stopped on the way out, whatever
    happened. A worker's exception is raised again in the main process, and a worker
    that dies (killed, out of memory) raises BrokenProcessPool there: never a hang."""

    def __init__(
        self,
        cf: CompiledFilter,
        prefilter: Any,
        now: float,
        timeout: float,
        count_piece: PieceCounter,
        workers: int,
        waiting: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        """`waiting()` wraps the time spent reading or waiting for workers (the main
        process's watchdog pauses: that is no line's time)."""
        global _STATE
        self.workers = workers
        self.waiting = waiting
        _STATE = _WorkerState(cf, prefilter, now, timeout, count_piece)  # kept while workers may fork
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))

    def __enter__(self) -> Prematcher:
        return self

    def __exit__(self, *exc: object) -> None:
        global _STATE
        try:
            with self.waiting():  # a worker may still finish the piece it has
                self.pool.shutdown(wait=True, cancel_futures=True)
        finally:
            _STATE = None

    def results(self, source: Iterator[str]) -> Iterator[tuple[str, Prematched]]:
        """(piece, its prematch) for each piece of `source`, in order. A few pieces
        are in flight at once, so memory stays bounded on any log size."""
        waiting = self.waiting
        in_flight: deque[tuple[str, Any]] = deque()
        limit = 2 * self.workers + 1
        while True:
            with waiting():
                piece = next(source, None)
            if piece is not None:
                in_flight.append((piece, self.pool.submit(prematch, piece)))
            if in_flight and (piece is None or len(in_flight) >= limit):
                oldest, pending = in_flight.popleft()
                with waiting():
                    result = pending.result()
                yield oldest, result
            elif piece is None:
                return
