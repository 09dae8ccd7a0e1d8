"""Reading the systemd journal through `journalctl`, from a saved cursor.

Plain Python, no Django import, no python-systemd: `journalctl --output=json` is run with an
argument list (never a shell), its entries are parsed, and the cursor of the last entry returned
is the position to commit with the failures found in them.

Why not `--show-cursor` and `--lines`: with systemd 252 (Debian 12), `--show-cursor` makes
journalctl exit with status 1, silently, when no entry matches, and `--lines=N` keeps the NEWEST N
entries (the oldest-first `--lines=+N` came in systemd 254). Every JSON entry carries its own
`__CURSOR`, so reading stops after `max_entries` entries and the cursor of the last one read is
exact, whatever the version.

Matches use fail2ban's `journalmatch` syntax: each line is split like a shell would (quotes
allowed), `+` separates alternatives (OR), and the terms of one alternative must all hold (AND;
two terms on the same field are alternatives, as in the journal's own matching). Lines are
alternatives too, as in fail2ban.

Knowing when there is something new (`watch_paths`, `CHANGE_EVENTS`): journald writes its files
through mmap, which inotify does not see, so after a change it truncates the file to its own size,
which does make an IN_MODIFY; it does that from a timer, 250-500 ms after the change (systemd 252
measured here: 430-450 ms), however many entries came meanwhile. It rotates a file by renaming it
(IN_MOVED_TO) and creating the next (IN_CREATE). fail2ban's systemd backend waits for the same
events (sd_journal_wait is inotify on these files).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from typing import IO, Any

from watchers.inotify import IN_CREATE, IN_MODIFY, IN_MOVED_TO
from watchers.tail import SourceUnavailable

JOURNAL_DIRECTORIES = ("/var/log/journal", "/run/log/journal")
CHANGE_EVENTS = IN_MODIFY | IN_CREATE | IN_MOVED_TO  # written, started, rotated (see the module's docstring)
# sd_journal_add_match's rule: capitals, digits and underscores, not starting with a digit
_FIELD_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_CURSOR_PREFIX = b"-- cursor: "

FieldValue = str | list[str]


class JournalMatchError(ValueError):
    """A journalmatch that journalctl would refuse, said before running it."""


@dataclass(frozen=True)
class JournalEntry:
    message: str  # MESSAGE, as text
    time: float  # when the message was logged (epoch seconds)
    fields: dict[str, FieldValue]  # every field of the entry, binary values decoded as text

    @property
    def cursor(self) -> str:
        value = self.fields.get("__CURSOR", "")
        return value if isinstance(value, str) else value[0]

    @property
    def line(self) -> str:
        """The entry as fail2ban's systemd backend hands it to filters: "HOST IDENT[PID]: MESSAGE",
        newlines written as "\\n". Filters written for journal jails expect this prefix."""
        parts = [host] if (host := self._first("_HOSTNAME")) else []
        ident = self._first("SYSLOG_IDENTIFIER") or self._first("_COMM")
        if ident:
            pid = self._first("SYSLOG_PID") or self._first("_PID")
            tag = f"{ident}{_bracketed_pid(pid) if pid else ''}:"
            parts.append(tag)
            if tag == "kernel:":
                monotonic = self._first("_SOURCE_MONOTONIC_TIMESTAMP") or self._first("__MONOTONIC_TIMESTAMP")
                parts.append(f"[{int(monotonic or 0) / 1e6:12.6f}]")
        parts.append(self.message)
        return " ".join(parts).replace("\n", "\\n")

    def _first(self, name: str) -> str:
        value = self.fields.get(name, "")
        return value if isinstance(value, str) else (value[0] if value else "")


@dataclass
class JournalResult:
    entries: list[JournalEntry]
    cursor: str | None  # after the last entry returned; the cursor passed in when none was


def read_journal(
    matches: str,
    cursor: str | None,
    *,
    max_entries: int,
    since_seconds: int | None,
    executable: str = "journalctl",
    timeout: float = 60.0,
) -> JournalResult:
    """The entries after `cursor` (at most `max_entries`, oldest first) and the cursor after them.

    Without a cursor, reading starts `since_seconds` ago (a jail's findtime), or at the oldest
    entry when that is None too. Raises SourceUnavailable when journalctl or the journal is
    missing, may not be read, or refuses the cursor (code "bad-cursor": start again without it).
    """
    if max_entries < 1:
        raise ValueError("max_entries must be at least 1")
    argv = journalctl_command(matches, cursor, since_seconds=since_seconds, executable=executable)
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty stderr cannot block us
        run = _Run(argv, errors, timeout)
        entries, complete = run.entries(max_entries)
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    _raise_for_stderr(stderr, run.returncode if complete else 0, cursor, executable)
    if run.timed_out and not entries:
        raise SourceUnavailable(f"journalctl gave no entry within {timeout:g} s", code="error")
    if not entries and not _journal_present():
        raise SourceUnavailable(
            "missing: no systemd journal on this machine (no journal files under "
            f"{' or '.join(JOURNAL_DIRECTORIES)}); is systemd-journald running?", code="missing")
    return JournalResult(entries, entries[-1].cursor if entries else cursor)


def journalctl_command(
    matches: str, cursor: str | None, *, since_seconds: int | None, executable: str = "journalctl"
) -> list[str]:
    """journalctl's argument list (no shell ever sees it)."""
    argv = [executable, "--no-pager", "--output=json", "--all"]  # --all: long fields, not null
    if cursor:
        argv.append(f"--after-cursor={cursor}")
    elif since_seconds is not None:  # journalctl refuses --since with --after-cursor
        argv.append(f"--since=-{max(0, int(since_seconds))}s")
    groups = parse_journalmatch(matches)
    if groups:
        argv.append("--")  # what follows is matches, never options
        for number, group in enumerate(groups):
            argv += ["+", *group] if number else group
    return argv


def parse_journalmatch(text: str) -> list[list[str]]:
    """fail2ban's journalmatch -> alternatives, each a list of FIELD=value terms."""
    groups: list[list[str]] = []
    for line in text.splitlines():
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            raise JournalMatchError(f"journalmatch {line.strip()!r}: {exc}") from None
        group: list[str] = []
        for term in [*tokens, "+"]:
            if term != "+":
                group.append(_checked_term(term))
            elif group:  # an empty alternative ("A=x +") is harmless in fail2ban: dropped
                groups.append(group)
                group = []
    return groups


def parse_entry(raw: bytes | str) -> JournalEntry:
    """One line of `journalctl --output=json`."""
    data: dict[str, Any] = json.loads(raw)
    fields = {name: _field_value(value) for name, value in data.items()}
    message = _message_text(data.get("MESSAGE"))
    stamp = fields.get("_SOURCE_REALTIME_TIMESTAMP") or fields.get("__REALTIME_TIMESTAMP") or "0"
    microseconds = stamp if isinstance(stamp, str) else stamp[0]
    return JournalEntry(message, int(microseconds) / 1e6, fields)


def watch_paths(directories: tuple[str, ...] | None = None) -> list[str]:
    """What to watch to know the journal changed: every name in each journal directory (journald
    starting creates its machine-id subdirectory), and the journal files in those subdirectories.
    Subdirectories that appear later are in the next call's answer."""
    paths: list[str] = []
    for directory in JOURNAL_DIRECTORIES if directories is None else directories:
        paths.append(os.path.join(directory, "*"))
        try:
            with os.scandir(directory) as entries:
                subdirectories = sorted(entry.path for entry in entries if entry.is_dir())
        except OSError:  # not there yet (watched all the same: inotify retries it), or not ours to list
            subdirectories = []
        for subdirectory in subdirectories:
            paths += [os.path.join(subdirectory, "*.journal"), os.path.join(subdirectory, "*.journal~")]
    return paths


# --- running journalctl ---------------------------------------------------------------------------


class _Run:
    """journalctl, read entry by entry, stopped once enough were read or the time is up."""

    def __init__(self, argv: list[str], errors: IO[bytes], timeout: float) -> None:
        try:
            # S603: journalctl_command()'s argv (journalctl, options, then "--" and checked matches); no shell
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,  # noqa: S603
                                            stdout=subprocess.PIPE, stderr=errors)
        except FileNotFoundError:
            raise SourceUnavailable(f"missing: {argv[0]} is not installed (it comes with systemd)",
                                    code="missing") from None
        except PermissionError:
            raise SourceUnavailable(f"permission denied: the watcher may not run {argv[0]}",
                                    code="permission") from None
        self.timed_out = False
        self.returncode = 0
        self._timer = threading.Timer(timeout, self._time_up)

    def _time_up(self) -> None:
        self.timed_out = True
        self.process.kill()

    def entries(self, limit: int) -> tuple[list[JournalEntry], bool]:
        """Up to `limit` entries; True as second value when journalctl ran to its end (its exit
        status then means something)."""
        entries: list[JournalEntry] = []
        stdout = self.process.stdout
        assert stdout is not None  # noqa: S101  # type narrowing: started with stdout=PIPE
        self._timer.start()
        try:
            for raw in stdout:
                if raw.startswith(_CURSOR_PREFIX) or not raw.strip():
                    continue
                try:
                    entries.append(parse_entry(raw))
                except (ValueError, TypeError) as exc:
                    if self.timed_out:  # killed in the middle of a line
                        break
                    raise SourceUnavailable(f"journalctl printed something that is not a JSON entry: "
                                            f"{raw[:200]!r} ({exc})", code="error") from None
                if len(entries) >= limit:
                    break
        finally:
            complete = len(entries) < limit and not self.timed_out
            if not complete:
                self.process.kill()
            stdout.close()
            self.returncode = self.process.wait()
            self._timer.cancel()
        return entries, complete


