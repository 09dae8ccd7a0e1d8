"""Network namespaces for the firewall tests, and the driver that runs inside them.

The host's own nftables ruleset is never touched: the backend under test runs in a child process
started with `ip netns exec <server namespace>`, so every netlink socket it opens belongs to that
namespace from the start (nothing to switch, nothing to forget to switch back). As a second guard,
the driver compares its network namespace with the host's (passed by the test) and refuses to
start in the host's.

A test talks to a driver through JSON lines on its stdin/stdout:

    python -m tests.bans.netns serve <host netns inode>

    {"op": "listen", "ports": [22, 8080]}                  TCP servers on [::] (IPv4 too)
    {"op": "probe", "host": "10.201.0.1", "port": 22, "timeout": 0.5}  -> "open" | "refused" | "timeout"
    {"op": "firewall", "method": "apply", "args": {...}}   a NftablesBackend method, JSON in and out
    {"op": "firewall", "method": "set_contents", "args": {"entries": [...]}}   what a flushed table gets back
    {"op": "firewall", "method": "generation" | "commits" | "helper_pid", "args": {}}
    {"op": "lock", "table": "ips", "seconds": 3}          hold the backend's lock file for a while
    (a "timeout" key on a firewall request sets the backend's step timeout when it is created)
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bans.firewall import BanEntry, FirewallError, JailRules, NftablesBackend, ReconcileResult
from scripts.harness import netns
from scripts.harness.netns import (
    ATTACKER_V4,
    ATTACKER_V6,
    SERVER_V4,
    SERVER_V6,
    host_netns_inode,
    netns_unusable,
)

# What the tests import from here (the harness's addresses and netns_unusable re-exported).
__all__ = [
    "ATTACKER_V4",
    "ATTACKER_V6",
    "PYTHON",
    "ROOT",
    "SERVER_V4",
    "SERVER_V6",
    "Driver",
    "DriverError",
    "NamespacePair",
    "RemoteFirewall",
    "decode_entry",
    "encode_entry",
    "netns_unusable",
    "serve",
]

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
CALL_TIMEOUT = 60.0


@dataclass
class NamespacePair(netns.NamespacePair):
    """The harness's pair, plus firewall drivers inside it (closed before the namespaces go)."""

    drivers: list[Driver] = field(default_factory=list)

    def driver(self, namespace: str, prefix: Sequence[str] = ()) -> Driver:
        """A driver process in `namespace`; `prefix` wraps the Python command (e.g. setpriv)."""
        driver = Driver.start(namespace, prefix)
        self.drivers.append(driver)
        return driver

    def destroy(self) -> None:
        for driver in self.drivers:
            driver.close()
        super().destroy()


class DriverError(Exception):
    pass


