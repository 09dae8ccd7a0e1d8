"""Helpers for the fault tests (tests/e2e/test_faults.py): the test's own Redis, a burst of attack
lines whose totals are known in advance, a writer that can rotate its logs mid-way as logrotate
does, and a way to SIGKILL a worker while it is inside a read.

The totals are computed from the lines written, never from a run: every failure line of an
address counts once, an address with `maxretry` lines is banned once, one with fewer is not.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tests.e2e.stack import Child, wait_for

# --- the test's own Redis -----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on now, on loopback (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnRedis:
    """A redis-server of the test's own, on loopback, without persistence: a restart loses every
    queued message, as a crash of an unpersisted Redis would. Never the machine's shared Redis."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.starts += 1
        log = self.directory / f"redis-{self.starts}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory), "--daemonize", "no", "--protected-mode", "yes"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        if not wait_for(self.answers, timeout, interval=0.05):
            self.stop()
            raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log.read_text(errors='replace')}")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (no persistence: it exits at once), SIGKILL if it does not within `grace`."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def restart(self, down_for: float) -> float:
        """Stop, stay down `down_for` seconds (clients see refused connections), start on the same port;
        returns the seconds it was unreachable."""
        stopped = time.monotonic()
        self.stop()
        time.sleep(down_for)
        self.start()
        return time.monotonic() - stopped

    def logs(self) -> str:
        return "\n".join(f"-- {path.name}\n{path.read_text(errors='replace')[-2000:]}"
                         for path in sorted(self.directory.glob("redis-*.log")))


# --- the burst ----------------------------------------------------------------------------------


def rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat(timespec="microseconds")


def sshd_line(address: str, serial: int) -> str:
    return (f"{rfc3339(time.time())} srv sshd[{10000 + serial}]: Failed password for root from {address} "
            f"port {20000 + serial % 40000} ssh2")


def sasl_line(address: str, serial: int) -> str:
    return (f"{rfc3339(time.time())} mx postfix/smtpd[{10000 + serial}]: warning: unknown[{address}]: "
            "SASL LOGIN authentication failed: UGFzc3dvcmQ6")


@dataclass(frozen=True)
class JailPlan:
    jail: str
    log: str  # file name under the logs directory
    line: Callable[[str, int], str]
    banned: tuple[str, ...]  # addresses that write `maxretry` failures
    few: tuple[str, ...]  # addresses that write maxretry - 1


def addresses(first: str, count: int) -> tuple[str, ...]:
    start = ipaddress.ip_address(first)
    return tuple(str(start + i) for i in range(count))


@dataclass
class Burst:
    """Which lines go where, in the order they are written: failures of one address are spread over
    the whole burst (round after round), so a ban is earned only near its end and a lost or doubled
    line anywhere changes a total."""

    plans: tuple[JailPlan, ...]
    maxretry: int
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (jail, log, line)

    def __post_init__(self) -> None:
        serial = 0
        for round_ in range(self.maxretry):
            for plan in self.plans:
                for address in plan.banned + (plan.few if round_ < self.maxretry - 1 else ()):
                    self.lines.append((plan.jail, plan.log, plan.line(address, serial)))
                    serial += 1

    def expected_failures(self) -> dict[str, int]:
        return dict(Counter(jail for jail, _, _ in self.lines))

    def expected_bans(self) -> set[tuple[str, str]]:
        return {(plan.jail, network(address)) for plan in self.plans for address in plan.banned}

    def expected_tallies(self) -> dict[tuple[str, str], int]:
        return {(plan.jail, address): self.maxretry - 1 for plan in self.plans for address in plan.few}


def network(address: str) -> str:
    return str(ipaddress.ip_network(address))


# --- writing it, with a rotation mid-way ----------------------------------------------------------


