"""libnftables in a child process, so that a call that hangs can be abandoned (plain Python, no Django).

A libnftables call runs in C and cannot be interrupted: one that never returns (the kernel stuck on
a huge batch, a netlink socket that never answers) would hold the firewall worker for good, and
with it every later ban. So `bans.firewall.NftablesBackend` never calls libnftables itself: it
sends each JSON command to this module's child process over a pipe and waits at most its timeout
for the answer; past it, the child is killed (SIGKILL) and the call fails as a transient error.
The next call starts a fresh child (about 60 ms). A netlink batch is atomic in the kernel, so a
child killed half way leaves the ruleset as it was before the batch or after it, never between.

    python -P bans/firewall/nftchild.py       reads one JSON command per line, answers [rc, output, error]

The child runs this file by its path, not as `-m bans.firewall.nftchild`: that would import the
bans.firewall package first (which imports this module), costing the child's start and making
runpy warn on every start. It imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
READ_CHUNK = 1 << 20
KILL_WAIT = 2.0


class CallTimedOut(Exception):
    """The child did not answer in time; it has been killed."""


class ChildGone(Exception):
    """The child exited (or could not start); the message says what it printed last, if anything."""


class NftProcess:
    """The parent's end: one child at a time, started on first use and again after a kill."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._child: subprocess.Popen[bytes] | None = None
        self._pending = b""

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._child.poll() is None else None

    def json_cmd(self, command: dict[str, Any]) -> tuple[int, Any, str]:
        """libnftables' json_cmd in the child; CallTimedOut after `timeout` seconds, ChildGone if it died."""
        child = self._running()
        deadline = time.monotonic() + self.timeout
        try:
            self._write(child, (json.dumps(command) + "\n").encode(), deadline)
            line = self._read_line(child, deadline)
        except OSError as exc:  # a broken pipe: the child died under us
            self.kill()
            raise ChildGone(f"the libnftables helper process failed: {exc}") from None
        except BaseException:
            # timed out, or interrupted (a task's time limit, Ctrl-C) between our question and its
            # answer: that answer must never be read as the next call's, so the child goes with it
            self.kill()
            raise
        rc, output, error = json.loads(line)
        return int(rc), output, str(error)

    def kill(self) -> None:
        child, self._child, self._pending = self._child, None, b""
        if child is None:
            return
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        # stuck in the kernel (state D) past KILL_WAIT: it goes when the kernel lets it; we do not wait
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=KILL_WAIT)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()

    def close(self) -> None:
        self.kill()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._child is not None and self._child.poll() is None:
            return self._child
        self.kill()
        # -P: this file's directory is not put on sys.path (its nftables.py would hide libnftables')
        # S603: this very file, run by this Python; argv is a list, no shell, nothing from outside
        self._child = subprocess.Popen([sys.executable, "-P", str(Path(__file__).resolve())], cwd=ROOT,  # noqa: S603
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        assert self._child.stdin is not None  # noqa: S101  # type narrowing: stdin=PIPE always sets it
        assert self._child.stdout is not None  # noqa: S101  # type narrowing: stdout=PIPE always sets it
        os.set_blocking(self._child.stdin.fileno(), False)
        os.set_blocking(self._child.stdout.fileno(), False)
        return self._child

    def _write(self, child: subprocess.Popen[bytes], data: bytes, deadline: float) -> None:
        assert child.stdin is not None  # noqa: S101  # type narrowing: the child is started with stdin=PIPE
        fd = child.stdin.fileno()
        view = memoryview(data)
        while view:
            _, writable, _ = select.select([], [fd], [], self._left(deadline))
            if not writable:
                raise CallTimedOut()
            view = view[os.write(fd, view):]

    def _read_line(self, child: subprocess.Popen[bytes], deadline: float) -> bytes:
        assert child.stdout is not None  # noqa: S101  # type narrowing: the child is started with stdout=PIPE
        fd = child.stdout.fileno()
        while b"\n" not in self._pending:
            readable, _, _ = select.select([fd], [], [], self._left(deadline))
            if not readable:
                raise CallTimedOut()
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                self.kill()
                raise ChildGone("the libnftables helper process exited without answering")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    @staticmethod
    def _left(deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CallTimedOut()
        return left


def serve() -> None:
    """The child: one libnftables handle, one JSON command per line in, one answer per line out.
    (The parent checked that libnftables and its Python module are there before starting it.)"""
    import nftables  # noqa: PLC0415  # only the child loads libnftables: the parent imports this module too

    nft = nftables.Nftables()
    for line in sys.stdin.buffer:
        rc, output, error = nft.json_cmd(json.loads(line))
        sys.stdout.write(json.dumps([rc, output, error]) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    serve()
