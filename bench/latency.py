#!/usr/bin/env python3
"""Latency from a log line's write to its address in the kernel set, with the whole stack running.

    .venv/bin/python bench/latency.py            (root; see bench/README.md, "Latency")

What runs is what an admin runs, minus the web panel: a watcher worker with the log followers
(the shards the migrations schedule: 1 on SQLite, 2 on PostgreSQL; plus 2 processes for ordinary
tasks, as `runstack` sizes it) with Celery beat and its default schedules inside it
(`--beat-in-loop`: on its event loop, as `runstack` runs it), and the firewall worker INSIDE a
network namespace built for the run (its libnftables changes that namespace's ruleset only),
reaching Redis through the unix-socket bridge of tests/e2e/stack.py. Database: a fresh SQLite
file (the default deployment). Jails: sshd (maxretry 1: the measured one), apache-envscan and
postfix-sasl on their own logs, and "storm" (maxretry 3) for the ban storm.

How the kernel side is seen: `nft -j monitor new elements` inside the namespace. The kernel sends
the event when the batch that adds the element commits; a thread of this process reads it and
stamps it with time.perf_counter(), the clock the writer uses just before its write(). What is
measured is therefore write() -> element committed -> event read here: the pipe and the thread add
well under a millisecond (resolution: the reader's wake-up, ~0.1 ms idle).

Phases (each reported with the load average and the CPU seconds each process used):

1. idle: N attack lines (one new address each) into auth.log, one at a time: each waits until its
   address is in the kernel, then 50-150 ms, then the next;
2. loaded: the same, while another process writes 2,000 lines/s (one write() per line, as syslog
   does) spread over auth.log, access.log and mail.log: benign lines, and (--noise-failures) 10%
   of access.log's and mail.log's lines failures from addresses that never reach maxretry;
3. storm: 10,000 new addresses each failing 3 times (maxretry 3) within 60 s into storm.log;
   reported: the time from the last failure to all 10,000 in the kernel, and each address's time
   from its third failure to the kernel.

For every ban the time is also split with the Ban row's own stamps: write -> the read that found
it started (Ban.started_at: wake-up and waiting behind other reads), -> the firewall worker's
apply started (Ban.applied_at: matching, counting, commit, Celery's message), -> in the kernel
(claiming, the chain check and the batch).

It prints a table and writes bench/results/latency.json. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))  # the project's packages (and tests' helpers), from `python bench/latency.py`

PYTHON = str(REPO / ".venv" / "bin" / "python")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
ORDINARY_PROCESSES = 2  # runstack's default --concurrency (runstack adds one process per follower)
START_WAIT = 90.0
BAN_WAIT = 10.0  # one ban that takes longer is counted as missing
STORM_WAIT = 180.0
TARGETS = {"idle_p99_ms": 100, "loaded_p99_ms": 250, "storm_seconds": 5}
FAIL2BAN = "fail2ban 1.0.2 with pyinotify on this machine: median 331 ms, p90 824 ms, max 1.04 s"

# name, filter, log, maxretry
JAILS = (
    ("sshd", "sshd", "auth.log", 1),
    ("apache-envscan", "apache-envscan", "access.log", 5),
    ("postfix-sasl", "postfix-sasl", "mail.log", 3),
    ("storm", "sshd", "storm.log", 3),
)
NOISE_LOGS = ("auth.log", "access.log", "mail.log")


# --- log lines ------------------------------------------------------------------------------------


def rfc3339() -> str:
    """rsyslog's default stamp on Debian 12+ (it carries its zone)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def clf() -> str:
    return dt.datetime.now(dt.UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def sshd_failure(address: str, pid: int) -> str:
    return f"{rfc3339()} srv sshd[{pid}]: Failed password for root from {address} port {40000 + pid % 20000} ssh2\n"


def attack_address(phase: int, index: int) -> str:
    """198.18.0.0/15 is set aside for benchmarks (RFC 2544): never this host, never a real peer.
    Eight phases of 16,383 addresses each."""
    assert 0 <= phase < 8
    assert 0 <= index < 16383
    return str(ipaddress.IPv4Address("198.18.0.0") + phase * 16384 + index + 1)


def noise_line(log: str, rng: random.Random, failures: float) -> str:
    """A line of background traffic; the failures among them come from 100.64.0.0/10 at random, so
    no address gets near maxretry (no ban comes from the noise)."""
    stranger = f"100.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    client = f"192.0.2.{rng.randrange(2, 250)}"
    pid = rng.randrange(1000, 60000)
    if log == "auth.log":  # benign only: sshd's maxretry is 1 here
        return rng.choice((
            f"{rfc3339()} srv sshd[{pid}]: Accepted publickey for deploy from {client} port {pid} ssh2: ED25519 "
            "SHA256:Ab3dEf",
            f"{rfc3339()} srv sshd[{pid}]: pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)",
            f"{rfc3339()} srv sshd[{pid}]: Received disconnect from {client} port {pid}:11: disconnected by user",
            f"{rfc3339()} srv sshd[{pid}]: Disconnected from user deploy {client} port {pid}",
            f"{rfc3339()} srv CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
            f"{rfc3339()} srv systemd[1]: Started session-{pid}.scope - Session {pid} of User deploy.",
        )) + "\n"
    if log == "access.log":
        if rng.random() < failures:
            return f'{stranger} - - [{clf()}] "GET /.env HTTP/1.1" 404 196 "-" "Mozilla/5.0 (l9x)"\n'
        path = rng.choice(("/", "/index.html", "/static/app.css", "/static/app.js", "/blog/2026/11/", "/feed.xml"))
        return f'{client} - - [{clf()}] "GET {path} HTTP/1.1" 200 {rng.randrange(200, 90000)} "-" "Mozilla/5.0"\n'
    if rng.random() < failures:
        return (f"{rfc3339()} mx postfix/smtpd[{pid}]: warning: unknown[{stranger}]: SASL LOGIN authentication "
                "failed: UGFzc3dvcmQ6\n")
    return rng.choice((
        f"{rfc3339()} mx postfix/smtpd[{pid}]: connect from mail.example.org[{client}]",
        f"{rfc3339()} mx postfix/smtpd[{pid}]: 4F1A2B3C4D: client=mail.example.org[{client}]",
        f"{rfc3339()} mx postfix/cleanup[{pid}]: 4F1A2B3C4D: message-id=<{pid}@example.org>",
        f"{rfc3339()} mx postfix/smtpd[{pid}]: disconnect from mail.example.org[{client}] ehlo=1 mail=1 quit=1",
    )) + "\n"


def make_noise(paths: Sequence[str], rate: float, failures: float, stop: Any, written: Any, seed: int) -> None:
    """A separate process (its CPU is not this one's): `rate` lines/s, one write() per line, until `stop`."""
    rng = random.Random(seed)
    fds = [(os.path.basename(p), os.open(p, os.O_WRONLY | os.O_APPEND)) for p in paths]
    started = time.perf_counter()
    sent = 0
    try:
        while not stop.is_set():
            due = int((time.perf_counter() - started) * rate) - sent
            for _ in range(max(0, due)):
                name, fd = rng.choice(fds)
                os.write(fd, noise_line(name, rng, failures).encode())
            sent += max(0, due)
            written.value = sent
            time.sleep(0.002)
    finally:
        for _, fd in fds:
            os.close(fd)


# --- the kernel side ------------------------------------------------------------------------------


class KernelWatch:
    """`nft -j monitor new elements` in the server namespace: when each address first entered a set."""

    def __init__(self, namespace: str) -> None:
        self.first_seen: dict[str, float] = {}
        self.events = 0
        self._changed = threading.Condition()
        self.process = subprocess.Popen(["ip", "netns", "exec", namespace, "nft", "-j", "monitor", "new", "elements"],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self._thread = threading.Thread(target=self._read, name="nft-monitor", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            seen = time.perf_counter()
            addresses = list(_added_addresses(line))
            with self._changed:
                self.events += 1
                for address in addresses:
                    self.first_seen.setdefault(address, seen)
                self._changed.notify_all()

    def wait_for(self, addresses: Sequence[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not all(a in self.first_seen for a in addresses):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 1.0))
        return True

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _added_addresses(line: str) -> Iterator[str]:
    try:
        event = json.loads(line)
    except ValueError:
        return
    # "create" when the firewall created the element (new bans), "add" when it added or refreshed it
    change = (event.get("add") or event.get("create") or {}) if isinstance(event, dict) else {}
    element = change.get("element") if isinstance(change, dict) else None
    if not isinstance(element, dict) or element.get("table") != "ips":
        return
    for item in element.get("elem", {}).get("set", []):
        value = item.get("elem", {}).get("val") if isinstance(item, dict) else item
        if isinstance(value, str):
            yield value


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Written:
    """The line that completed maxretry for `address`: when it was written."""

    address: str
    wall: float  # time.time()
    perf: float  # time.perf_counter()


def quantiles(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:  # nearest rank: a value that was measured
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]

    return {"n": len(ordered), "p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": ordered[-1],
            "mean": statistics.fmean(ordered)}


def ms(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v * 1000, 1) if isinstance(v, float) and k != "n" else v) for k, v in summary.items()}


def stages(jail: str, written: Sequence[Written], watch: KernelWatch) -> dict[str, Any]:
    """Each ban's time split at the Ban row's stamps (all wall clock of this machine)."""
    from bans.models import Ban

    rows = {network.split("/")[0]: (started, applied) for network, started, applied in
            Ban.objects.filter(jail_name=jail).values_list("network", "started_at", "applied_at")}
    to_read, to_apply, to_kernel = [], [], []
    for item in written:
        seen = watch.first_seen.get(item.address)
        started, applied = rows.get(item.address, (None, None))
        if seen is None or started is None or applied is None:
            continue
        kernel_wall = item.wall + (seen - item.perf)
        to_read.append(started.timestamp() - item.wall)
        to_apply.append(applied.timestamp() - started.timestamp())
        to_kernel.append(kernel_wall - applied.timestamp())
    return {"write_to_read_ms": ms(quantiles(to_read)), "read_to_firewall_ms": ms(quantiles(to_apply)),
            "firewall_to_kernel_ms": ms(quantiles(to_kernel))}


def cpu_seconds(session: int) -> float:
    """User + system CPU of the live processes of a session (a worker and its pool)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # field 6 of stat: the session id
            total += int(fields[11]) + int(fields[12])
    return total / tick


class Probe:
    """Load average and per-process CPU over a phase."""

    def __init__(self, sessions: dict[str, int]) -> None:
        self.sessions = sessions
        self.load_before = os.getloadavg()
        self.cpu_before = {name: cpu_seconds(s) for name, s in sessions.items()}
        self.started = time.monotonic()

    def report(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        return {"seconds": round(elapsed, 1),
                "load_1min_before": round(self.load_before[0], 2), "load_1min_after": round(os.getloadavg()[0], 2),
                "cpu_seconds": {name: round(cpu_seconds(s) - self.cpu_before[name], 1)
                                for name, s in self.sessions.items()}}


def measure_bans(logs: Path, watch: KernelWatch, phase: int, count: int, rng: random.Random) -> dict[str, Any]:
    """`count` attack lines into auth.log, one at a time; returns the latencies and their stages."""
    written: list[Written] = []
    fd = os.open(logs / "auth.log", os.O_WRONLY | os.O_APPEND)
    try:
        for index in range(count):
            address = attack_address(phase, index)
            line = sshd_failure(address, index).encode()
            wall, perf = time.time(), time.perf_counter()
            os.write(fd, line)
            written.append(Written(address, wall, perf))
            watch.wait_for([address], BAN_WAIT)
            time.sleep(rng.uniform(0.05, 0.15))
    finally:
        os.close(fd)
    latencies = [watch.first_seen[w.address] - w.perf for w in written if w.address in watch.first_seen]
    return {"bans": count, "missing": count - len(latencies), "latency_ms": ms(quantiles(latencies)),
            "stages": stages("sshd", written, watch)}


def storm_lines(count: int, maxretry: int, spread: int) -> list[tuple[int, int]]:
    """(address index, failure number) in writing order: each address's failures `spread` apart,
    so addresses reach maxretry evenly over the whole storm."""
    return sorted(((i, k) for i in range(count) for k in range(maxretry)), key=lambda item: item[0] + item[1] * spread)


def measure_storm(logs: Path, watch: KernelWatch, count: int, seconds: float,
                  maxretry: int) -> tuple[dict[str, Any], list[Written]]:
    from watchers.models import LogSource

    order = storm_lines(count, maxretry, spread=300)
    rate = len(order) / seconds
    completed: dict[str, Written] = {}
    fd = os.open(logs / "storm.log", os.O_WRONLY | os.O_APPEND)
    started = time.perf_counter()
    try:
        for sent, (index, failure) in enumerate(order):
            pause = started + sent / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            address = attack_address(2, index)
            wall, perf = time.time(), time.perf_counter()
            os.write(fd, sshd_failure(address, index * maxretry + failure).encode())
            if failure == maxretry - 1:
                completed[address] = Written(address, wall, perf)
    finally:
        os.close(fd)
    last = max(w.perf for w in completed.values())
    size = os.path.getsize(logs / "storm.log")
    source = LogSource.objects.get(jail__name="storm")
    behind = size - source.offset  # what the follower had not read yet when the last line was written
    all_in = watch.wait_for(list(completed), STORM_WAIT)
    lags = [watch.first_seen[a] - w.perf for a, w in completed.items() if a in watch.first_seen]
    in_kernel = [watch.first_seen[a] for a in completed if a in watch.first_seen]
    return {
        "addresses": count, "maxretry": maxretry, "lines": len(order),
        "writing_seconds": round(last - started, 1), "lines_per_second": round(len(order) / (last - started)),
        "in_kernel": len(lags), "all_in_kernel": all_in,
        "last_failure_to_all_in_kernel_s": round(max(in_kernel) - last, 2) if all_in else None,
        "within_5s_of_last_failure": sum(1 for lag in lags if lag <= 5.0),
        "per_address_lag_ms": ms(quantiles(lags)),
        "reader_behind_at_last_write_bytes": behind,
    }, list(completed.values())


# --- the stack --------------------------------------------------------------------------------------


DATABASES = {"sqlite": "SQLite (WAL), a new file", "postgres": "PostgreSQL (local socket), a new database"}


def database_url(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.sqlite3'}"
    return f"postgres:///{postgres_name(workdir)}"


def postgres_name(workdir: Path) -> str:
    return "ipsbench_" + re.sub(r"[^a-z0-9]", "_", workdir.name.lower())


def create_postgres(workdir: Path) -> None:
    subprocess.run(["createdb", postgres_name(workdir)], check=True, timeout=60)


def drop_postgres(workdir: Path) -> None:
    from django.db import connections

    connections.close_all()
    subprocess.run(["dropdb", "--if-exists", postgres_name(workdir)], check=False, timeout=60)


def product_env(workdir: Path, redis_db: int, database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url,
            "IPS_SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789",
            "IPS_SSL_REDIRECT": "false", "IPS_REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
            "IPS_HOST_NAME": "local", "IPS_FIREWALL": "nftables", "IPS_NFT_TABLE": "ips", "IPS_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "config.settings"}


def prepare_database(env: dict[str, str], logs: Path) -> None:
    """Migrate (which creates the default schedules, followers included), install the filters, then
    the jails, from this process."""
    for command in (["migrate", "--noinput"], ["installfilters"]):
        done = subprocess.run([PYTHON, "manage.py", *command], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        if done.returncode != 0:
            raise SystemExit(f"manage.py {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    os.environ.update(env)
    import django

    django.setup()
    from jails.models import Filter, Jail

    # installfilters also makes jails of its own (the panel's login log): not part of what is measured
    Jail.objects.exclude(name__in=[name for name, *_ in JAILS]).update(enabled=False)
    for name, filter_name, log, maxretry in JAILS:
        (logs / log).touch()
        jail = Jail(name=name, enabled=True, filter=Filter.objects.get(name=filter_name), logpath=[str(logs / log)],
                    maxretry=maxretry, findtime=600, bantime=3600)
        jail.full_clean()
        jail.save()


@contextmanager
def namespaced(workdir: Path) -> Iterator[tuple[Any, Any, KernelWatch, list[Any]]]:
    """The namespaces, the Redis bridge into them, the kernel watch, and a list for the children
    started meanwhile: all stopped and undone on the way out."""
    from scripts.harness.netns import NamespacePair
    from scripts.harness.processes import RedisBridge, stop_children

    pair = NamespacePair.create()
    bridge = RedisBridge(str(workdir / "redis.sock"), (REDIS_HOST, REDIS_PORT))
    children: list[Any] = []
    watch = None
    try:
        watch = KernelWatch(pair.server)
        yield pair, bridge, watch, children
    finally:
        stop_children(children)
        if watch is not None:
            watch.close()
        bridge.close()
        pair.destroy()


@contextmanager
def running_stack(workdir: Path, env: dict[str, str], redis_db: int,
                  followers: int) -> Iterator[tuple[Any, list[Any], KernelWatch]]:
    """The workers as runstack's commands (beat inside the watcher worker), each a new interpreter,
    the firewall worker inside the server namespace. children[0] is the watcher worker, children[1]
    the firewall worker."""
    from scripts.harness.processes import Child

    with namespaced(workdir) as (pair, bridge, watch, children):
        celery = [PYTHON, "-m", "celery", "-A", "config"]
        children.append(Child.start("watchers", [*celery, "worker", "-Q", "celery", "--concurrency",
                                                 str(ORDINARY_PROCESSES + followers), "--hostname", "w@%h",
                                                 "--loglevel", "INFO", "--beat-in-loop", "--schedule-filename",
                                                 str(workdir / "beat-schedule")], env, workdir))
        children.append(Child.start("firewall", ["ip", "netns", "exec", pair.server, *celery, "worker", "-Q",
                                                 "firewall.local", "--pool", "solo", "--concurrency", "1",
                                                 "--hostname", "fw@%h", "--loglevel", "INFO"],
                                    {**env, "IPS_REDIS_URL": bridge.url(redis_db)}, workdir))
        yield pair, children, watch


@contextmanager
def runstack_in_namespace(workdir: Path, env: dict[str, str], redis_db: int,
                          own_redis: bool = False) -> Iterator[tuple[Any, KernelWatch]]:
    """`manage.py runstack` with its defaults, as scripts/run.sh starts it (the panel, the watcher
    worker with the followers and beat, the firewall worker: forks of one loaded process), the whole
    stack inside the server namespace, where its bans go into nftables. PostgreSQL through its socket.

    Redis: the machine's, through the bridge (a Unix socket, so the workers poll it every second:
    config.env.broker_poll_seconds); or with `own_redis` a Redis of the stack's own started inside the
    namespace exactly as scripts/run.sh starts one (scripts/services.sh: loopback, hz 1), reached by
    the stack over TCP as run.sh's is, and by the benchmark through OWN_REDIS_SOCKET in `workdir`
    (stopped after the stack)."""
    from scripts.harness.processes import Child, stop_children

    with namespaced(workdir) as (pair, bridge, watch, children):
        url, redis_child = bridge.url(redis_db), None
        try:
            if own_redis:
                redis_child, url = start_own_redis(pair.server, workdir), "redis://127.0.0.1:6379/0"
            children.append(Child.start("stack", ["ip", "netns", "exec", pair.server, PYTHON, "manage.py", "runstack",
                                                  "--bind", "127.0.0.1:8000",
                                                  "--beat-schedule", str(workdir / "beat-schedule"),
                                                  "--control-socket", str(workdir / "gunicorn.ctl")],
                                        {**env, "IPS_REDIS_URL": url}, workdir))
            yield children[0], watch
        finally:
            stop_children(children)
            if redis_child is not None:
                stop_children([redis_child])


OWN_REDIS_SOCKET = "own-redis.sock"


def own_redis_url(workdir: Path) -> str:
    """The stack's own Redis (runstack_in_namespace(own_redis=True)) as seen from outside its namespace."""
    return f"redis+socket://{workdir / OWN_REDIS_SOCKET}?virtual_host=0"


