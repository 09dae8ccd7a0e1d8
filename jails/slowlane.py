"""Slow requests take turns, so that a page always finds a free web worker.

The panel runs a few synchronous gunicorn workers (IPS_WEB_WORKERS): a worker serves one request at
a time. Most pages answer in well under 300 ms, but some requests are slow by nature (a bans export
streams up to 100,000 rows for several seconds; a tester run may spend its 2 s budget). Had every
worker been taken by one of those, every other page would wait. Here a slow request must first take
one of IPS_WEB_WORKERS - 1 lanes (at least one): a lane is an exclusive lock (flock) on its own file
under IPS_RUN_DIR, held by the serving process, released when the request ends or the process dies.
When every lane stays taken for WAIT_SECONDS, the request is answered that the panel is busy (callers
choose how), instead of queueing behind the others.

Threads in one process (the development server, tests' live server) open the files separately, so
they exclude each other as processes do.
"""

from __future__ import annotations

import fcntl
import os
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from django.conf import settings

T = TypeVar("T")
RETRY_SECONDS = 5
BUSY = (f"The panel is busy with other long requests (exports, tester runs) right now; try again in "
        f"{RETRY_SECONDS} seconds. Pages keep answering meanwhile.")


def lanes() -> int:
    return max(1, int(settings.IPS_WEB_WORKERS) - 1)


class Lane:
    """One held lane: release() once (idempotent). A lane that is dropped without being released (a
    response thrown away before its body was read: a middleware failing after the view) is released
    when it is collected, so no path leaves the worker's lane taken for good."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._finalizer = weakref.finalize(self, os.close, fd)  # closing the file drops its lock

    def release(self) -> None:
        if self._fd is not None:
            self._fd = None
            self._finalizer()  # runs os.close once, here or never again


# How long a request waits for a lane before it is told the panel is busy: most tester runs take
# milliseconds, so two people typing at once take turns instead of one being refused. Short, since
# the waiting request holds its worker meanwhile; exports do not wait at all (take(wait=0)).
WAIT_SECONDS = 0.3
POLL_SECONDS = 0.05


def take(wait: float | None = None) -> Lane | None:
    """A free lane, waiting up to `wait` seconds (WAIT_SECONDS) for one; None when every lane stayed held."""
    directory = Path(settings.IPS_RUN_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + (WAIT_SECONDS if wait is None else wait)
    while True:
        found = _try_each(directory)
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(POLL_SECONDS)


def _try_each(directory: Path) -> Lane | None:
    for number in range(lanes()):
        fd = os.open(directory / f"slow-lane-{number}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return Lane(fd)
    return None


@contextmanager
def lane(wait: float | None = None) -> Iterator[bool]:
    """`with lane() as held:` a lane for the block when `held`; when not, every lane was busy."""
    taken = take(wait)
    try:
        yield taken is not None
    finally:
        if taken is not None:
            taken.release()


class HeldStream(Iterator[T]):
    """A streamed body that keeps its lane until the last chunk is sent, or until Django closes it
    (the client went away, or the response was never sent: close() releases even before the first
    chunk, where a generator's `finally` would not run)."""

    def __init__(self, taken: Lane, chunks: Iterable[T]) -> None:
        self._taken = taken
        self._chunks = iter(chunks)

    def __iter__(self) -> HeldStream[T]:
        return self

    def __next__(self) -> T:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._taken.release()
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