def _raise_for_stderr(stderr: str, returncode: int, cursor: str | None, executable: str) -> None:
    if "insufficient permissions" in stderr or "not seeing messages from other users" in stderr:
        user = _user_name()
        raise SourceUnavailable(
            f"permission denied: the watcher runs as user {user}, which may not read the system journal; "
            f"add it to group systemd-journal (usermod -aG systemd-journal {user})", code="permission")
    if returncode == 0:
        return
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
    if "cursor" in stderr.lower() and cursor:
        raise SourceUnavailable(f"the saved journal cursor is not valid ({last}); read again without it",
                                code="bad-cursor")
    raise SourceUnavailable(f"{executable} failed (exit status {returncode}): {last}", code="error")


def _journal_present() -> bool:
    """Are there journal files at all? In JSON mode journalctl does not say when there are none."""
    for directory in JOURNAL_DIRECTORIES:
        try:
            with os.scandir(directory) as entries:
                places = [directory] + [entry.path for entry in entries if entry.is_dir()]
        except FileNotFoundError:
            continue
        except OSError:
            return True  # not ours to list: journalctl has said what it could not read
        for place in places:
            try:
                if any(name.endswith((".journal", ".journal~")) for name in os.listdir(place)):
                    return True
            except OSError:
                return True
    return False