def start_own_redis(namespace: str, workdir: Path, timeout: float = 10.0) -> Any:
    """redis-server in `namespace` with scripts/services.sh's options, plus a Unix socket in `workdir`."""
    import redis

    from scripts.harness.processes import Child

    socket_path = workdir / OWN_REDIS_SOCKET
    child = Child.start("redis", ["ip", "netns", "exec", namespace, "redis-server", "--bind", "127.0.0.1", "-::1",
                                  "--port", "6379", "--save", "", "--appendonly", "no", "--hz", "1",
                                  "--dir", str(workdir), "--unixsocket", str(socket_path),
                                  "--unixsocketperm", "700"], dict(os.environ), workdir)
    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2).ping()
            return child
        except (redis.RedisError, OSError):
            if not child.alive() or time.monotonic() > deadline:
                stop_children_quietly(child)
                raise SystemExit(f"the stack's own Redis did not start:\n{child.tail()}") from None
            time.sleep(0.1)


def stop_children_quietly(child: Any) -> None:
    from scripts.harness.processes import stop_children

    with suppress(Exception):
        stop_children([child])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, children: Sequence[Any]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for child in children:
            if not child.alive():
                raise SystemExit(f"{child.name} exited:\n{child.tail()}")
        if time.monotonic() > deadline:
            tails = "\n".join(f"== {c.name}\n{c.tail()}" for c in children)
            raise SystemExit(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.2)


