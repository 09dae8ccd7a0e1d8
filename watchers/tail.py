"""Reading a log file from a saved position: complete lines, exactly once.

Plain Python, no Django import. The caller keeps the returned `FilePosition` (in
`watchers.models.LogSource`) and commits it in the same transaction as the failures found in
the lines, so a crash anywhere resumes exactly after the last committed line. Nothing here keeps
a file open between calls: every call finds its file again from the saved identity
(device, inode), size and head digest, which is what makes rotation, truncation and recreation
visible.

What an admin can expect, case by case:

- Only complete lines (ending in "\\n") are returned; an unfinished last line stays unread
  until its newline arrives.
- Renamed away (logrotate "create"): the old file is found again by its (device, inode) among
  the siblings of the path (auth.log.1, auth.log-20261122...; compressed ones are skipped), read
  to its end, then the new file is read from the start. While the new file is still empty the
  reader stays on the old one: until logrotate's postrotate reopens the log, the daemon still
  writes to the renamed file.
- copytruncate: same inode, size below the offset (or first line changed): the copy (a sibling
  that starts with the same first line and is at least as long as what was read) is read to its
  end, then the truncated file from the start. Lines written between the copy and the truncation
  are lost: that is copytruncate's own race, documented by logrotate.
- Deleted and recreated (even with the same inode number), or rewritten in place: the first line
  differs, the file is read from the start.
- Missing, unreadable, a directory: `SourceUnavailable`, with a reason an admin can act on.
- Bytes that are not valid in the log's encoding become U+FFFD (filters still match the rest of
  the line), "\\r\\n" loses its "\\r", NUL bytes become U+FFFD (PostgreSQL refuses NUL in text);
  the lines that needed it are counted (`ReadResult.replaced_lines`).
- A physical line is never split into two logical lines: a line longer than `max_line_bytes`
  (default 64 KiB) is skipped whole, up to its newline, and counted (`ReadResult.long_lines`),
  never matched. Text an attacker placed at a cut would otherwise be read as a line of its own.
  While such a line is still being written, the position says so (`FilePosition.skipping`) and
  the next read goes on discarding until its newline.

Not handled (documented limits): two rotations between two reads (only the file that carries the
saved inode, then the current one, are read; the one in between is skipped), and a file that is
truncated then grows past the saved offset with an identical first line.
"""

from __future__ import annotations

import codecs
import errno
import grp
import hashlib
import os
import pwd
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from jails.logpaths import COMPRESSED_SUFFIXES

# The head digest covers at most this much of the first line.
HEAD_BYTES = 4096
# Reading backwards for the last newline (start_at_end) goes by blocks of this size.
_BACKWARD_BLOCK = 64 << 10
# Longer lines are skipped whole (CrowdSec's default line buffer is 64 KiB too).
MAX_LINE_BYTES = 64 << 10


@dataclass(frozen=True)
class FilePosition:
    """How far a file was read, and which file that was."""

    device: int | None
    inode: int | None
    offset: int
    # sha256 hex of the file's first line (without its newline), at most HEAD_BYTES of it and only
    # the part already read (so it cannot change while the file merely grows)
    head_digest: str
    # the offset is inside a line longer than the limit: discard up to its newline first
    skipping: bool = False


@dataclass
class ReadResult:
    lines: list[str]
    position: FilePosition
    # what happened, for the source's log: "rotated: drained 1234 bytes from /var/log/auth.log.1"...
    events: list[str] = field(default_factory=list)
    # the read stopped at its budget with complete lines left unread: read again at once
    more: bool = False
    pending: int = 0  # bytes of an unfinished last line, left for when its newline comes
    long_lines: int = 0  # lines longer than max_line_bytes, skipped whole
    replaced_lines: int = 0  # lines with bytes invalid in the encoding (or NUL), read with U+FFFD
    # where the read would end had it kept only its first k lines (see `first`)
    cut: Callable[[int], tuple[FilePosition, int]] | None = field(default=None, repr=False, compare=False)

    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    def text(self) -> str:
        """The lines as one block, each followed by a newline (joined once, however many readers)."""
        if self._text is None:
            self._text = "\n".join(self.lines) + "\n" if self.lines else ""
        return self._text

    def first(self, count: int) -> ReadResult:
        """This read as if it had stopped after its first `count` lines: those lines and the position
        just after them, so that the next read starts with the line after them. A caller that must
        stop early (its time ran out) keeps the position exact this way."""
        if count >= len(self.lines):
            return self
        if self.cut is None:
            raise ValueError("this read cannot be cut")
        position, long_lines = self.cut(count)
        kept = self.lines[:count]
        return ReadResult(kept, position, self.events, more=True, long_lines=long_lines,
                          replaced_lines=sum(1 for line in kept if "\ufffd" in line) if self.replaced_lines else 0,
                          cut=self.cut)


