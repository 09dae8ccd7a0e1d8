"""Child processes for tests and benchmarks: the product's processes as children (their output kept,
stopped as a group), and a way for the firewall worker (inside the server namespace) to reach Redis
(on the host's loopback).

A process started with `ip netns exec` has the namespace's own loopback: 127.0.0.1:6379 there is
not the host's Redis. Unix sockets are not tied to a network namespace, so `RedisBridge` listens on
one (in a short /tmp directory) and forwards each connection to Redis on the host's loopback; the
firewall worker gets `redis+socket://<path>?virtual_host=<db>`, the same Redis database as the
others. No interface, route or firewall rule of the host is involved.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds have passed (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@dataclass
class Child:
    """A product process started by the test, in its own session (so its pool children go with it)."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path) -> Child:
        log = log_dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(list(argv), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        return cls(name, list(argv), log, process)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def digest(self, problems: int = 20, lines: int = 30) -> str:
        """The last warnings and errors (a busy worker's tail is all "task received"), then the tail."""
        text = self.output().splitlines()
        found = [line for line in text if any(word in line for word in ("WARNING", "ERROR", "CRITICAL", "Traceback"))]
        return "\n".join(["-- warnings and errors:", *found[-problems:], f"-- last {lines} lines:", *text[-lines:]])

    def alive(self) -> bool:
        return self.process.poll() is None


def stop_children(children: Sequence[Child], grace: float = 10.0) -> None:
    """SIGTERM to each child's process group, then SIGKILL to the groups still there after `grace`,
    and to every process that was below a child (a stack's workers run in sessions of their own: none
    may outlive the run, holding a database or a queue).

    Signals go to the group only while its leader is not reaped yet, so the group id cannot have been
    reused by anything else."""
    below = [pid for child in children if child.alive() for pid in descendants(child.process.pid)]
    for child in children:
        if child.alive():
            _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.process.wait(timeout=10)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` now, children first (read from /proc)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):  # a process that just ended
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                        found.append(int(entry.name))
                        todo.append(int(entry.name))
    return found


def _signal_group(child: Child, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, signum)


class RedisBridge:
    """A unix socket at `path` whose every connection is forwarded to `target` (Redis, host loopback)."""

    def __init__(self, path: str, target: tuple[str, int]) -> None:
        self.path = path
        self.target = target
        self.connections = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(64)
        self._thread = threading.Thread(target=self._accept, name="redis-bridge", daemon=True)
        self._thread.start()

    def url(self, db: int) -> str:
        return f"redis+socket://{self.path}?virtual_host={db}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
                self.connections += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):  # the other direction ends too
                _shutdown(sock)

    def close(self) -> None:
        _shutdown(self._listener)  # wakes the thread blocked in accept() (Linux)
        self._listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            _shutdown(sock)
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


@contextlib.contextmanager
def bridged_redis(address: tuple[str, int], prefix: str) -> Iterator[RedisBridge]:
    """A RedisBridge to `address` on a socket in a new temporary directory, removed afterwards."""
    directory = tempfile.mkdtemp(prefix=prefix)  # short: a unix socket path has at most 107 bytes
    bridge = RedisBridge(os.path.join(directory, "redis.sock"), address)
    try:
        yield bridge
    finally:
        bridge.close()
        os.rmdir(directory)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