class Writer(threading.Thread):
    """Appends the burst in chunks (as a busy daemon does), pausing `pace` seconds between chunks.

    Half-way, between two chunks, it calls `rotate` (a logrotate step), writes `surge` chunks at once
    (a spike: the read that follows is long enough to be interrupted) and sets `halfway`. `rotate`
    returns how many more chunks go to the handles open before it (a daemon writes to its renamed
    log until postrotate makes it reopen), then every log is reopened by name; 0: no reopening."""

    def __init__(self, burst: Burst, logs: Path, *, chunk: int, pace: float, surge: int = 0,
                 rotate: Callable[[Writer], int] | None = None) -> None:
        super().__init__(name="burst-writer", daemon=True)
        self.burst = burst
        self.logs = logs
        self.chunk = chunk
        self.pace = pace
        self.surge = surge
        self.rotate = rotate
        self.halfway = threading.Event()
        self.error: BaseException | None = None
        self.files: dict[str, TextIO] = {}
        self.events: list[str] = []

    def open_all(self) -> None:
        self.close_all()
        for log in sorted({log for _, log, _ in self.burst.lines}):
            # "a" is O_APPEND, as syslog daemons write: after copytruncate, lines go to the new end
            self.files[log] = (self.logs / log).open("a", buffering=1)

    def close_all(self) -> None:
        for handle in self.files.values():
            handle.close()
        self.files.clear()

    def run(self) -> None:
        try:
            self._write_all()
        except BaseException as exc:  # reported by the test, never lost in a thread
            self.error = exc
        finally:
            self.halfway.set()
            self.close_all()

    def _write_all(self) -> None:
        lines = self.burst.lines
        self.open_all()
        reopen_at, surge_ends = None, -1
        for index, start in enumerate(range(0, len(lines), self.chunk)):
            if start >= len(lines) // 2 and surge_ends < 0:
                if self.rotate is not None and (old_chunks := self.rotate(self)) > 0:
                    reopen_at = index + old_chunks
                surge_ends = index + self.surge
            if reopen_at is not None and index >= reopen_at:
                self.open_all()
                self.events.append(f"reopened the logs by name after {index} chunks (postrotate)")
                reopen_at = None
            for _, log, line in lines[start:start + self.chunk]:
                self.files[log].write(line + "\n")
            if index >= surge_ends >= 0 and not self.halfway.is_set():
                self.halfway.set()
            if not 0 <= index < surge_ends:
                time.sleep(self.pace)


def rotate_by_rename(old_chunks: int) -> Callable[[Writer], int]:
    """logrotate's default ("create"): rename every log to .1 and create an empty one; the daemon goes
    on writing `old_chunks` chunks to the renamed file before postrotate makes it reopen its log."""

    def rotate(writer: Writer) -> int:
        for log in writer.files:
            path = writer.logs / log
            os.rename(path, path.with_name(log + ".1"))
            path.touch()
        writer.events.append(f"renamed {sorted(writer.files)} to .1, created empty logs")
        return old_chunks

    return rotate


def rotate_by_copytruncate(writer: Writer) -> int:
    """logrotate's copytruncate: copy every log to .1, then truncate it in place. No line is written
    between the copy and the truncation (lines written there are lost: copytruncate's own race)."""
    for log in writer.files:
        path = writer.logs / log
        shutil.copyfile(path, path.with_name(log + ".1"))
        os.truncate(path, 0)
    writer.events.append(f"copied {sorted(writer.files)} to .1 and truncated them")
    return 0


# --- killing a worker inside a read -------------------------------------------------------------


def write_transaction_open(database: str) -> bool:
    """Whether some process holds SQLite's write lock now (a read of the watcher is one transaction).
    Probed with BEGIN IMMEDIATE and no wait; when free, the lock is given back at once."""
    probe = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)
    else:
        probe.execute("ROLLBACK")
        return False
    finally:
        probe.close()


def kill_inside_a_read(worker: Child, database: str | None, *, timeout: float = 10.0) -> tuple[bool, str]:
    """SIGKILL the worker's whole process group (its pool too, as the OOM killer or a power cut would)
    while it is inside a read: while the database's write lock is held on two probes 20 ms apart (the
    firewall worker's and beat's transactions last a few ms; a read's, in the fault tests, 50 ms more:
    tests/e2e/slowreads.py).

    Returns (killed inside a transaction, what happened). Without SQLite, or without such a moment
    within `timeout`, it kills anyway and says so."""
    inside = False
    deadline = time.monotonic() + timeout
    while database is not None and time.monotonic() < deadline:
        if write_transaction_open(database):
            time.sleep(0.02)
            if write_transaction_open(database):
                inside = True
                break
        time.sleep(0.005)
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)
    if inside:
        return True, "SIGKILL of the watcher worker while a write transaction was open"
    return False, f"SIGKILL of the watcher worker, no write transaction seen open within {timeout} s"
