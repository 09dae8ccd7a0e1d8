"""watchers.tail: every line read exactly once, through rotation, truncation, recreation and broken
bytes, with real files in tmp_path."""

from __future__ import annotations

import dataclasses
import errno
import os
import pwd
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from watchers.tail import (
    FilePosition,
    ReadResult,
    SourceUnavailable,
    head_digest,
    read_new_lines,
)


def append(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(text.encode() if isinstance(text, str) else text)


def read(path: Path, position: FilePosition | None, **options: Any) -> ReadResult:
    return read_new_lines(str(path), position, **options)


def read_until_quiet(
    path: Path, position: FilePosition | None, **options: Any
) -> tuple[list[str], FilePosition | None, list[str]]:
    """Call read_new_lines until it returns nothing: (all lines, last position, all events)."""
    lines: list[str] = []
    events: list[str] = []
    for _ in range(10_000):
        result = read(path, position, **options)
        lines += result.lines
        events += result.events
        if not result.lines and result.position == position:
            return lines, position, events
        position = result.position
    raise AssertionError("read_new_lines never settled")


# --- lines and positions ---------------------------------------------------------------------------


def test_it_returns_complete_lines_and_leaves_a_partial_line_unread(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "one\ntwo\nthr")
    first = read(log, None)
    assert first.lines == ["one", "two"]
    assert first.position.offset == len("one\ntwo\n")
    assert first.pending == len("thr") and first.events == []

    append(log, "ee\nfour\n")
    second = read(log, first.position)
    assert second.lines == ["three", "four"]
    assert second.events == []


def test_it_resumes_exactly_from_a_saved_position(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    position = None
    seen: list[str] = []
    for batch in range(5):
        append(log, "".join(f"line {batch}-{n}\n" for n in range(3)))
        result = read(log, position)
        seen += result.lines
        # what the database would store, rebuilt from its columns
        position = FilePosition(**dataclasses.asdict(result.position))
    assert seen == [f"line {b}-{n}" for b in range(5) for n in range(3)]
    assert read(log, position).lines == []


def test_it_records_the_identity_and_first_line_of_the_file(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "first line\nsecond\n")
    position = read(log, None).position
    st = os.stat(log)
    assert (position.device, position.inode, position.offset) == (st.st_dev, st.st_ino, st.st_size)
    assert position.head_digest == head_digest(b"first line\nsecond\n")
    assert head_digest(b"first line\n") == head_digest(b"first line")


def test_it_reads_a_big_backlog_in_bounded_calls_with_an_exact_position(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    expected = [f"2026-11-22 03:04:{n % 60:02d} sshd[{n}]: Failed password for root from 192.0.2.{n % 250}"
                for n in range(5000)]
    append(log, "\n".join(expected) + "\n")
    calls = 0
    position = None
    lines: list[str] = []
    while True:
        result = read(log, position, max_bytes=4096)
        if not result.lines:
            break
        calls += 1
        assert result.position.offset - (position.offset if position else 0) <= 4096
        lines += result.lines
        position = result.position
    assert lines == expected
    assert calls > 50
    assert position is not None and position.offset == log.stat().st_size


def test_a_line_longer_than_one_read_but_within_the_limit_is_read_whole(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "x" * 10_000 + "\nafter\n")
    lines, _, _ = read_until_quiet(log, None, max_bytes=4096)
    assert lines == ["x" * 10_000, "after"]


def test_an_overlong_line_is_skipped_whole_and_counted_never_split(tmp_path: Path) -> None:
    """The attack this prevents: text placed at a cut of an overlong line was read as a line of its
    own, so an attacker could get an innocent address counted."""
    log = tmp_path / "access.log"
    planted = "Dec  6 10:00:00 host sshd[1]: Failed password for root from 198.51.100.7 port 22 ssh2"
    append(log, "before\n" + "A" * (4096 - len("before\n")) + planted + "B" * 9000 + "\nafter\n")
    position = None
    lines: list[str] = []
    long_lines = 0
    for _ in range(100):
        result = read(log, position, max_bytes=4096, max_line_bytes=8192)
        lines += result.lines
        long_lines += result.long_lines
        if result.position == position:
            break
        position = result.position
    assert lines == ["before", "after"]
    assert long_lines == 1
    assert position is not None and position.offset == log.stat().st_size and not position.skipping


def test_an_overlong_line_still_being_written_is_skipped_across_reads(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, "first\n" + "A" * 5000)
    result = read(log, None, max_line_bytes=4096)
    assert (result.lines, result.long_lines, result.position.skipping) == (["first"], 1, True)
    append(log, "B" * 3000 + " 198.51.100.7 planted")  # the rest of the same physical line
    middle = read(log, result.position, max_line_bytes=4096)
    assert (middle.lines, middle.long_lines, middle.position.skipping) == ([], 0, True)
    append(log, "\nnext\n")
    last = read(log, FilePosition(**dataclasses.asdict(middle.position)), max_line_bytes=4096)
    assert (last.lines, last.long_lines, last.position.skipping) == (["next"], 0, False)


def test_overlong_lines_inside_a_big_read_are_left_out_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, "one\n" + "x" * 5000 + "\ntwo\n" + "y" * 6000 + "\nthree\n")
    result = read(log, None, max_line_bytes=4096)
    assert (result.lines, result.long_lines, result.more) == (["one", "two", "three"], 2, False)


def test_more_says_whether_complete_lines_are_left_unread(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "".join(f"line {n:04d}\n" for n in range(1000)) + "partial")
    first = read(log, None, max_bytes=4096)
    assert first.more and first.lines
    rest, position, _ = read_until_quiet(log, first.position, max_bytes=1 << 20)
    assert len(first.lines) + len(rest) == 1000
    assert position is not None and not read(log, position).more


def test_lines_with_invalid_bytes_are_counted(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, b"good\nbad \xff byte\nnul \x00 here\nfine\n")
    result = read(log, None)
    assert result.lines == ["good", "bad \ufffd byte", "nul \ufffd here", "fine"]
    assert result.replaced_lines == 2


def test_it_starts_at_the_end_when_asked_and_reads_a_line_in_progress_whole(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "".join(f"old {n}\n" for n in range(1000)) + "in prog")
    first = read(log, None, start_at_end=True)
    assert first.lines == []
    assert first.position.offset == log.stat().st_size - len("in prog")
    assert any("started at the end" in event for event in first.events)
    append(log, "ress\nnew\n")
    assert read(log, first.position).lines == ["in progress", "new"]


def test_it_starts_at_the_beginning_of_a_file_without_any_newline(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "no newline yet")
    result = read(log, None, start_at_end=True)
    assert (result.lines, result.position.offset) == ([], 0)


def test_it_reads_everything_from_the_start_by_default(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a\nb\n")
    assert read(log, None).lines == ["a", "b"]


# --- bytes that are not clean text ----------------------------------------------------------------


def test_it_replaces_invalid_utf8_and_keeps_the_rest_of_the_line(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, b"Invalid user \xff\xferoot from 192.0.2.7\nok \xc3\xa9t\xc3\xa9\ncut \xe2\x82\n")
    assert read(log, None).lines == [
        "Invalid user \ufffd\ufffdroot from 192.0.2.7",
        "ok \u00e9t\u00e9",
        "cut \ufffd",
    ]


def test_it_drops_the_cr_of_crlf_lines_only(tmp_path: Path) -> None:
    log = tmp_path / "iis.log"
    append(log, b"one\r\ntwo\r\nbare\rcr\n")
    assert read(log, None).lines == ["one", "two", "bare\rcr"]


def test_it_replaces_nul_bytes_left_by_a_crash(tmp_path: Path) -> None:
    # after an unclean shutdown, a preallocated log can hold a run of NUL bytes
    log = tmp_path / "auth.log"
    append(log, b"before\n" + b"\x00" * 5000 + b"after crash from 192.0.2.7\n")
    lines = read(log, None).lines
    assert lines[0] == "before"
    assert lines[1] == "\ufffd" * 5000 + "after crash from 192.0.2.7"
    assert "\x00" not in "".join(lines)


def test_it_reads_another_encoding_when_the_jail_says_so(tmp_path: Path) -> None:
    log = tmp_path / "legacy.log"
    append(log, "caf\u00e9 from 192.0.2.7\n".encode("latin-1"))
    assert read(log, None, encoding="latin-1").lines == ["caf\u00e9 from 192.0.2.7"]
    assert read(log, None, encoding="auto").lines == ["caf\ufffd from 192.0.2.7"]
    with pytest.raises(ValueError, match="not supported"):
        read(log, None, encoding="utf-16")
    with pytest.raises(ValueError, match="unknown log encoding"):
        read(log, None, encoding="klingon")


# --- rotation -------------------------------------------------------------------------------------


def test_it_drains_the_renamed_file_then_reads_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\na2\n")
    position = read(log, None).position
    append(log, "a3\na4\n")  # written after the last read, before the rotation
    log.rename(tmp_path / "auth.log.1")
    append(log, "b1\n")
    result = read(log, position)
    assert result.lines == ["a3", "a4", "b1"]
    assert any(event.startswith("rotated:") and "drained 6 bytes from" in event and "auth.log.1" in event
               for event in result.events)
    assert result.position.inode == log.stat().st_ino
    assert read(log, result.position).lines == []


@pytest.mark.parametrize("rotated_name", ["auth.log-20261122", "auth.1.log", "auth.log.0"])
def test_it_finds_the_renamed_file_by_inode_whatever_its_name(tmp_path: Path, rotated_name: str) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\n")
    position = read(log, None).position
    append(log, "a2\n")
    log.rename(tmp_path / rotated_name)
    append(log, "b1\n")
    assert read(log, position).lines == ["a2", "b1"]


def test_it_stays_on_the_renamed_file_until_the_daemon_reopens_its_log(tmp_path: Path) -> None:
    # logrotate renames and creates an empty file; the daemon writes to the renamed file until
    # postrotate makes it reopen the log
    log = tmp_path / "auth.log"
    rotated = tmp_path / "auth.log.1"
    append(log, "a1\n")
    position = read(log, None).position
    log.rename(rotated)
    log.touch()
    append(rotated, "a2\nhalf")
    result = read(log, position)
    assert result.lines == ["a2"]
    assert result.position.inode == rotated.stat().st_ino
    append(rotated, " line\n")
    result = read(log, result.position)
    assert result.lines == ["half line"]
    assert read(log, result.position).events == []  # nothing new: no noise

    append(log, "b1\n")  # reopened: the new file gets lines
    result = read(log, result.position)
    assert result.lines == ["b1"]
    assert result.position.inode == log.stat().st_ino


def test_it_reads_the_unfinished_last_line_of_a_renamed_file_once_the_new_one_is_in_use(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\n")
    position = read(log, None).position
    append(log, "killed mid-li")
    log.rename(tmp_path / "auth.log.1")
    append(log, "b1\n")
    assert read(log, position).lines == ["killed mid-li", "b1"]


def test_it_drains_a_rotated_backlog_over_several_bounded_calls(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a0\n")
    position = read(log, None).position
    old_lines = [f"old line {n:05d}" for n in range(2000)]
    append(log, "".join(line + "\n" for line in old_lines))
    log.rename(tmp_path / "auth.log.1")
    append(log, "new 1\nnew 2\n")
    lines, _, events = read_until_quiet(log, position, max_bytes=4096)
    assert lines == [*old_lines, "new 1", "new 2"]
    assert sum("drained" in event for event in events) > 5


def test_it_says_lines_are_lost_when_the_renamed_file_is_compressed_already(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\n")
    position = read(log, None).position
    append(log, "a2\n")
    # logrotate without delaycompress: auth.log.1.gz only; and a .gz is never read as a log
    os.link(log, tmp_path / "auth.log.1.gz")
    log.unlink()
    append(log, "b1\n")
    result = read(log, position)
    assert result.lines == ["b1"]
    assert any(event.startswith("recreated:") and "lost" in event for event in result.events)


def test_it_drains_the_renamed_file_while_the_log_is_not_there_yet(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\n")
    position = read(log, None).position
    append(log, "a2\n")
    log.rename(tmp_path / "auth.log.1")
    result = read(log, position)
    assert result.lines == ["a2"]
    assert any(event.startswith("missing:") for event in result.events)
    with pytest.raises(SourceUnavailable) as caught:  # nothing left to drain: now it is missing
        read(log, result.position)
    assert caught.value.code == "missing"
    append(log, "b1\n")
    assert read(log, result.position).lines == ["b1"]


def test_it_follows_a_symlinked_log_rotated_in_its_target_directory(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    target = tmp_path / "app" / "current.log"
    log = tmp_path / "app.log"
    log.symlink_to(target)
    append(target, "a1\n")
    position = read(log, None).position
    append(target, "a2\n")
    target.rename(tmp_path / "app" / "current.log.1")
    append(target, "b1\n")
    assert read(log, position).lines == ["a2", "b1"]


# --- truncation, recreation -------------------------------------------------------------------------


def test_it_drains_the_copy_then_reads_from_the_start_after_copytruncate(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\na2\n")
    position = read(log, None).position
    append(log, "a3\n")
    shutil.copyfile(log, tmp_path / "auth.log.1")  # logrotate copytruncate: copy, then truncate
    os.truncate(log, 0)
    append(log, "b1\n")
    result = read(log, position)
    assert result.lines == ["a3", "b1"]
    assert any(event.startswith("truncated:") for event in result.events)
    assert any("drained 3 bytes from" in event for event in result.events)
    assert result.position.inode == log.stat().st_ino


def test_it_reads_from_the_start_after_a_truncation_without_a_copy(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\na2\n")
    position = read(log, None).position
    os.truncate(log, 0)
    append(log, "b1\n")
    result = read(log, position)
    assert result.lines == ["b1"]
    assert any(event.startswith("truncated:") and "reading from the start" in event for event in result.events)


def test_it_reads_from_the_start_when_rewritten_in_place_past_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\n")
    position = read(log, None).position
    inode = log.stat().st_ino
    log.write_text("rewritten first line\nsecond\n")  # same inode, longer than what was read
    assert log.stat().st_ino == inode
    result = read(log, position)
    assert result.lines == ["rewritten first line", "second"]
    assert any(event.startswith("recreated:") for event in result.events)


def test_it_reads_from_the_start_when_recreated_with_the_same_inode_number(tmp_path: Path) -> None:
    # The kernel often gives a deleted file's inode number to the next file created: the saved
    # position then names this inode, with the old file's first line.
    log = tmp_path / "auth.log"
    append(log, "new file line one\nline two\n")
    st = log.stat()
    old = FilePosition(st.st_dev, st.st_ino, 10, head_digest(b"old file's first line\n"))
    result = read(log, old)
    assert result.lines == ["new file line one", "line two"]
    assert any(event.startswith("recreated:") for event in result.events)


def test_it_keeps_its_place_when_a_remount_renumbers_the_device(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\n")
    position = read(log, None).position
    append(log, "a2\n")
    renumbered = dataclasses.replace(position, device=(position.device or 0) + 1)
    assert read(log, renumbered).lines == ["a2"]


def test_it_trusts_a_position_saved_without_identity(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\na2\n")
    assert read(log, FilePosition(None, None, 3, "")).lines == ["a2"]


# --- sources that cannot be read -----------------------------------------------------------------------


def test_it_says_a_missing_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable) as caught:
        read(tmp_path / "nginx" / "access.log", None)
    assert caught.value.code == "missing"
    assert "does not exist yet" in caught.value.reason and "nor does its directory" in caught.value.reason


def test_it_refuses_a_directory_in_words(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable) as caught:
        read(tmp_path, None)
    assert caught.value.code == "not-a-file"
    assert caught.value.reason == f"{tmp_path} is a directory, not a log file"


def test_it_refuses_a_fifo_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    with pytest.raises(SourceUnavailable, match="a FIFO"):
        read(fifo, None)


def test_it_turns_a_read_error_into_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "auth.log"
    append(log, "a\n")

    def failing_disk(fd: int, size: int, offset: int) -> bytes:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "pread", failing_disk)
    with pytest.raises(SourceUnavailable) as caught:
        read(log, None)
    assert caught.value.reason == f"cannot read {log}: Input/output error (EIO)"


def unreadable_as_nobody(path: Path) -> SourceUnavailable:
    """Run read_new_lines as user nobody in a child process (root reads everything) and return
    the SourceUnavailable it raised there."""
    nobody = pwd.getpwnam("nobody")
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to nobody, report the reason through the pipe
        status = 1
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                read(path, None)
                os.write(writer, b"no error\n")
            except SourceUnavailable as exc:
                os.write(writer, f"{exc.code}\n{exc.reason}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        output = pipe.read().decode()
    os.waitpid(pid, 0)
    code, _, reason = output.partition("\n")
    return SourceUnavailable(reason, code=code)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory everybody may enter (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="tail-test-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read as another user")
def test_it_explains_a_permission_denied_with_mode_owner_and_user(open_dir: Path) -> None:
    log = open_dir / "auth.log"
    append(log, "secret\n")
    log.chmod(0o600)
    error = unreadable_as_nobody(log)
    assert error.code == "permission"
    assert error.reason.startswith(
        "permission denied (file mode 0600, owner root:root): the watcher runs as user nobody")
    assert "setfacl" in error.reason


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read as another user")
def test_it_names_the_directory_that_cannot_be_entered(open_dir: Path) -> None:
    private = open_dir / "private"
    private.mkdir(mode=0o700)
    append(private / "auth.log", "secret\n")
    error = unreadable_as_nobody(private / "auth.log")
    assert error.code == "permission"
    assert f"directory {private} (directory mode 0700, owner root:root) cannot be entered" in error.reason


def test_it_names_the_group_that_would_grant_reading(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("covered as root by the tests above; this one runs as a non-root user")
    log = tmp_path / "auth.log"
    append(log, "x\n")
    log.chmod(0o040)
    with pytest.raises(SourceUnavailable, match="permission denied"):
        read(log, None)


# --- speed ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_it_reads_a_million_lines_at_io_speed(tmp_path: Path) -> None:
    log = tmp_path / "million.log"
    line = b"Nov 22 03:04:05 host sshd[12345]: Failed password for invalid user admin from 192.0.2.7 port 2222 ssh2\n"
    with open(log, "wb") as handle:
        for _ in range(100):
            handle.write(line * 10_000)
    size = log.stat().st_size
    with open(log, "rb") as handle:  # warm the page cache, then time raw block reads of the same bytes
        started = time.perf_counter()
        while handle.read(8 << 20):
            pass
        raw = time.perf_counter() - started

    started = time.perf_counter()
    position = None
    count = calls = 0
    while True:
        result = read(log, position)
        if not result.lines:
            break
        count += len(result.lines)
        calls += 1
        position = result.position
    elapsed = time.perf_counter() - started
    assert count == 1_000_000
    print(f"\n1M lines ({size / 1e6:.0f} MB) in {calls} calls: {elapsed:.3f} s "
          f"({count / elapsed / 1e6:.2f} M lines/s); raw 8 MiB reads of the same file: {raw:.3f} s")


def test_it_keeps_the_file_mode_of_what_it_reads(tmp_path: Path) -> None:
    # reading never changes the file (no atime games, no writes)
    log = tmp_path / "auth.log"
    append(log, "a\n")
    log.chmod(0o640)
    before = log.stat()
    read(log, None)
    after = log.stat()
    assert (stat.S_IMODE(after.st_mode), after.st_size, after.st_mtime_ns) == (0o640, before.st_size,
                                                                             before.st_mtime_ns)


# --- stopping early (ReadResult.first) ---------------------------------------------------------------


def test_a_read_cut_after_some_lines_resumes_with_the_next_line(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "one\n" + "x" * 5000 + "\ntwo\nthree\nfour\n")
    whole = read(log, None, max_line_bytes=4096)
    assert whole.lines == ["one", "two", "three", "four"]
    cut = whole.first(2)
    assert (cut.lines, cut.long_lines, cut.more) == (["one", "two"], 1, True)
    assert read(log, cut.position, max_line_bytes=4096).lines == ["three", "four"]
    assert whole.first(0).position.offset == 0
    assert whole.first(4) is whole


def test_a_cut_across_a_rotation_resumes_in_the_right_file(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a0\n")
    position = read(log, None).position
    append(log, "old 1\nold 2\n")
    log.rename(tmp_path / "auth.log.1")
    append(log, "new 1\nnew 2\n")
    whole = read(log, position)
    assert whole.lines == ["old 1", "old 2", "new 1", "new 2"]
    for keep in range(4):
        first = whole.first(keep)
        rest, _, _ = read_until_quiet(log, first.position)
        assert first.lines + rest == whole.lines


def test_a_renamed_files_unfinished_last_line_is_read_with_the_lines_before_it(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "first line\n")
    position = read(log, None).position
    append(log, "second line\nthird unterminated")
    log.rename(tmp_path / "auth.log.1")
    append(log, "new file line\n")
    lines, _, _ = read_until_quiet(log, position)
    assert lines == ["second line", "third unterminated", "new file line"]


def test_a_read_that_reads_on_to_finish_a_line_leaves_the_next_lines_as_more(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "x" * 30 + "\nline2\nline3\n")
    first = read(log, None, max_bytes=10)
    assert (first.lines, first.more, first.position.offset) == (["x" * 30], True, 31)
    assert first.pending == 0
    assert read(log, first.position).lines == ["line2", "line3"]