class SourceUnavailable(Exception):
    """The source cannot be read now; `reason` says why in words an admin can act on.

    `code` is "missing" (may appear later: the source is waiting), "permission", "not-a-file",
    "bad-cursor" (journal) or "error"."""

    def __init__(self, reason: str, *, code: str = "error", path: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.path = path


def head_digest(head: bytes) -> str:
    """The digest stored in FilePosition.head_digest, for the bytes at the start of a file."""
    head = head[:HEAD_BYTES]
    newline = head.find(b"\n")
    return hashlib.sha256(head if newline < 0 else head[:newline]).hexdigest()


def read_new_lines(
    path: str,
    position: FilePosition | None,
    *,
    max_bytes: int = 8 << 20,
    start_at_end: bool = False,
    encoding: str = "utf-8",
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ReadResult:
    """The complete lines of `path` after `position`, and the position after them.

    At most `max_bytes` are read per call: a backlog is read over several calls, and the position
    is exact after each. With no saved position, reading starts at the beginning, or with
    `start_at_end` after the last complete line (a new jail need not read years of history).
    `encoding` is the jail's logencoding ("auto" means UTF-8). A line longer than `max_line_bytes`
    is skipped whole and counted, whatever `max_bytes` is (a read never ends inside a line it keeps).
    """
    if max_bytes < 1:
        raise ValueError("max_bytes must be at least 1")
    if max_line_bytes < 1:
        raise ValueError("max_line_bytes must be at least 1")
    reader = _Reader(_codec(encoding), max_bytes, max_line_bytes)
    try:
        return _read_new_lines(reader, path, position, start_at_end)
    except OSError as exc:  # EIO from a failing disk, ESTALE from NFS...: a reason, not a traceback
        name = errno.errorcode.get(exc.errno or 0, "error")
        raise SourceUnavailable(f"cannot read {path}: {exc.strerror} ({name})", code="error", path=path) from None


def _read_new_lines(reader: _Reader, path: str, position: FilePosition | None, start_at_end: bool) -> ReadResult:
    try:
        current = _open_log(path)
    except SourceUnavailable as exc:
        if exc.code == "missing" and position is not None:
            drained = reader.drain_while_missing(path, position)
            if drained is not None:
                return drained
        raise
    with current:
        if position is None:
            offset = _last_line_end(current) if start_at_end else 0
            result = reader.read(current, offset, reader.max_bytes)
            if offset:
                result.events.insert(0, f"started at the end: skipped {offset} bytes of history")
            return result
        change = _what_changed(current, position)
        if change is None:
            return reader.read(current, position.offset, reader.max_bytes, skipping=position.skipping)
        return reader.follow(path, current, position, change)


# --- files ------------------------------------------------------------------------------------


@dataclass
class _OpenFile:
    path: str
    fd: int
    st: os.stat_result
    _head: bytes | None = None

    def __enter__(self) -> _OpenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        os.close(self.fd)

    def head(self) -> bytes:
        """The file's first HEAD_BYTES (read once: positions are taken after the lines they follow)."""
        if self._head is None:
            self._head = os.pread(self.fd, HEAD_BYTES, 0)
        return self._head

    def position(self, offset: int, skipping: bool = False) -> FilePosition:
        return _position_in(self.st, self.head(), offset, skipping)


def _position_in(st: os.stat_result, head: bytes, offset: int, skipping: bool = False) -> FilePosition:
    return FilePosition(st.st_dev, st.st_ino, offset, head_digest(head[:min(offset, HEAD_BYTES)]), skipping)


def _open_log(path: str) -> _OpenFile:
    """Open `path` for reading, or say in words why it cannot be."""
    try:
        # O_NONBLOCK: opening a FIFO must not hang the watcher; regular files ignore it.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise _unavailable(path, exc) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else f"not a regular file ({_file_kind(st.st_mode)})"
        raise SourceUnavailable(f"{path} is {kind}, not a log file", code="not-a-file", path=path)
    return _OpenFile(path, fd, st)


def _try_open(path: str) -> _OpenFile | None:
    try:
        return _open_log(path)
    except SourceUnavailable:
        return None


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    """Read `size` bytes at `offset` in as few system calls as the kernel allows (one, usually)."""
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        part = os.pread(fd, size - got, offset + got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _digest_at(fd: int, offset: int) -> str:
    return head_digest(os.pread(fd, min(offset, HEAD_BYTES), 0)) if offset > 0 else head_digest(b"")


def _last_line_end(opened: _OpenFile) -> int:
    """The offset just after the last newline: where a reader that starts "at the end" begins, so
    a line still being written is read whole once it is finished."""
    end = opened.st.st_size
    while end > 0:
        start = max(0, end - _BACKWARD_BLOCK)
        newline = os.pread(opened.fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _siblings(path: str) -> Iterator[os.DirEntry[str]]:
    """Entries beside the log, where logrotate puts the old file: in the path's own directory and,
    for a symlinked log, in its target's directory."""
    directories = dict.fromkeys([os.path.dirname(os.path.abspath(path)), os.path.dirname(os.path.realpath(path))])
    for directory in directories:
        try:
            with os.scandir(directory) as entries:
                yield from [entry for entry in entries if not entry.name.lower().endswith(COMPRESSED_SUFFIXES)]
        except OSError:
            continue


def _find_renamed(path: str, position: FilePosition, exclude: tuple[int, int] | None) -> _OpenFile | None:
    """The file the saved position belongs to, renamed beside the log (found by its inode)."""
    for entry in _siblings(path):
        try:
            if entry.inode() != position.inode:
                continue
        except OSError:
            continue
        opened = _try_open(entry.path)
        if opened is None:
            continue
        st = opened.st
        same_device = position.device is None or st.st_dev == position.device
        # the inode number may have been given to an unrelated file since: the head must agree
        same_head = not position.head_digest or _digest_at(opened.fd, position.offset) == position.head_digest
        if same_device and same_head and (st.st_dev, st.st_ino) != exclude:
            return opened
        opened.close()
    return None


def _find_copy(path: str, position: FilePosition, exclude: tuple[int, int]) -> _OpenFile | None:
    """copytruncate's copy of the file: a sibling named after the log, starting with the same first
    line, at least as long as what was read. The newest such file wins."""
    if not position.head_digest:
        return None
    stem = os.path.splitext(os.path.basename(path))[0]
    best: _OpenFile | None = None
    for entry in _siblings(path):
        opened = _try_open(entry.path) if entry.name.startswith(stem) else None
        if opened is None:
            continue
        st = opened.st
        if (
            (st.st_dev, st.st_ino) != exclude
            and st.st_size >= position.offset
            and _digest_at(opened.fd, position.offset) == position.head_digest
            and (best is None or st.st_mtime_ns > best.st.st_mtime_ns)
        ):
            best, opened = opened, best
        if opened is not None:
            opened.close()
    return best


# --- what changed since the saved position -----------------------------------------------------


@dataclass(frozen=True)
class _Change:
    kind: str  # "rotated" (another file), "truncated", "rewritten"
    description: str


def _what_changed(current: _OpenFile, position: FilePosition) -> _Change | None:
    """None when `current` is the file the position was taken in, and it only grew."""
    st = current.st
    digest = _digest_at(current.fd, position.offset)
    if position.inode is not None and st.st_ino != position.inode:
        return _Change("rotated", f"rotated: {current.path} is a new file (inode {position.inode} -> {st.st_ino})")
    if position.device is not None and st.st_dev != position.device and digest != position.head_digest:
        # Same inode number on another device: a remount renumbers devices (then the head agrees),
        # or it is another file that happens to have that number.
        return _Change("rotated", f"rotated: {current.path} is a new file (on device {st.st_dev})")
    if st.st_size < position.offset:
        return _Change("truncated", f"truncated: {current.path} shrank to {st.st_size} bytes, below the "
                       f"{position.offset} already read; reading from the start")
    if position.offset > 0 and position.head_digest and digest != position.head_digest:
        return _Change("rewritten", f"recreated: {current.path} has another first line (deleted and recreated, "
                       "or rewritten in place); reading from the start")
    return None


# --- reading ------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    lines: list[str]
    end: int  # the offset after the last byte consumed
    consumed: int
    at_eof: bool  # read up to the size the file had
    pending: int  # bytes of an unfinished last line, left unread
    skipping: bool = False  # `end` is inside an overlong line: the next read discards up to its newline
    long_lines: int = 0
    replaced_lines: int = 0
    cut: Callable[[int], tuple[FilePosition, int]] | None = None  # ReadResult.cut, for this chunk's lines


@dataclass
class _Reader:
    codec: str
    max_bytes: int
    max_line_bytes: int = MAX_LINE_BYTES

    def chunk(self, opened: _OpenFile, offset: int, budget: int, *, flush_partial: bool = False,
              skipping: bool = False) -> _Chunk:
        """Up to `budget` bytes from `offset`, cut after the last complete line; overlong lines left out.

        `skipping`: `offset` is inside an overlong line, whose rest (up to its newline) is discarded.
        A read whose budget ends inside the first line reads on, up to the line limit, to find its
        end: a line is either kept whole or skipped whole, never cut. `flush_partial`: the file will
        not grow any more (renamed, and its successor is being written): its unfinished last line is
        a line."""
        limit = self.max_line_bytes
        size = os.fstat(opened.fd).st_size
        data = _pread_all(opened.fd, min(budget, max(size - offset, 0)), offset) if budget > 0 else b""
        at_eof = offset + len(data) >= size
        start = 0
        if skipping:
            newline = data.find(b"\n")
            if newline < 0:  # still inside it: everything read is part of it
                return _Chunk([], offset + len(data), len(data), at_eof, 0, skipping=True)
            start = newline + 1
        end = max(start, data.rfind(b"\n") + 1)  # after the last complete line
        if end == start and not at_eof and len(data) > start:
            # the budget ended inside the first line: read on to its end, or past the limit
            data = data[:start] + _pread_all(opened.fd, min(limit + 1, size - offset - start), offset + start)
            newline = data.find(b"\n", start)
            if newline >= 0:
                data = data[:newline + 1]  # that line only: what follows is the next read's
                end = len(data)
            at_eof = offset + len(data) >= size
        tail = len(data) - end  # an unfinished last line at the end of the file, or what the budget cut
        consumed, skipping_after, long_lines = end, False, 0
        if tail and at_eof and flush_partial:  # the last line of a file that will not grow
            if tail <= limit:
                end = consumed = len(data)  # whole
            else:
                consumed, long_lines = len(data), 1  # overlong, and no more of it will come
        elif tail > limit:  # an unfinished line that is overlong already: skipped, its rest later too
            consumed, skipping_after, long_lines = len(data), True, 1
        body = data[start:end]
        dropped = 0
        if len(body) > limit:
            body, dropped = _without_long_lines(body, limit)
        lines, replaced = _decode_lines(body, self.codec)
        pending = len(data) - consumed if at_eof else 0
        return _Chunk(lines, offset + consumed, consumed, at_eof, pending, skipping=skipping_after,
                      long_lines=long_lines + dropped, replaced_lines=replaced,
                      cut=_LineCut(opened.st, opened.head(), offset, data, start, limit))

    def read(self, opened: _OpenFile, offset: int, budget: int, events: list[str] | None = None, *,
             skipping: bool = False) -> ReadResult:
        chunk = self.chunk(opened, offset, budget, skipping=skipping)
        return _result(chunk, opened.position(chunk.end, chunk.skipping), list(events or []))

    def follow(self, path: str, current: _OpenFile, position: FilePosition, change: _Change) -> ReadResult:
        """Finish the file the position belongs to (renamed or copied beside the log), then start
        on the current one."""
        identity = (current.st.st_dev, current.st.st_ino)
        if change.kind == "rotated":
            previous = _find_renamed(path, position, identity)
        else:
            previous = _find_copy(path, position, identity)
        if previous is None:
            events = [change.description]
            if change.kind == "rotated":
                events = [change.description.replace("rotated:", "recreated:", 1) + "; the previous file is no "
                          "longer beside it (deleted, or compressed): lines written to it after the last read are lost"]
            return self.read(current, 0, self.max_bytes, events)
        with previous:
            # Until the daemon reopens its log (logrotate's postrotate), it writes to the renamed file.
            moving_on = current.st.st_size > 0
            chunk = self.chunk(previous, position.offset, self.max_bytes, flush_partial=moving_on,
                               skipping=position.skipping)
            events = [f"{change.kind}: drained {chunk.consumed} bytes from {previous.path}"] if chunk.consumed else []
            previous_end = previous.position(chunk.end, chunk.skipping)
            if not (chunk.at_eof and moving_on):
                return _result(chunk, previous_end, events)
        rest = self.read(current, 0, max(1, self.max_bytes - chunk.consumed))
        return ReadResult(chunk.lines + rest.lines, rest.position, [change.description, *events, *rest.events],
                          more=rest.more, pending=rest.pending, long_lines=chunk.long_lines + rest.long_lines,
                          replaced_lines=chunk.replaced_lines + rest.replaced_lines,
                          cut=_two_files(chunk, previous_end, rest))

    def drain_while_missing(self, path: str, position: FilePosition) -> ReadResult | None:
        """The log was renamed away and is not there again yet: its old file may hold unread lines."""
        previous = _find_renamed(path, position, None)
        if previous is None:
            return None
        with previous:
            chunk = self.chunk(previous, position.offset, self.max_bytes, skipping=position.skipping)
            if not chunk.consumed:
                return None
            events = [f"missing: {path} is not there (rotated?); drained {chunk.consumed} bytes from {previous.path}"]
            return _result(chunk, previous.position(chunk.end, chunk.skipping), events)


def _result(chunk: _Chunk, position: FilePosition, events: list[str]) -> ReadResult:
    return ReadResult(chunk.lines, position, events, more=not chunk.at_eof, pending=chunk.pending,
                      long_lines=chunk.long_lines,
                      replaced_lines=chunk.replaced_lines, cut=chunk.cut)


@dataclass(frozen=True)
class _LineCut:
    """Where a chunk's read ends if it keeps only its first k lines (ReadResult.first)."""

    st: os.stat_result
    head: bytes
    offset: int  # of data[0] in the file
    data: bytes
    start: int  # the first byte of the chunk's first line (after an overlong line's rest)
    limit: int

    def __call__(self, count: int) -> tuple[FilePosition, int]:
        """The position after the first `count` kept lines, and the overlong lines skipped before it."""
        pos, kept, long_lines = self.start, 0, 0
        while kept < count:
            newline = self.data.find(b"\n", pos)
            end = len(self.data) if newline < 0 else newline
            if end - pos > self.limit:
                long_lines += 1
            else:
                kept += 1
            pos = end + 1
        return _position_in(self.st, self.head, self.offset + min(pos, len(self.data))), long_lines


def _two_files(previous: _Chunk, previous_end: FilePosition,
               current: ReadResult) -> Callable[[int], tuple[FilePosition, int]] | None:
    """ReadResult.cut over a read that finished the previous file and started the current one."""
    if (previous.cut is None and previous.lines) or (current.cut is None and current.lines):
        return None
    count_before = len(previous.lines)

    def cut(count: int) -> tuple[FilePosition, int]:
        if count < count_before and previous.cut is not None:
            return previous.cut(count)
        if count == count_before or current.cut is None:
            return previous_end, previous.long_lines
        position, long_lines = current.cut(count - count_before)
        return position, previous.long_lines + long_lines

    return cut


def _without_long_lines(body: bytes, limit: int) -> tuple[bytes, int]:
    """`body` (lines, the last one with or without its newline) without the lines longer than
    `limit` bytes, and how many went."""
    lines = body.split(b"\n")
    if body.endswith(b"\n"):
        lines.pop()
    if max(map(len, lines)) <= limit:
        return body, 0
    kept = [line for line in lines if len(line) <= limit]
    return (b"\n".join(kept) + b"\n" if kept else b""), len(lines) - len(kept)


def _decode_lines(data: bytes, codec: str) -> tuple[list[str], int]:
    """Whole buffer at once: one decode and one split, however many lines; and how many lines
    needed a replacement character."""
    if not data:
        return [], 0
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    text = data.decode(codec, "replace")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    lines = text.split("\n")
    if data.endswith(b"\n"):
        lines.pop()
    replaced = sum(1 for line in lines if "\ufffd" in line) if "\ufffd" in text else 0
    return lines, replaced


def _codec(encoding: str) -> str:
    """The Python codec for a jail's logencoding; lines are split on the byte b"\\n", so encodings
    that spell "\\n" otherwise (UTF-16, UTF-32) are refused."""
    name = "utf-8" if encoding.strip().lower() in ("", "auto") else encoding.strip()
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown log encoding {encoding!r}") from None
    if "a\n".encode(info.name) != b"a\n":
        raise ValueError(f"log encoding {encoding!r} is not supported: lines must end with the byte 0x0a")
    if info.name in _LINE_UNSAFE or any(b"a\n".decode(info.name, "replace").count("\n") != 1 or
                                         probe.decode(info.name, "replace").count("\n") != probe.count(b"\n")
                                         for probe in _NEWLINE_PROBES):
        # a decoder with state or escapes (utf-7's "+AAo-", raw_unicode_escape's "\\u000a", hz's
        # "~\n") makes or swallows newlines: text an attacker wrote would become lines of its own
        raise ValueError(f"log encoding {encoding!r} is not supported: it can turn bytes other than 0x0a into "
                         "line ends, or hide one; use a byte-per-newline encoding (UTF-8, Latin-1, a code page)")
    return info.name


# Codecs that carry state or escapes across bytes (checked by name: the probes below cannot show
# every way), and byte strings on which a safe decoder gives exactly one line end per 0x0a.
_LINE_UNSAFE = frozenset({"utf-7", "hz", "iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_2004",
                          "iso2022_jp_3", "iso2022_jp_ext", "iso2022_kr", "unicode_escape", "raw_unicode_escape",
                          "punycode", "idna"})
_NEWLINE_PROBES = (b"+AAo-x\n", b"\\u000a\\n\n", b"~\nx\n", b"\x1b$B\nx\n", b"\xff\n\xfe\n")


# --- reasons an admin can act on ----------------------------------------------------------------


def _unavailable(path: str, exc: OSError) -> SourceUnavailable:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        parent = os.path.dirname(os.path.abspath(path))
        where = "" if os.path.isdir(parent) else f" (nor does its directory {parent})"
        return SourceUnavailable(f"missing: {path} does not exist yet{where}", code="missing", path=path)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return SourceUnavailable(_permission_reason(path), code="permission", path=path)
    if exc.errno == errno.ELOOP:
        return SourceUnavailable(f"{path} is a symlink loop", code="error", path=path)
    name = errno.errorcode.get(exc.errno or 0, "error")
    return SourceUnavailable(f"cannot open {path}: {exc.strerror} ({name})", code="error", path=path)


def _permission_reason(path: str) -> str:
    who = _process_identity()
    blocked = _first_closed_directory(path)
    if blocked is not None:
        return (f"permission denied: directory {blocked} ({_mode_and_owner(blocked)}) cannot be entered; "
                f"the watcher runs as {who}")
    try:
        st = os.stat(path)
    except OSError:
        return f"permission denied: {path}; the watcher runs as {who}"
    reason = f"permission denied ({_mode_and_owner(path)}): the watcher runs as {who}"
    group = _group_name(st.st_gid)
    if _mode_allows_read(st):
        return reason + "; the mode allows reading, so a security module (AppArmor, SELinux) or an ACL refuses"
    if st.st_mode & stat.S_IRGRP:
        return reason + f"; add it to group {group}, or grant it with an ACL (setfacl -m u:USER:r {path})"
    return reason + f"; grant it with an ACL (setfacl -m u:USER:r {path}) or make the file group-readable"


def _first_closed_directory(path: str) -> str | None:
    """The first directory on the way to `path` the watcher may not enter (no search permission)."""
    directory = os.path.dirname(os.path.abspath(path))
    parts = directory.split(os.sep)
    for depth in range(2, len(parts) + 1):
        candidate = os.sep.join(parts[:depth]) or os.sep
        if os.path.isdir(candidate) and not os.access(candidate, os.X_OK, effective_ids=True):
            return candidate
    return None


def _mode_allows_read(st: os.stat_result) -> bool:
    if st.st_uid == os.geteuid():
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def _mode_and_owner(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "mode unknown"
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
    return f"{kind} mode {stat.S_IMODE(st.st_mode):04o}, owner {_user_name(st.st_uid)}:{_group_name(st.st_gid)}"


def _process_identity() -> str:
    groups = ", ".join(_group_name(gid) for gid in sorted({os.getegid(), *os.getgroups()}))
    return f"user {_user_name(os.geteuid())} (groups: {groups})"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device"}
    return next((name for test, name in kinds.items() if test(mode)), "a special file")
