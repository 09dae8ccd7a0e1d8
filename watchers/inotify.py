"""Knowing when a log changed: inotify through ctypes, or polling with stat().

Plain Python, no Django import, no dependency beyond the C library.

`DirectoryWatcher` watches the DIRECTORIES of the logs, not the files: a watch on a file follows
its inode, so it would go on reporting the renamed auth.log.1 and never see the new auth.log.
Watching the directory sees writes, creation, renames and deletion of the names that matter.
A path may end in a glob (`/var/log/nginx/*access.log`): files created later that match it are
reported as soon as they appear. A directory that does not exist yet is retried on every wait().

`wait(timeout)` returns the paths that changed, or an empty set when nothing did before the
timeout. Callers should read all their sources after an empty wait too: it is the safety net for
anything inotify cannot see (network file systems, a log renamed away that is still written to).

`events` narrows what is reported of a watched name (the journal's files: written, created, renamed
in; watchers.journal.CHANGE_EVENTS).

`make_watcher` maps fail2ban's backends: "auto" (inotify, else polling, with the reason kept in
`fallback_reason`), "inotify" / "pyinotify", "polling".
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import glob
import logging
import math
import os
import select
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# What makes a name in a watched directory worth reading again.
NAME_EVENTS = IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE | IN_ATTRIB
# What happens to the watched directory itself.
SELF_EVENTS = IN_DELETE_SELF | IN_MOVE_SELF
_EVENT_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
_READ_SIZE = 64 << 10

BACKENDS = ("auto", "inotify", "pyinotify", "polling")


class WatcherUnavailable(Exception):
    """inotify cannot be used here; `reason` says why and what to change."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Watcher(Protocol):
    backend: str
    fallback_reason: str | None

    def wait(self, timeout: float) -> set[str]: ...

    def set_paths(self, paths: Iterable[str]) -> None: ...

    def close(self) -> None: ...


def make_watcher(backend: str, paths: Iterable[str], *, poll_interval: float = 1.0) -> Watcher:
    """The watcher for a jail's `backend` (fail2ban's names; options in brackets are ignored)."""
    name = backend.strip().lower().partition("[")[0].strip()
    paths = list(paths)
    if name in ("inotify", "pyinotify"):
        return DirectoryWatcher(paths)
    if name == "polling":
        return PollingWatcher(paths, interval=poll_interval)
    if name == "auto":
        try:
            return DirectoryWatcher(paths)
        except WatcherUnavailable as exc:
            watcher = PollingWatcher(paths, interval=poll_interval)
            watcher.fallback_reason = f"inotify is unavailable ({exc.reason}); polling every {poll_interval:g} s"
            log.warning("backend auto: %s", watcher.fallback_reason)
            return watcher
    if name.startswith("systemd"):
        raise ValueError("backend systemd reads the journal (watchers.journal), not files")
    raise ValueError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")


# --- the C side --------------------------------------------------------------------------------


class _Libc:
    """inotify_init1, inotify_add_watch and inotify_rm_watch from the C library."""

    def __init__(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self.init1 = libc.inotify_init1
            self.add_watch = libc.inotify_add_watch
            self.rm_watch = libc.inotify_rm_watch
        except (OSError, AttributeError):
            raise WatcherUnavailable("this system's C library has no inotify (Linux only)") from None
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self.rm_watch.restype = ctypes.c_int


def _sysctl(name: str) -> str:
    try:
        with open(f"/proc/sys/fs/inotify/{name}") as handle:
            return handle.read().strip()
    except OSError:
        return "unknown"


def _init_error(code: int) -> WatcherUnavailable:
    if code == errno.EMFILE:
        return WatcherUnavailable(
            f"the per-user limit of inotify instances is reached (fs.inotify.max_user_instances = "
            f"{_sysctl('max_user_instances')}); raise it: sysctl -w fs.inotify.max_user_instances=1024")
    if code == errno.ENOSYS:
        return WatcherUnavailable("the kernel has no inotify support")
    return WatcherUnavailable(f"inotify_init1 failed: {os.strerror(code)}")


def _watch_limit_error() -> WatcherUnavailable:
    return WatcherUnavailable(
        f"the inotify watch limit is reached (fs.inotify.max_user_watches = {_sysctl('max_user_watches')}); "
        "raise it: sysctl -w fs.inotify.max_user_watches=524288")


# --- inotify ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Interest:
    """A name (or glob) in a watched directory, and the path to report when it changes."""

    name: str
    is_glob: bool
    report_as: str | None  # None: the changed file's own path (glob matches)

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.name) if self.is_glob else name == self.name

    def report(self, directory: str, name: str) -> str:
        return self.report_as or os.path.join(directory, name)