def scheduled_shards() -> set[tuple[int, int]]:
    """(shard, shards) of the follower schedules the migrations created."""
    from django_celery_beat.models import PeriodicTask

    rows = PeriodicTask.objects.filter(task="watchers.tasks.follow", enabled=True).values_list("kwargs", flat=True)
    return {(json.loads(raw)["shard"], json.loads(raw)["shards"]) for raw in rows}


def followers_ready(shards: set[tuple[int, int]]) -> bool:
    from watchers import lease
    from watchers.models import LogSource

    if not shards <= lease.live_shards(lease.broker_redis()):
        return False
    sources = list(LogSource.objects.filter(jail__name__in=[name for name, *_ in JAILS]))
    return len(sources) == len(JAILS) and all(s.inode is not None for s in sources)


def sync_tasks(firewall_log: str) -> dict[str, Any]:
    """sync_firewall runs in the firewall worker's log: how many, how long, how many bans each applied."""
    found = re.findall(r"sync_firewall\[[^\]]+\] succeeded in ([\d.]+)s: \{'applied': (\d+)", firewall_log)
    seconds = [float(s) for s, _ in found]
    applied = [int(a) for _, a in found]
    return {"received": len(re.findall(r"Task bans\.tasks\.sync_firewall\[[^\]]+\] received", firewall_log)),
            "runs": len(found), "runs_applying_nothing": sum(1 for a in applied if a == 0),
            "busy_seconds": round(sum(seconds), 1), "run_ms": ms(quantiles(seconds)),
            "largest_batch": max(applied, default=0)}


