"""watchers.follow with journal sources: a change in the journal wakes them (inotify on the journal's
directories), reads stay paced however busy the journal is, and without inotify the journal is polled.

The first test is real from end to end: a private systemd-journald (in a private mount namespace, as
in test_journal.py) writes its files into a directory of this test, entries are sent to it through its
native socket, and the follower, in this process, reads them with the real journalctl (pointed at that
directory by a two-line wrapper) and bans. It is skipped where journald cannot run so (no root, no
mount namespace).

The others stand a temporary directory in for the journal directory and use a reader that only
records when it was called. That is on purpose, not for want of a journal: journald signals a change
at most every 250-500 ms per file (its post-change timer, see watchers/journal.py), so a real journal
cannot change fast enough to show the follower's own bound on reads, nor can it be made to vanish or
to appear at will; a file written in the stand-in directory makes the same inotify events.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bans.models import Ban
from jails.builtin import FILTER_DIR
from jails.models import Filter, Jail
from tests.watchers.test_journal import private_journald_possible
from watchers import inotify, journal, services
from watchers.follow import JOURNAL_MIN_READ_INTERVAL_SECONDS, Follower
from watchers.models import LogSource
from watchers.services import ReadReport, read_source

ATTACKER = "203.0.113.9"
MACHINE_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def sshd(db: None) -> Filter:
    for name in ("ips-common", "sshd"):
        Filter.objects.create(name=name, source=(FILTER_DIR / f"{name}.conf").read_text())
    return Filter.objects.get(name="sshd")


def journal_jail(sshd: Filter, name: str = "sshd-journal", **options: Any) -> Jail:
    return Jail.objects.create(name=name, enabled=True, filter=sshd, maxretry=1, findtime=600, bantime=3600,
                               backend=Jail.Backend.SYSTEMD, journalmatch="SYSLOG_IDENTIFIER=sshd", **options)


class Recorder:
    """A reader that only records when it was called (no journalctl: the stand-in journal is not one)."""

    def __init__(self) -> None:
        self.reads: list[float] = []

    def __call__(self, source_id: int, **kwargs: Any) -> ReadReport:
        self.reads.append(time.monotonic())
        return ReadReport()

    def since(self, moment: float) -> list[float]:
        return [when for when in self.reads if when >= moment]


def follower(directory: Path, reader: Callable[..., ReadReport], **options: Any) -> Follower:
    # the poll and the safety net are pushed far away: what wakes the follower here is inotify
    settings: dict[str, Any] = {"safety_seconds": 60.0, "resync_seconds": 60.0, "poll_seconds": 60.0,
                                "journal_directories": (str(directory),), **options}
    return Follower(0, 1, reader=reader, **settings)


def step_until(flw: Follower, done: Callable[[], bool], timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < timeout, "the follower did not read the journal in time"
        flw.step(0.5)
    return time.monotonic() - started


def touch(path: Path) -> None:
    """What journald does after writing through mmap: truncate the file to its own size (IN_MODIFY)."""
    with path.open("ab") as out:
        out.truncate(out.tell())


# --- a real journald ---------------------------------------------------------------------------------

# Runs as root in a private mount namespace: /run and /var/log/journal are private tmpfs, the journal
# directory ($1) and journald's socket directory ($2) are this test's, bound in, so this process sees
# the files journald writes and reaches its socket. journald starts on the first line read from stdin,
# and stops when stdin closes.
NAMESPACE_SCRIPT = """
set -e
mount -t tmpfs tmpfs /run
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mkdir -p /run/systemd/journal /run/systemd/journald.conf.d /run/log/journal
mount --bind "$1" /run/log/journal
mount --bind "$2" /run/systemd/journal
printf '[Journal]\\nStorage=volatile\\nReadKMsg=no\\nForwardToSyslog=no\\nForwardToWall=no\\nForwardToConsole=no\\n' \
    > /run/systemd/journald.conf.d/test.conf