class Driver:
    """The test's end of a driver process."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    @classmethod
    def start(cls, namespace: str, prefix: Sequence[str] = ()) -> Driver:
        command = ["ip", "netns", "exec", namespace, *prefix, str(PYTHON), "-m", "tests.bans.netns", "serve",
                   str(host_netns_inode())]
        process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, bufsize=1)
        driver = cls(process)
        driver.call(op="ping")
        return driver

    def call(self, **request: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], CALL_TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise DriverError(f"driver gave no answer to {request.get('op')}: {stderr.strip()[-2000:]}")
        answer = json.loads(line)
        if "firewall_error" in answer:
            raise FirewallError(answer["firewall_error"], permanent=answer["permanent"],
                                entries=[decode_entry(item) for item in answer["entries"]])
        if "error" in answer:
            raise DriverError(answer["error"])
        return answer["result"]

    def close(self) -> None:
        if self.process.poll() is None:
            if self.process.stdin:
                self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


class RemoteFirewall:
    """A FirewallBackend whose NftablesBackend lives in a driver (in the server namespace).

    `contents` is sent to the driver before each call that may create sets (a static list there)."""

    def __init__(self, driver: Driver, table: str = "ips", timeout: float | None = None) -> None:
        self.driver = driver
        self.table = table
        self.timeout = timeout
        self.contents: Any = None

    def _call(self, method: str, **args: Any) -> Any:
        if self.contents is not None and method in ("sync_rules", "apply", "reconcile"):
            self.driver.call(op="firewall", table=self.table, method="set_contents", timeout=self.timeout,
                             args={"entries": [encode_entry(entry) for entry in self.contents()]})
        return self.driver.call(op="firewall", table=self.table, method=method, args=args, timeout=self.timeout)

    def generation(self) -> int:
        return int(self._call("generation"))

    @property
    def commits(self) -> int:
        return int(self._call("commits"))

    def helper_pid(self) -> int | None:
        pid = self._call("helper_pid")
        return None if pid is None else int(pid)

    def sync_rules(self, jails: Sequence[JailRules]) -> None:
        self._call("sync_rules", jails=[vars(jail) for jail in jails])

    def apply(self, add: Sequence[BanEntry] = (), remove: Sequence[BanEntry] = ()) -> None:
        self._call("apply", add=[encode_entry(entry) for entry in add],
                   remove=[encode_entry(entry) for entry in remove])

    def snapshot(self) -> dict[str, dict[Any, int | None]]:
        raw = self._call("snapshot")
        return {jail: {ipaddress.ip_network(net): left for net, left in elements.items()}
                for jail, elements in raw.items()}

    def reconcile(self, desired: Sequence[BanEntry]) -> ReconcileResult:
        raw = self._call("reconcile", desired=[encode_entry(entry) for entry in desired])
        return ReconcileResult(added=tuple(decode_entry(item) for item in raw["added"]),
                               removed=tuple(decode_entry(item) for item in raw["removed"]),
                               refreshed=tuple(decode_entry(item) for item in raw["refreshed"]),
                               skipped=tuple((decode_entry(item), why) for item, why in raw["skipped"]))

    def teardown(self) -> None:
        self._call("teardown")

    def timed(self, method: str, **args: Any) -> float:
        """Seconds the driver spent in one backend call (measured inside the namespace)."""
        return float(self.driver.call(op="timed", table=self.table, method=method, args=args))


def encode_entry(entry: BanEntry) -> dict[str, Any]:
    return {"jail": entry.jail, "network": str(entry.network), "timeout": entry.timeout}


def decode_entry(item: dict[str, Any]) -> BanEntry:
    return BanEntry(item["jail"], ipaddress.ip_network(item["network"]), item["timeout"])


# -- the driver side --------------------------------------------------------------------------


class _Serving:
    def __init__(self, lock_dir: str) -> None:
        self.lock_dir = lock_dir
        self.backends: dict[str, NftablesBackend] = {}
        self.listeners: list[socket.socket] = []
        self.holders: list[subprocess.Popen[str]] = []

    def handle(self, request: dict[str, Any]) -> Any:
        op = request["op"]
        if op == "ping":
            return "pong"
        if op == "listen":
            for port in request["ports"]:
                self.listen(port)
            return None
        if op == "probe":
            return probe(request["host"], request["port"], request["timeout"])
        if op in ("firewall", "timed"):
            started = time.perf_counter()
            result = self.firewall(request["table"], request["method"], request["args"], request.get("timeout"))
            return time.perf_counter() - started if op == "timed" else result
        if op == "lock":
            return self.hold_lock(request["table"], request["seconds"])
        raise ValueError(f"unknown op {op!r}")

    def lock_path(self, table: str) -> str:
        return os.path.join(self.lock_dir, f"{table}.lock")

    def hold_lock(self, table: str, seconds: float) -> None:
        """Hold the table's lock file from another process (a stuck firewall worker) for `seconds`."""
        holder = subprocess.Popen([sys.executable, "-c", (
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True)\n"
            "time.sleep(float(sys.argv[2]))"), self.lock_path(table), str(seconds)], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        self.holders.append(holder)

    def firewall(self, table: str, method: str, args: dict[str, Any], timeout: float | None = None) -> Any:
        if table not in self.backends:
            options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
            self.backends[table] = NftablesBackend(table, lock_path=self.lock_path(table), **options)
        backend = self.backends[table]
        if method == "set_contents":
            entries = [decode_entry(item) for item in args["entries"]]
            backend.contents = lambda: entries
            return None
        if method == "generation":
            return backend.generation()
        if method == "commits":
            return backend.commits
        if method == "helper_pid":
            return backend._nft.pid
        if method == "sync_rules":
            return backend.sync_rules([JailRules(**jail) for jail in args["jails"]])
        if method == "apply":
            return backend.apply(add=[decode_entry(item) for item in args["add"]],
                                 remove=[decode_entry(item) for item in args["remove"]])
        if method == "snapshot":
            return {jail: {str(net): left for net, left in elements.items()}
                    for jail, elements in backend.snapshot().items()}
        if method == "reconcile":
            result = backend.reconcile([decode_entry(item) for item in args["desired"]])
            return {"added": [encode_entry(e) for e in result.added],
                    "removed": [encode_entry(e) for e in result.removed],
                    "refreshed": [encode_entry(e) for e in result.refreshed],
                    "skipped": [[encode_entry(e), why] for e, why in result.skipped]}
        if method == "teardown":
            return backend.teardown()
        raise ValueError(f"unknown firewall method {method!r}")

    def listen(self, port: int) -> None:
        server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind(("::", port))
        server.listen(64)
        self.listeners.append(server)
        threading.Thread(target=_accept_forever, args=(server,), daemon=True).start()


def _accept_forever(server: socket.socket) -> None:
    while True:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        connection.close()


def probe(host: str, port: int, timeout: float) -> str:
    """"open" (handshake done), "refused" (RST or ICMP unreachable) or "timeout" (dropped)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect((host, port))
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return f"error: {exc}"
    return "open"


def serve(host_inode: int) -> int:
    if host_netns_inode() == host_inode:
        print(json.dumps({"error": "refusing to run in the host's network namespace"}), flush=True)
        return 2
    with tempfile.TemporaryDirectory(prefix="ipst-locks-") as lock_dir:
        return _answer_lines(_Serving(lock_dir))


def _answer_lines(serving: _Serving) -> int:
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer: dict[str, Any] = {"result": serving.handle(request)}
        except FirewallError as exc:
            answer = {"firewall_error": exc.message, "permanent": exc.permanent,
                      "entries": [encode_entry(entry) for entry in exc.entries]}
        except Exception as exc:  # reported to the test, which fails with it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        sys.exit(serve(int(sys.argv[2])))
    sys.exit(f"usage: {sys.argv[0]} serve <host netns inode>")