# --- the run ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Latency from a log line to a kernel ban, with the real stack "
                                                 "(root; builds its own network namespaces).")
    parser.add_argument("--bans", type=int, default=200, help="attack lines per latency phase (default 200)")
    parser.add_argument("--noise-rate", type=float, default=2000.0, help="background lines/s when loaded")
    parser.add_argument("--noise-failures", type=float, default=0.1,
                        help="share of the access.log and mail.log noise lines that are failures (default 0.1)")
    parser.add_argument("--storm", type=int, default=10_000, help="addresses in the ban storm (0: no storm)")
    parser.add_argument("--storm-seconds", type=float, default=60.0, help="the storm's length")
    parser.add_argument("--phases", default="idle,loaded,storm", help="which phases, comma separated")
    parser.add_argument("--database", choices=sorted(DATABASES), default="sqlite",
                        help="sqlite: a new file (the default deployment); postgres: a new database on the local "
                             "server (createdb as this user), dropped afterwards")
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("IPS_E2E_REDIS_DB", "15")),
                        help="Redis database used and FLUSHED before and after (default 15, as tests/e2e)")
    parser.add_argument("--json-out", type=Path, default=BENCH_DIR / "results" / "latency.json")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (database, process logs)")
    parser.add_argument("--seed", type=int, default=20261122)
    return parser.parse_args(argv)