echo mounted
read go
SYSTEMD_LOG_TARGET=console {journald} 2>/dev/null &
JOURNALD=$!
trap 'kill $JOURNALD' EXIT
read stop || true
"""


class PrivateJournald:
    """systemd-journald writing into `directory`, its sockets in `sockets`."""

    def __init__(self, directory: Path, sockets: Path) -> None:
        journald = shutil.which("systemd-journald", path="/lib/systemd:/usr/lib/systemd")
        self.sockets = sockets
        self.process = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT.format(journald=journald),
             "sh", str(directory), str(sockets)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line == b"mounted\n", (line, self.process.stderr.read() if self.process.stderr else b"")

    def start(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + 10
        while not (self.sockets / "socket").exists():
            assert time.monotonic() < deadline, "journald did not start"
            time.sleep(0.02)

    def send(self, **fields: str) -> None:
        """An entry, as sd_journal_send does (the native protocol, length-prefixed values)."""
        payload = b""
        for name, value in fields.items():
            data = value.encode()
            payload += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(payload, str(self.sockets / "socket"))

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def journald(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PrivateJournald, Path]]:
    reason = private_journald_possible()
    if reason is not None:
        pytest.skip(reason)
    top = Path(tempfile.mkdtemp(prefix="ipsjrn-"))  # short: a unix socket path has at most 107 bytes
    directory, sockets = top / "journal", top / "s"
    directory.mkdir()
    sockets.mkdir()
    # journalctl reads the test's journal directory; "no journal at all" is decided there too
    wrapper = top / "journalctl"
    wrapper.write_text(f'#!/bin/sh\nexec journalctl --directory={directory} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(journal, "JOURNAL_DIRECTORIES", (str(directory),))
    monkeypatch.setattr(services, "read_journal", functools.partial(journal.read_journal, executable=str(wrapper)))
    server = PrivateJournald(directory, sockets)
    try:
        yield server, directory
    finally:
        server.stop()
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.django_db
def test_it_wakes_on_a_real_journal_entry(sshd: Filter, journald: tuple[PrivateJournald, Path],
                                          no_broker: None) -> None:
    server, directory = journald
    jail = journal_jail(sshd)
    reads: list[tuple[float, int]] = []  # when each read started, and how many entries it found

    def reader(source_id: int, **kwargs: Any) -> ReadReport:
        started = time.monotonic()
        report = read_source(source_id, **kwargs)
        reads.append((started, report.lines))
        return report

    flw = follower(directory, reader)
    try:
        # journald is not running yet: the journal directory is empty, as on this machine
        flw.start()
        source = LogSource.objects.get(jail=jail)
        assert source.health == LogSource.Health.WAITING, source.health_reason
        assert flw.journal_watcher is not None and flw.journal_watched == [f"{directory}/*"]

        # journald starts and makes its machine-id directory: the follower watches it too
        server.start()
        step_until(flw, lambda: len(flw.journal_watched) == 3)
        machine = Path(flw.journal_watched[1]).parent
        assert flw.journal_watched == [f"{directory}/*", f"{machine}/*.journal", f"{machine}/*.journal~"]

        # an attack on sshd, in the journal: read when journald says the file changed, long before the
        # 60 s poll or safety net could
        settled = time.monotonic()
        while time.monotonic() - settled < 1.0:  # journald's own start is written and read
            flw.step(0.5)
        sent = time.monotonic()
        server.send(MESSAGE=f"Failed password for root from {ATTACKER} port 40022 ssh2", SYSLOG_IDENTIFIER="sshd",
                    SYSLOG_PID="4242", PRIORITY="5")
        took = step_until(flw, lambda: Ban.objects.filter(network=f"{ATTACKER}/32").exists())
        read_at = min(when for when, entries in reads if when >= sent and entries) - sent
        print(f"journal entry sent to the read that found it: {read_at * 1000:.0f} ms; to its ban: "
              f"{took * 1000:.0f} ms")
        source.refresh_from_db()
        assert source.health == LogSource.Health.OK and source.cursor
        assert took < 30  # not the 60 s poll: inotify woke it (journald itself waits 250-500 ms)
    finally:
        flw.close()
    assert flw.journal_watcher is None


# --- a stand-in journal directory -----------------------------------------------------------------------


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "journal"
    (directory / MACHINE_ID).mkdir(parents=True)
    (directory / MACHINE_ID / "system.journal").write_bytes(b"\0" * 64)
    return directory


@pytest.mark.django_db
def test_a_change_in_the_journal_wakes_its_sources_and_only_them(sshd: Filter, journal_dir: Path, tmp_path: Path,
                                                                  no_broker: None) -> None:
    jail = journal_jail(sshd)
    other = tmp_path / "auth.log"
    other.write_text("")
    Jail.objects.create(name="files", enabled=True, filter=sshd, logpath=[str(other)])
    recorder = Recorder()
    flw = follower(journal_dir, recorder)
    flw.start()
    journal_source = LogSource.objects.get(jail=jail).pk
    assert flw.journal_watcher is not None
    files = journal_dir / MACHINE_ID
    read_before = len(recorder.reads)
    time.sleep(JOURNAL_MIN_READ_INTERVAL_SECONDS)  # the first read is over: the next one is not deferred

    touch(files / "system.journal")  # written
    step_until(flw, lambda: len(recorder.reads) > read_before, timeout=5)
    assert not flw.deferred  # only the journal source was read: the file source did not change

    read_before = len(recorder.reads)
    time.sleep(JOURNAL_MIN_READ_INTERVAL_SECONDS)
    (files / "system.journal").rename(files / "system@0001-0002.journal")  # rotated...
    step_until(flw, lambda: len(recorder.reads) > read_before, timeout=5)
    read_before = len(recorder.reads)
    time.sleep(JOURNAL_MIN_READ_INTERVAL_SECONDS)
    (files / "system.journal").write_bytes(b"")  # ...and the next file started
    step_until(flw, lambda: len(recorder.reads) > read_before, timeout=5)
    assert set(flw.journal_sources()) == {journal_source}

    # no journal jail any more: the journal is not watched
    Jail.objects.filter(pk=jail.pk).update(enabled=False)
    flw.resync()
    assert flw.journal_watcher is None and flw.journal_watched == []
    flw.close()


@pytest.mark.django_db
def test_a_constantly_written_journal_is_read_at_a_bounded_rate(sshd: Filter, journal_dir: Path,
                                                                no_broker: None) -> None:
    journal_jail(sshd)
    recorder = Recorder()
    flw = follower(journal_dir, recorder)
    flw.start()
    stop = threading.Event()

    def busy_host() -> None:  # a change every 2 ms, in two journal files
        while not stop.is_set():
            touch(journal_dir / MACHINE_ID / "system.journal")
            touch(journal_dir / MACHINE_ID / "user-1000.journal")
            time.sleep(0.002)

    writer = threading.Thread(target=busy_host)
    started = time.monotonic()
    writer.start()
    steps = 0
    try:
        while time.monotonic() - started < 1.5:
            flw.step(0.5)
            steps += 1
    finally:
        stop.set()
        writer.join()
        flw.close()
    reads = recorder.since(started)
    print(f"a journal changed every 2 ms for 1.5 s: {len(reads)} reads, {steps} steps")
    gaps = [later - earlier for earlier, later in itertools.pairwise(reads)]
    assert len(reads) >= 2, "a busy journal must still be read"
    # at most one journalctl per JOURNAL_MIN_READ_INTERVAL_SECONDS, whatever the number of changes...
    assert all(gap >= JOURNAL_MIN_READ_INTERVAL_SECONDS - 0.001 for gap in gaps), gaps
    # ...and in between the follower sleeps, rather than waking for each change (750 here)
    assert steps <= 4 * len(reads) + 10, (steps, len(reads))


@pytest.mark.django_db
def test_it_watches_a_journal_directory_that_appears_later(sshd: Filter, tmp_path: Path, no_broker: None) -> None:
    directory = tmp_path / "run-log-journal"  # as /run/log/journal before journald first starts
    journal_jail(sshd)
    recorder = Recorder()
    flw = follower(directory, recorder)
    flw.start()
    assert flw.journal_watcher is not None
    (directory / MACHINE_ID).mkdir(parents=True)
    step_until(flw, lambda: f"{directory / MACHINE_ID}/*.journal" in flw.journal_watched, timeout=5)
    read_before = len(recorder.reads)
    time.sleep(JOURNAL_MIN_READ_INTERVAL_SECONDS)
    (directory / MACHINE_ID / "system.journal").write_bytes(b"")  # created
    step_until(flw, lambda: len(recorder.reads) > read_before, timeout=5)
    flw.close()


@pytest.mark.django_db
def test_without_inotify_the_journal_is_polled(sshd: Filter, journal_dir: Path, no_broker: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def no_inotify(self: object) -> None:
        raise inotify.WatcherUnavailable("the per-user limit of inotify instances is reached")

    monkeypatch.setattr(inotify._Libc, "__init__", no_inotify)
    journal_jail(sshd)
    recorder = Recorder()
    flw = follower(journal_dir, recorder, poll_seconds=0.3)
    flw.start()
    assert flw.journal_watcher is None
    assert "inotify instances" in flw.journal_unwatchable
    started = time.monotonic()
    while time.monotonic() - started < 1.0:  # nothing is written: the poll reads all the same
        flw.step(0.5)
    flw.close()
    assert len(recorder.since(started)) >= 2