def _interests(paths: Iterable[str]) -> dict[str, set[_Interest]]:
    """Directory -> what to look for in it. A symlinked log is also watched in its target's
    directory: the writes happen there."""
    wanted: dict[str, set[_Interest]] = {}
    for raw in paths:
        path = os.path.abspath(raw)
        directory, name = os.path.split(path)
        name_is_glob = glob.has_magic(name)
        directories = glob.glob(directory) if glob.has_magic(directory) else [directory]
        for found in directories:
            report = None if name_is_glob else os.path.join(found, name)
            wanted.setdefault(found, set()).add(_Interest(name, name_is_glob, report))
            real = os.path.realpath(os.path.join(found, name))
            if not name_is_glob and real != os.path.join(found, name):
                real_dir, real_name = os.path.split(real)
                wanted.setdefault(real_dir, set()).add(_Interest(real_name, False, report))
    return wanted


class DirectoryWatcher:
    """inotify on the directories of the given paths."""

    backend = "inotify"
    fallback_reason: str | None = None

    def __init__(self, paths: Iterable[str], *, events: int = NAME_EVENTS) -> None:
        self._libc = _Libc()
        self._events = events  # what happens to a watched name that is worth reporting
        fd: int = self._libc.init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _init_error(ctypes.get_errno())
        self._fd: int = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self._wanted: dict[str, set[_Interest]] = {}
        # the kernel gives one watch per directory inode: two spellings of a directory (/var/run
        # and /run) share a descriptor
        self._wd_to_dirs: dict[int, set[str]] = {}
        self._dir_to_wd: dict[str, int] = {}
        try:
            self.set_paths(paths)
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        """The inotify descriptor, readable when something changed (for a caller's own select)."""
        return self._fd

    def set_paths(self, paths: Iterable[str]) -> None:
        """Watch these paths from now on (the caller re-expands its globs and calls this)."""
        self._wanted = _interests(paths)
        for directory in set(self._dir_to_wd) - set(self._wanted):
            self._unwatch(directory)
        # the caller reads every source it just named anyway: nothing to report yet
        self._watch_missing(report=False)

    def wait(self, timeout: float) -> set[str]:
        """Block until a watched path changes (within milliseconds) or `timeout` seconds pass."""
        changed = self._watch_missing()
        if changed:
            return changed | self._read_events()
        # poll() takes milliseconds; round up so a short timeout does not become a busy loop
        if self._poll.poll(max(0, math.ceil(timeout * 1000))):
            changed = self._read_events()
        return changed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> DirectoryWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- watches

    def _watch_missing(self, *, report: bool = True) -> set[str]:
        """Add the watches still missing (directories that did not exist, or were recreated). The
        logs already in a directory watched this late count as changed: they were not seen."""
        changed: set[str] = set()
        for directory in self._wanted:
            if directory in self._dir_to_wd:
                continue
            wd: int = self._libc.add_watch(self._fd, os.fsencode(directory), self._events | SELF_EVENTS | IN_ONLYDIR)
            if wd < 0:
                if ctypes.get_errno() == errno.ENOSPC:
                    raise _watch_limit_error()
                # ENOENT, ENOTDIR, EACCES: not there (or not ours) yet; the reader says why, retry later
                continue
            self._wd_to_dirs.setdefault(wd, set()).add(directory)
            self._dir_to_wd[directory] = wd
            if report:
                changed |= self._everything_in(directory)
        return changed

    def _unwatch(self, directory: str) -> None:
        wd = self._dir_to_wd.pop(directory, None)
        if wd is None:
            return
        sharing = self._wd_to_dirs.get(wd, set())
        sharing.discard(directory)
        if not sharing:
            self._wd_to_dirs.pop(wd, None)
            self._libc.rm_watch(self._fd, wd)

    def _everything_in(self, directory: str) -> set[str]:
        found: set[str] = set()
        for interest in self._wanted.get(directory, ()):
            if interest.is_glob:
                found.update(glob.glob(os.path.join(glob.escape(directory), interest.name)))
            else:
                found.add(interest.report(directory, interest.name))
        return found

    # --- events

    def _read_events(self) -> set[str]:
        changed: set[str] = set()
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                break
            changed |= self._parse(data)
        return changed

    def _parse(self, data: bytes) -> set[str]:
        changed: set[str] = set()
        offset = 0
        while offset + _EVENT_HEADER.size <= len(data):
            wd, mask, _cookie, length = _EVENT_HEADER.unpack_from(data, offset)
            offset += _EVENT_HEADER.size
            name = os.fsdecode(data[offset:offset + length].rstrip(b"\0"))
            offset += length
            changed |= self._on_event(wd, mask, name)
        return changed

    def _on_event(self, wd: int, mask: int, name: str) -> set[str]:
        if mask & IN_Q_OVERFLOW:
            # the kernel dropped events: anything may have changed
            return {path for directory in self._wanted for path in self._everything_in(directory)}
        changed: set[str] = set()
        for directory in list(self._wd_to_dirs.get(wd, ())):
            if mask & (SELF_EVENTS | IN_IGNORED):
                # the directory went away (or was renamed): report its logs, watch the path again later
                self._unwatch(directory)
                changed |= self._everything_in(directory)
            else:
                changed.update(interest.report(directory, name)
                               for interest in self._wanted.get(directory, ()) if interest.matches(name))
        return changed