def preflight(redis_db: int) -> None:
    import redis

    from scripts.harness.netns import netns_unusable

    if os.geteuid() != 0:
        raise SystemExit("bench/latency.py builds network namespaces: run it as root")
    reason = netns_unusable()
    if reason:
        raise SystemExit(reason)
    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db, socket_timeout=5).ping()
    except redis.RedisError as exc:
        raise SystemExit(f"Redis is needed on {REDIS_HOST}:{REDIS_PORT}: {exc}") from None


def machine() -> dict[str, Any]:
    model = ""
    with suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version()}


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import redis

    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    logs = workdir / "log"
    logs.mkdir()
    env = product_env(workdir, args.redis_db, database_url(args.database, workdir))
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=args.redis_db)
    client.flushdb()
    prepare_database(env, logs)
    shards = scheduled_shards()
    rng = random.Random(args.seed)
    result: dict[str, Any] = {"benchmark": "latency", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "targets": TARGETS, "fail2ban_reference": FAIL2BAN,
                              "config": {"follower_shards": len(shards),
                                         "watcher_processes": ORDINARY_PROCESSES + len(shards),
                                         "noise_failure_share": args.noise_failures,
                                         "database": DATABASES[args.database], "bans_per_phase": args.bans,
                                         "noise_lines_per_s": args.noise_rate,
                                         "kernel_watch": "nft -j monitor new elements (event on commit), "
                                                         "stamped with perf_counter on reading"}}
    try:
        with running_stack(workdir, env, args.redis_db, len(shards)) as (_pair, children, watch):
            wait_until(lambda: all(c.alive() and " ready." in c.output() for c in children[:2])
                       and "beat: Starting" in children[0].output(), START_WAIT, "the workers and beat", children)
            wait_until(lambda: followers_ready(shards), START_WAIT, "both followers to hold their shard", children)
            sessions = {c.name: c.process.pid for c in children}
            # the first ban creates the table and the sets: not what an attacker meets afterwards
            cold = measure_bans(logs, watch, phase=7, count=1, rng=rng)
            result["first_ban_ms"] = cold["latency_ms"]["max"]
            if "idle" in phases:
                print(f"idle: {args.bans} bans, one at a time", flush=True)
                probe = Probe(sessions)
                result["idle"] = {**measure_bans(logs, watch, 0, args.bans, rng), **probe.report()}
            if "loaded" in phases:
                print(f"loaded: {args.bans} bans under {args.noise_rate:g} lines/s of noise", flush=True)
                result["loaded"] = loaded_phase(logs, watch, args, sessions, rng)
            if "storm" in phases and args.storm > 0:
                print(f"storm: {args.storm} addresses reaching maxretry 3 within {args.storm_seconds:g} s", flush=True)
                log_start = len(children[1].output())
                probe = Probe(sessions)
                storm, completed = measure_storm(logs, watch, args.storm, args.storm_seconds, maxretry=3)
                wait_until(storm_settled, STORM_WAIT, "the firewall worker to record the storm's bans", children)
                storm["stages"] = stages("storm", completed, watch)
                storm.update(probe.report())
                storm["sync_firewall"] = sync_tasks(children[1].output()[log_start:])
                result["storm"] = storm
            result["kernel_events"] = watch.events
    finally:
        client.flushdb()
        client.close()
    return result


