"""What /proc says about the processes a test started (children, titles, open files, memory)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent`, now."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):  # (a process that just ended)
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
    return found


def title(pid: int) -> str:
    """The command line as `ps` shows it (gunicorn and Celery set their own titles); "" once gone."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def holds_open(pid: int, path: str) -> bool:
    """Whether the process has the file at `path` open."""
    wanted = os.path.realpath(path)
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == wanted:
                return True
    return False


def shared_dirty_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Shared_Dirty:"):
            return int(line.split()[1])
    return 0