# --- polling ------------------------------------------------------------------------------------------


def _signature(path: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class PollingWatcher:
    """stat() every `interval` seconds: what fail2ban's "polling" backend does, for file systems
    inotify cannot watch (NFS, some FUSE) and machines out of inotify watches."""

    backend = "polling"

    def __init__(self, paths: Iterable[str], *, interval: float = 1.0) -> None:
        if interval <= 0:
            raise ValueError("the polling interval must be positive")
        self.interval = interval
        self.fallback_reason: str | None = None
        self._patterns: list[str] = []
        self._seen: dict[str, tuple[int, ...] | None] = {}
        self.set_paths(paths)

    def set_paths(self, paths: Iterable[str]) -> None:
        self._patterns = [os.path.abspath(path) for path in paths]
        # paths watched before keep their last signature: a change not reported yet still will be
        fresh = self._snapshot()
        self._seen = {path: self._seen.get(path, sig) for path, sig in fresh.items()}

    def wait(self, timeout: float) -> set[str]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            changed = self._changes()
            remaining = deadline - time.monotonic()
            if changed or remaining <= 0:
                return changed
            time.sleep(min(self.interval, remaining))

    def close(self) -> None:
        self._seen = {}

    def __enter__(self) -> PollingWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _snapshot(self) -> dict[str, tuple[int, ...] | None]:
        paths: set[str] = set()
        for pattern in self._patterns:
            paths.update(glob.glob(pattern) if glob.has_magic(pattern) else [pattern])
        return {path: _signature(path) for path in paths}

    def _changes(self) -> set[str]:
        now = self._snapshot()
        before = self._seen
        self._seen = now
        return {path for path in now.keys() | before.keys() if now.get(path) != before.get(path)}