def storm_settled() -> bool:
    """Every ban of the storm is recorded as applied (its stamps are read next)."""
    from django.db import connection

    from bans.models import Ban

    connection.close()  # a fresh connection: never an old snapshot of the database
    return not Ban.objects.filter(jail_name="storm", applied_at__isnull=True).exists()


def loaded_phase(logs: Path, watch: KernelWatch, args: argparse.Namespace, sessions: dict[str, int],
                 rng: random.Random) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    stop, written = context.Event(), context.Value("q", 0)
    noise = context.Process(target=make_noise, args=([str(logs / n) for n in NOISE_LOGS], args.noise_rate,
                                                      args.noise_failures, stop, written, args.seed), daemon=True)
    noise.start()
    try:
        time.sleep(3.0)  # the followers reach their steady state first
        probe, counted_from, since = Probe(sessions), written.value, time.monotonic()
        phase = measure_bans(logs, watch, 1, args.bans, rng)
        noise_rate = (written.value - counted_from) / (time.monotonic() - since)
    finally:
        stop.set()
        noise.join(timeout=10)
        if noise.is_alive():
            noise.terminate()
    return {**phase, **probe.report(), "noise_lines_per_s_measured": round(noise_rate)}


def table(result: dict[str, Any]) -> str:
    rows = [f"{'phase':<8} {'bans':>6} {'miss':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'load':>5}  target p99"]
    for phase in ("idle", "loaded"):
        if phase in result:
            data, lat = result[phase], result[phase]["latency_ms"]
            target = TARGETS[f"{phase}_p99_ms"]
            verdict = "met" if lat["p99"] is not None and lat["p99"] <= target else "MISSED"
            rows.append(f"{phase:<8} {data['bans']:>6} {data['missing']:>5} {lat['p50']:>8} {lat['p90']:>8} "
                        f"{lat['p99']:>8} {lat['max']:>8} {data['load_1min_after']:>5}  {target} ms: {verdict}")
            st = data["stages"]
            rows.append(f"{'':<8} stages p50/p99 ms: write->read {st['write_to_read_ms']['p50']}/"
                        f"{st['write_to_read_ms']['p99']}, read->firewall {st['read_to_firewall_ms']['p50']}/"
                        f"{st['read_to_firewall_ms']['p99']}, firewall->kernel {st['firewall_to_kernel_ms']['p50']}/"
                        f"{st['firewall_to_kernel_ms']['p99']}")
    if "storm" in result:
        s = result["storm"]
        got = s["last_failure_to_all_in_kernel_s"]
        verdict = "met" if got is not None and got <= TARGETS["storm_seconds"] else "MISSED"
        rows.append(f"storm: {s['in_kernel']}/{s['addresses']} in the kernel; last failure -> all in kernel: "
                    f"{got} s (target {TARGETS['storm_seconds']} s: {verdict}); per address p50 "
                    f"{s['per_address_lag_ms']['p50']} ms, p99 {s['per_address_lag_ms']['p99']} ms, max "
                    f"{s['per_address_lag_ms']['max']} ms; {s['within_5s_of_last_failure']} within 5 s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preflight(args.redis_db)
    workdir = Path(tempfile.mkdtemp(prefix="ipsb-"))  # short: a unix socket path has at most 107 bytes
    ok = False
    try:
        if args.database == "postgres":
            create_postgres(workdir)
        result = run(args, workdir)
        ok = True
    finally:
        if args.database == "postgres":
            drop_postgres(workdir)
        if args.keep or not ok:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written: {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