# --- values ---------------------------------------------------------------------------------------------


def _checked_term(token: str) -> str:
    name, equals, _ = token.partition("=")
    if not equals or not _FIELD_NAME.fullmatch(name):
        raise JournalMatchError(
            f"journalmatch term {token!r} is not FIELD=value with FIELD in capitals "
            "(e.g. _SYSTEMD_UNIT=sshd.service)")
    return token


def _field_value(value: Any) -> FieldValue:
    """journalctl's JSON: a string; an array of bytes (binary or invalid UTF-8); an array of
    those for a field set more than once; null for a value it would not print."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _no_nul(value)
    if isinstance(value, list) and all(isinstance(item, int) for item in value):
        return _no_nul(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, list):
        return [text if isinstance(text := _field_value(item), str) else " ".join(text) for item in value]
    return _no_nul(str(value))


def _message_text(value: Any) -> str:
    text = _field_value(value)
    return text if isinstance(text, str) else " ".join(text)  # fail2ban joins a repeated MESSAGE


def _no_nul(text: str) -> str:
    # as for files: NUL has no place in a log line (and PostgreSQL refuses it in text)
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _bracketed_pid(pid: str) -> str:
    try:
        return f"[{int(pid, 0)}]"  # fail2ban's "[%i]" % int(v, 0)
    except ValueError:
        return f"[{pid}]"


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
