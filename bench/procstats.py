"""What a set of processes costs: CPU time and memory (PSS) read from /proc, for the benchmarks.

`StackMeter` follows the process trees of a stack (the product's or fail2ban's) plus processes
outside them (Redis, PostgreSQL backends), sampling the peak PSS in a thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float | None:
    """utime+stime+cutime+cstime: a reaped child's time moves into its parent's, so the sum over a
    tree's live processes only grows, whatever exits in between."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return sum(int(v) for v in fields[11:15]) / TICK


def proc_pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80].strip()
    except OSError:
        return "?"


def children_map() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        found.setdefault(ppid, []).append(int(entry.name))
    return found


def tree(roots: Sequence[int]) -> list[int]:
    kids, seen, todo = children_map(), [], list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen and Path(f"/proc/{pid}").exists():
            seen.append(pid)
            todo.extend(kids.get(pid, ()))
    return seen


def redis_server_pids() -> list[int]:
    """The Redis serving 127.0.0.1:6379 (our broker; other users of it add to its figures)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "redis-server":
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


class StackMeter:
    """The processes of one stack: the trees under `roots`, plus `extras()` outside them (Redis,
    PostgreSQL backends), whose last CPU reading is kept when they exit (their parent is not ours).
    A thread samples every 0.5 s for the peak PSS and the short-lived extras."""

    def __init__(self, roots: Callable[[], Sequence[int]], extras: Callable[[], dict[str, list[int]]]) -> None:
        self.roots, self.extras = roots, extras
        self.extra_cpu: dict[int, tuple[str, float]] = {}
        self.peak_pss_kb = 0
        self.peak_parts_kb: dict[str, int] = {}  # the parts (stack, redis, postgres) at that peak
        self.peak_processes_kb: list[tuple[str, int]] = []  # the stack's largest processes at that peak
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="stack-meter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            pss = self.pss()
            with self._lock:
                if pss["total_kb"] > self.peak_pss_kb:
                    self.peak_pss_kb, self.peak_parts_kb = pss["total_kb"], pss
                    self.peak_processes_kb = self.largest_processes()

    def cpu(self) -> dict[str, float]:
        parts = {"stack": sum(proc_cpu(pid) or 0.0 for pid in tree(self.roots()))}
        with self._lock:
            for part, pids in self.extras().items():
                for pid in pids:
                    value = proc_cpu(pid)
                    if value is not None:
                        self.extra_cpu[pid] = (part, value)
            for part, value in self.extra_cpu.values():
                parts[part] = parts.get(part, 0.0) + value
        parts["total"] = sum(parts.values())
        return parts

    def pss(self) -> dict[str, int]:
        parts = {"stack_kb": sum(proc_pss_kb(pid) for pid in tree(self.roots()))}
        for part, pids in self.extras().items():
            parts[f"{part}_kb"] = sum(proc_pss_kb(pid) for pid in pids)
        parts["total_kb"] = sum(parts.values())
        return parts

    def largest_processes(self, keep: int = 8) -> list[tuple[str, int]]:
        """The stack's processes by PSS, largest first, named as `ps` shows them."""
        sized = [(process_title(pid), proc_pss_kb(pid)) for pid in tree(self.roots())]
        return sorted(sized, key=lambda item: -item[1])[:keep]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def cpu_delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(after.get(k, 0.0) - before.get(k, 0.0), 2) for k in after}
