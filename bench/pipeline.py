#!/usr/bin/env python3
"""The live pipeline, ours against a live fail2ban-server: log appended -> failures counted -> bans.

    bench/pipeline.sh --quick         (root; installs fail2ban first; see bench/README.md, "Live pipeline")
    .venv/bin/python bench/pipeline.py --help

Issue 10's measurement as a script. Per scenario (a log and its filter) and size, each tool gets a
fresh log file and fresh state, one tool after the other (never both at once):

- fail2ban: `fail2ban-server -f -x -c CONFDIR` with a private configuration built in a temporary
  directory (its own socket, pidfile, database; the stock sshd filter and common.conf from the
  corpus, the seed's apache-envscan; backend pyinotify when fail2ban's Python has it, else polling;
  an action whose commands are all empty, so no ban ever leaves the process, and no process is
  forked per ban). Its counters are read with `status JAIL short` over its socket (what
  fail2ban-client sends, without starting a Python per poll).
- ours: the whole stack as scripts/run.sh runs it (`manage.py runstack`: the web panel, the watcher
  worker with the log followers and beat inside it, the firewall worker), inside a network
  namespace where its bans go into nftables, on a fresh SQLite
  file or PostgreSQL database, with the SAME configuration directory imported by `manage.py
  importconf` (same filter files, same maxretry/findtime/bantime). Its counters are the Failure and
  Ban rows of the jail (what `jailctl status --json` calls total_failed and total_banned), read by
  a helper process with Django set up.

Measured per tool: the burst (all lines appended with one write(), lines dated now), the time until
every failure is counted, hence lines/s and failures/s, the lag (last line written -> last failure
counted), CPU seconds per 100k lines of the whole stack, its memory (PSS), the failure and ban
counts (must be identical between the tools: otherwise MISMATCH and exit 1), then the highest
steady rate each keeps up with, and the idle stack's CPU. Figures, no timing assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import multiprocessing
import os
import pickle
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))  # genlogs, latency
sys.path.insert(0, str(REPO))  # the project's packages (and tests' helpers)

import genlogs  # noqa: E402
import latency  # noqa: E402
from procstats import StackMeter, cpu_delta  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "fail2ban" / "config" / "filter.d"
SEED_FILTERS = REPO.parent / "shared" / "seed-configs" / "filter.d"
RESULTS = BENCH_DIR / "results" / "pipeline.json"

# The jails, the same in both tools. bantime outlasts any run, so no address is unbanned and banned
# again mid-run (that would make the ban counts depend on each tool's speed); findtime too, so a
# slow tool never skips a line as older than findtime.
MAXRETRY, FINDTIME, BANTIME = 5, 3600, 86400

POLL = 0.25  # how often the counters are read: the lag's resolution
SETTLE = 5.0  # a count unchanged this long (and, for ours, the reader at the end of the file) is final
BANS_STABLE_SECONDS, BANS_WAIT_SECONDS = 15.0, 300.0  # the ban count after the failures (settle_bans)
MIN_RATE = 200.0  # a burst gets lines / MIN_RATE + 120 s before the run gives up on a tool
KEPT_UP_LAG = 2.0  # a steady rate is kept up with when the lag at the end stays under this
STEADY_TICK = 0.01  # the steady writer's write() every 10 ms, like a busy syslog daemon's flushes
FLOOD_ADDRESSES = 20_000
BENCH_V4 = ipaddress.IPv4Address("198.18.0.0")  # RFC 2544: never this host, never a real peer
BENCH_V4_SIZE = 2 ** 17  # 198.18.0.0/15


@dataclass(frozen=True)
class Scenario:
    name: str
    jail: str
    filter: str
    log: str
    title: str


SCENARIOS = {
    "sshd": Scenario("sshd", "sshd", "sshd", "auth.log", "sshd auth.log, 8% failures (stock sshd filter)"),
    "apache": Scenario("apache", "apache-envscan", "apache-envscan", "access.log",
                       "Apache access.log, 2.5% scans (seed apache-envscan)"),
    "flood": Scenario("flood", "flood", "sshd", "flood.log",
                      f"attack flood, 50% failures from {FLOOD_ADDRESSES:,} addresses (sshd)"),
}


# --- the logs: genlogs' messages, dated when they are written ------------------------------------


class BenchPools(genlogs.Pools):
    """genlogs' pools with public IPv4 addresses from 198.18.0.0/15 (IPv6 stays 2001:db8::/32): a
    random public address may be link-local (169.254/16) or this host's, which our gate never
    counts and fail2ban does; that would be a policy difference, not what is measured here."""

    def _public_ipv4(self) -> str:
        return str(BENCH_V4 + self.rng.randrange(1, BENCH_V4_SIZE - 1))


@dataclass
class Batch:
    """Log lines waiting for their date ("\\0" marks where it goes) and what fail2ban should make of
    them (the generator's labels: the third witness)."""

    templates: list[str]
    failures: int  # lines labelled matched
    per_address: dict[str, int]  # failures per address

    def bans(self, before: dict[str, int] | None = None) -> int:
        """Addresses reaching maxretry (bantime outlasts the run: each is banned once)."""
        before = before or {}
        return sum(1 for address, n in self.per_address.items() if before.get(address, 0) < MAXRETRY <= n
                   + before.get(address, 0))


SSHD_FROM = re.compile(r" from ([0-9a-f.:]+)")


def sshd_batch(count: int, seed: int, failure_weight_of_logins: float = 16.0) -> Batch:
    """genlogs' auth.log mixer with more public-key logins: ~8% of the lines are failures (10% in
    genlogs' own logs)."""
    rng = random.Random(seed)
    log = genlogs.SshdLog(rng, BenchPools(rng))
    weights = [failure_weight_of_logins if maker == log.publickey_login else weight for weight, maker in log.sessions]
    log.session_weights = list(accumulate(weights))
    templates, per_address, failures = [], dict[str, int](), 0
    for label, text in log.lines(count):
        templates.append("\0 " + text)
        if label == genlogs.MATCHED:
            failures += 1
            address = SSHD_FROM.findall(text)[-1]  # the peer: a user name may contain "from 1.2.3.4"
            per_address[address] = per_address.get(address, 0) + 1
    return Batch(templates, failures, per_address)


def access_batch(count: int, seed: int) -> Batch:
    """genlogs' access.log mixer with fewer secret scans (2.5% of the lines) from 1,000 scanners,
    so that some of them reach maxretry in a 100k-line log too."""
    rng = random.Random(seed)
    pools = BenchPools(rng)
    pools.attackers = pools.attackers[:950] + pools.attackers[-50:]  # both families
    log = genlogs.AccessLog(rng, pools)
    weights = [2.31 if maker == log.secret_scan else weight
               for weight, maker in zip((38, 40, 3, 10, 5, 4), log.makers, strict=True)]
    log.weights = list(accumulate(weights))
    templates, per_address, failures = [], dict[str, int](), 0
    for label, text in log.lines(count):
        templates.append(text)
        if label == genlogs.MATCHED:
            failures += 1
            address = text.split(" ", 1)[0]
            per_address[address] = per_address.get(address, 0) + 1
    return Batch(templates, failures, per_address)


def flood_batch(count: int, seed: int) -> Batch:
    """Every other line an sshd failure from one of 20,000 addresses (drawn at random, so some reach
    maxretry at any size), the others benign lines of other daemons."""
    rng = random.Random(seed)
    addresses = [str(BENCH_V4 + n) for n in rng.sample(range(1, BENCH_V4_SIZE - 1), FLOOD_ADDRESSES)]
    users = genlogs.SshdLog.ATTACK_USERS
    templates, per_address, pid = [], dict[str, int](), 3000
    for index in range(count):
        pid = pid + 1 if pid < 4_000_000 else 3000  # a fresh connection per line
        if index % 2:
            templates.append(rng.choice((
                f"\0 host CRON[{pid}]: pam_unix(cron:session): session closed for user root",
                f"\0 host systemd[1]: Started session-{pid}.scope - Session {pid} of User deploy.",
                f"\0 host postfix/smtpd[{pid}]: connect from unknown[192.0.2.77]")))
            continue
        address, port = addresses[int(rng.random() * FLOOD_ADDRESSES)], rng.randrange(1024, 65536)
        if rng.random() < 0.5:
            templates.append(f"\0 host sshd[{pid}]: Failed password for root from {address} port {port} ssh2")
        else:
            user = users[int(rng.random() * len(users))]
            templates.append(f"\0 host sshd[{pid}]: Failed password for invalid user {user} from {address} port "
                             f"{port} ssh2")
        per_address[address] = per_address.get(address, 0) + 1
    return Batch(templates, sum(per_address.values()), per_address)


BATCHES: dict[str, Callable[[int, int], Batch]] = {"sshd": sshd_batch, "apache": access_batch, "flood": flood_batch}


def stamp_for(scenario: Scenario) -> str:
    """The date as the writing program prints it now: syslog's (local time, no year) or Apache's."""
    if scenario.name == "apache":
        return genlogs.apache_stamp(dt.datetime.now(dt.UTC))
    return genlogs.syslog_stamp(dt.datetime.now())


def dated(templates: Sequence[str], stamp: str) -> bytes:
    return ("\n".join(templates).replace("\0", stamp) + "\n").encode()


def write_all(fd: int, data: bytes) -> None:
    """One write() (a regular file takes it whole; the loop is for the unexpected short write)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# --- the tools behind one interface --------------------------------------------------------------


@dataclass
class Counts:
    failures: int
    bans: int
    done_reading: bool | None = None  # ours: every source's reader at the end of its file


class Tool:
    """A running stack that counts failures and bans for the jails of the configuration."""

    name = ""
    meter: StackMeter

    def counts(self, jail: str) -> Counts:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {}


# --- fail2ban -------------------------------------------------------------------------------------


def fail2ban_python() -> str:
    """The interpreter fail2ban-server runs under (its shebang), for the pyinotify check."""
    server = shutil.which("fail2ban-server")
    if not server:
        raise SystemExit("fail2ban-server is missing: run bench/pipeline.sh (it installs Debian's fail2ban)")
    first = Path(server).read_text(errors="replace").splitlines()[0]
    return first[2:].strip().split()[0] if first.startswith("#!") else "python3"


def fail2ban_backend() -> str:
    found = subprocess.run([fail2ban_python(), "-c", "import pyinotify"], capture_output=True, check=False)
    return "pyinotify" if found.returncode == 0 else "polling"


def fail2ban_version() -> str:
    done = subprocess.run(["fail2ban-server", "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"


# fail2ban's ban action: "dummy" (Debian's action.d/dummy.conf) or "noop" (empty commands); --fail2ban-action
FAIL2BAN_ACTION = "dummy"
DEBIAN_ACTIONS = Path("/etc/fail2ban/action.d")


def build_confdir(confdir: Path, logs: Path, backend: str) -> None:
    """A fail2ban configuration directory, for both tools: fail2ban.conf (private socket, pidfile,
    database, log), jail.local with the three jails, the filters, and an action doing nothing."""
    filters, actions = confdir / "filter.d", confdir / "action.d"
    filters.mkdir(parents=True)
    actions.mkdir()
    for source in (CORPUS / "sshd.conf", CORPUS / "common.conf", SEED_FILTERS / "apache-envscan.conf"):
        shutil.copyfile(source, filters / source.name)  # into the run's temporary directory only
    (confdir / "fail2ban.conf").write_text(
        "[Definition]\nloglevel = INFO\n"  # Debian's default level: each failure is logged
        f"logtarget = {confdir / 'fail2ban.log'}\nsyslogsocket = auto\n"
        f"socket = {confdir / 'f2b.sock'}\npidfile = {confdir / 'f2b.pid'}\n"
        f"dbfile = {confdir / 'fail2ban.sqlite3'}\ndbpurgeage = 1d\n")
    # benchnoop: every command empty, fail2ban runs nothing for it (no fork per ban). The default is
    # Debian's stock `dummy` action (what issue 10 measured), writing to a file of this run's directory:
    # a shell per ban, as any real action costs. Neither touches the host's firewall. Ours applies its
    # bans to nftables in a namespace.
    (actions / "benchnoop.conf").write_text(
        "[Definition]\nactionstart =\nactionflush =\nactionstop =\nactioncheck =\nactionban =\nactionunban =\n")
    if FAIL2BAN_ACTION == "dummy":  # the installed package's, into this run's directory
        shutil.copyfile(DEBIAN_ACTIONS / "dummy.conf", actions / "dummy.conf")
    action = "benchnoop" if FAIL2BAN_ACTION == "noop" else f"dummy[target={confdir / 'dummy.target'}]"
    jails = "".join(
        f"\n[{s.jail}]\nenabled = true\nfilter = {s.filter}\nlogpath = {logs / s.log}\n"
        f"port = {'http,https' if s.name == 'apache' else 'ssh'}\n" for s in SCENARIOS.values())
    (confdir / "jail.local").write_text(
        f"[DEFAULT]\nbackend = {backend}\nusedns = no\nallowipv6 = auto\nignoreself = true\n"
        f"ignoreip = 127.0.0.1/8 ::1\nmaxretry = {MAXRETRY}\nfindtime = {FINDTIME}\nbantime = {BANTIME}\n"
        f"banaction = benchnoop\naction = {action}\n{jails}")


def fresh_logs(workdir: Path, backend: str) -> tuple[Path, Path]:
    """Each tool's own empty logs and the configuration directory over them: (logs, confdir)."""
    logs, confdir = workdir / "log", workdir / "f2b"
    logs.mkdir()
    for scenario in SCENARIOS.values():
        (logs / scenario.log).touch()
    build_confdir(confdir, logs, backend)
    return logs, confdir


def f2b_command(sock: Path, *command: Any, timeout: float = 10.0) -> Any:
    """One command over fail2ban's socket, as fail2ban-client sends it (pickle + end marker)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(sock))
        client.sendall(pickle.dumps(list(command), pickle.HIGHEST_PROTOCOL) + b"<F2B_END_COMMAND>")
        data = b""
        while data.rfind(b"<F2B_END_COMMAND>", -32) == -1:
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
        with suppress(OSError):
            client.sendall(b"<F2B_CLOSE_COMMAND><F2B_END_COMMAND>")
    # the server is the one this run started, with its socket in our own temporary directory
    code, answer = pickle.loads(data)  # noqa: S301
    if code != 0:
        raise RuntimeError(f"fail2ban {command}: {answer!r}")
    return answer


class Fail2ban(Tool):
    name = "fail2ban"

    def __init__(self, workdir: Path, backend: str) -> None:
        self.workdir, self.backend = workdir, backend
        self.logs, self.confdir = fresh_logs(workdir, backend)
        self.sock = self.confdir / "f2b.sock"
        out = (workdir / "fail2ban-server.out").open("wb")
        self.process = subprocess.Popen(
            ["fail2ban-server", "-f", "-x", "-c", str(self.confdir), "-s", str(self.sock), "-p",
             str(self.confdir / "f2b.pid")], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        out.close()
        self.meter = StackMeter(lambda: [self.process.pid], lambda: {})

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        wanted = {s.jail for s in SCENARIOS.values()}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"fail2ban-server exited:\n{self.tail()}")
            try:
                status = dict(f2b_command(self.sock, "status"))
                if set(str(status.get("Jail list", "")).replace(",", " ").split()) >= wanted:
                    return
            except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError, TypeError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"fail2ban-server did not start its jails within {timeout:g} s:\n{self.tail()}")

    def tail(self) -> str:
        texts = []
        for path in (self.workdir / "fail2ban-server.out", self.confdir / "fail2ban.log"):
            with suppress(OSError):
                texts.append("\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(texts)

    def counts(self, jail: str) -> Counts:
        found: dict[str, Any] = {}
        for _, items in f2b_command(self.sock, "status", jail, "short"):
            found.update(dict(items))
        return Counts(int(found["Total failed"]), int(found["Total banned"]))

    def info(self) -> dict[str, Any]:
        action = "benchnoop (empty commands)" if FAIL2BAN_ACTION == "noop" else "dummy (Debian's, a shell per ban)"
        return {"version": fail2ban_version(), "backend": self.backend, "action": action,
                "loglevel": "INFO", "dbfile": "a file in the run's directory"}

    def close(self) -> None:
        self.meter.close()
        if self.process.poll() is None:
            with suppress(OSError, RuntimeError, EOFError, pickle.UnpicklingError):
                f2b_command(self.sock, "stop", timeout=5)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


# --- ours -----------------------------------------------------------------------------------------


def probe_main(conn: Any, env: dict[str, str]) -> None:
    """The helper process that reads our database (Django set up on the run's database): the
    benchmark's reader, not part of the stack measured. Requests are (name, argument)."""
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection
    from django_celery_beat.models import PeriodicTask

    from bans.models import Ban, Failure
    from jails.models import Jail
    from watchers import lease
    from watchers.models import LogSource

    ours = [s.jail for s in SCENARIOS.values()]

    def handle(name: str, argument: Any) -> Any:
        if name == "prepare":  # only the benchmark's jails run (a migration may bring others)
            Jail.objects.exclude(name__in=ours).update(enabled=False)
            jails = {j.name: {"enabled": j.enabled, "maxretry": j.maxretry, "findtime": j.findtime,
                              "bantime": j.bantime, "backend": j.backend, "filter": j.filter.name}
                     for j in Jail.objects.filter(name__in=ours).select_related("filter")}
            return {"jails": jails, "backend_pid": backend_pid()}
        if name == "shards":
            rows = PeriodicTask.objects.filter(task="watchers.tasks.follow", enabled=True).values_list("kwargs",
                                                                                                         flat=True)
            return sorted({(json.loads(raw)["shard"], json.loads(raw)["shards"]) for raw in rows})
        if name == "ready":
            shards, redis_url = {tuple(s) for s in argument[0]}, argument[1]
            if not shards <= lease.live_shards(lease.redis_client(redis_url)):
                return False
            sources = list(LogSource.objects.filter(jail__name__in=ours))
            return len(sources) == len(ours) and all(s.inode is not None for s in sources)
        if name == "counts":
            jail, path = argument
            failures = Failure.objects.filter(jail__name=jail).count()
            bans = Ban.objects.filter(jail_name=jail).count()
            offsets = list(LogSource.objects.filter(jail__name=jail).values_list("offset", flat=True))
            size = os.path.getsize(path)
            return failures, bans, bool(offsets) and all(offset >= size for offset in offsets)
        if name == "postgres_pids":  # our database's backends, except this helper's own
            with connection.cursor() as cursor:
                cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                               "AND pid <> pg_backend_pid()")
                return [row[0] for row in cursor.fetchall()]
        raise ValueError(name)

    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        try:
            conn.send(("ok", handle(*request)))
        except Exception as exc:  # the benchmark shows it; a transient error must not kill the helper
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def backend_pid() -> int | None:
    """The PostgreSQL server process of Django's connection in this process (None on SQLite)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


class Probe:
    def __init__(self, env: dict[str, str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=probe_main, args=(child, env), daemon=True)
        self.process.start()
        child.close()
        self._lock = threading.Lock()

    def ask(self, name: str, argument: Any = None) -> Any:
        with self._lock:
            self.conn.send((name, argument))
            if not self.conn.poll(120):
                raise SystemExit(f"the database helper did not answer {name!r} within 120 s")
            status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"database helper, {name}: {value}")
        return value

    def close(self) -> None:
        with suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()


def stack_started(output: str) -> bool:
    """Whether runstack's output says both workers are ready and beat has started."""
    lines = output.splitlines()
    return "beat: Starting" in output and all(any(f"{worker}@" in line and " ready." in line for line in lines)
                                              for worker in ("watchers", "firewall-local"))


class Ours(Tool):
    """The stack of bench/latency.py on a fresh database, jails imported with `importconf`."""

    def __init__(self, workdir: Path, db: str, backend: str, redis_db: int) -> None:
        self.name = f"ours-{db}"
        self.workdir, self.db, self.redis_db = workdir, db, redis_db
        self.logs, self.confdir = fresh_logs(workdir, backend)
        if db == "postgres":
            latency.create_postgres(workdir)
        self.env = latency.product_env(workdir, redis_db, latency.database_url(db, workdir))
        self.imported = self._import()
        self.probe = Probe(self.env)
        self._stack: Any = None
        self._redis_pid: int | None = None
        self.children: list[Any] = []
        self.meter = StackMeter(self._roots, self._extras)

    def _import(self) -> str:
        """migrate (the default schedules, followers included), then the configuration directory."""
        outputs = []
        for command in (["migrate", "--noinput"], ["importconf", str(self.confdir)]):
            done = subprocess.run([latency.PYTHON, "manage.py", *command], cwd=REPO, env=self.env,
                                  capture_output=True, text=True, timeout=300, check=False)
            if done.returncode != 0:
                raise SystemExit(f"manage.py {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
            outputs.append(done.stdout)
        return outputs[-1]

    def _roots(self) -> list[int]:
        return [c.process.pid for c in self.children]

    def _extras(self) -> dict[str, list[int]]:
        extras = {"redis": [self._redis_pid] if self._redis_pid else []}
        if self.db == "postgres" and self._stack is not None:
            extras["postgres"] = self.probe.ask("postgres_pids")
        return extras

    def start(self, timeout: float = latency.START_WAIT) -> dict[str, Any]:
        import redis

        prepared = self.probe.ask("prepare")
        shards = self.probe.ask("shards")
        # the whole stack as scripts/run.sh runs it (manage.py runstack, the web panel included: its
        # memory counts), with a Redis of its own as run.sh starts one (hz 1, over TCP; its CPU counts)
        self._stack = latency.runstack_in_namespace(self.workdir, self.env, self.redis_db, own_redis=True)
        stack, _watch = self._stack.__enter__()
        self.children = [stack]
        own_redis = latency.own_redis_url(self.workdir)
        self._redis_pid = int(redis.Redis(unix_socket_path=str(self.workdir / latency.OWN_REDIS_SOCKET))
                              .info("server")["process_id"])
        latency.wait_until(lambda: stack.alive() and stack_started(stack.output()), timeout, "the workers and beat",
                           self.children)
        latency.wait_until(lambda: self.probe.ask("ready", (shards, own_redis)), timeout, "the followers",
                           self.children)
        return {**prepared, "follower_shards": len(shards)}

    def counts(self, jail: str) -> Counts:
        scenario = next(s for s in SCENARIOS.values() if s.jail == jail)
        failures, bans, done = self.probe.ask("counts", (jail, str(self.logs / scenario.log)))
        return Counts(failures, bans, done)

    def check_alive(self) -> None:
        for child in self.children:
            if not child.alive():
                raise SystemExit(f"{child.name} exited:\n{child.digest()}")

    def problems(self) -> list[str]:
        """Errors in the workers' logs (a crash to report, even when the counts came out right)."""
        found = []
        for child in self.children:
            for line in child.output().splitlines():
                if any(word in line for word in ("ERROR", "CRITICAL", "Traceback")):
                    found.append(f"{child.name}: {line[:300]}")
        return found[:20]

    def info(self) -> dict[str, Any]:
        return {"database": latency.DATABASES[self.db], "import": self.imported.strip().splitlines()[-12:],
                "firewall": "nftables in a network namespace (bans applied for real there)"}

    def close(self) -> None:
        self.meter.close()
        try:
            if self._stack is not None:
                self._stack.__exit__(None, None, None)
        finally:
            self.probe.close()
            if self.db == "postgres":
                subprocess.run(["dropdb", "--if-exists", latency.postgres_name(self.workdir)], check=False,
                               timeout=60)


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Waited:
    counts: Counts
    final_at: float  # perf_counter when the final failure count was first seen
    finished: bool  # the count became final (False: gave up)
    reached_witness: bool
    samples: list[tuple[float, int]] = field(default_factory=list)


def wait_counted(tool: Tool, jail: str, target: int, base: Counts, since: float, give_up: Callable[[float], bool],
                 ) -> Waited:
    """Poll until the failures reach `target` (the generator's count), or stop changing for SETTLE s
    (for ours, with the reader at the end of the file too), or `give_up(now)`."""
    last = tool.counts(jail)
    final_at, samples = time.perf_counter(), [(0.0, last.failures - base.failures)]
    while True:
        now = time.perf_counter()
        if last.failures >= target:
            return Waited(last, final_at, True, last.failures == target, samples)
        if now - final_at >= SETTLE and last.done_reading is not False and last.failures > base.failures:
            return Waited(last, final_at, True, False, samples)
        if give_up(now):
            return Waited(last, final_at, False, False, samples)
        if isinstance(tool, Ours):
            tool.check_alive()
        time.sleep(POLL)
        counted = tool.counts(jail)
        if counted.failures != last.failures:
            final_at = time.perf_counter()
            samples.append((round(final_at - since, 2), counted.failures - base.failures))
        last = counted


def settle_bans(tool: Tool, jail: str, target: int, counts: Counts) -> Counts:
    """fail2ban bans in its actions thread, a little after counting: wait until the bans reach the
    generator's count or stop changing for BANS_STABLE_SECONDS (at most BANS_WAIT_SECONDS). Not part
    of the lines/s, which end at the last failure counted. On a slow machine fail2ban's action
    thread (a shell per ban) paused for more than the 3 s this used to wait, mid-way through a
    flood's 11,219 bans: a mismatch that was only the wait's."""
    deadline, stable_since = time.monotonic() + BANS_WAIT_SECONDS, time.monotonic()
    while (counts.bans < target and time.monotonic() - stable_since < BANS_STABLE_SECONDS
           and time.monotonic() < deadline):
        time.sleep(POLL)
        again = tool.counts(jail)
        if again.bans != counts.bans or again.failures != counts.failures:
            stable_since = time.monotonic()
        counts = again
    return counts


def burst(tool: Tool, scenario: Scenario, batch: Batch, log: Path) -> dict[str, Any]:
    """All of `batch` appended with one write(); time until every failure is counted."""
    lines = len(batch.templates)
    base = tool.counts(scenario.jail)
    cpu0 = tool.meter.cpu()
    data = dated(batch.templates, stamp_for(scenario))
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        started = time.perf_counter()
        write_all(fd, data)
        written = time.perf_counter()
    finally:
        os.close(fd)
    limit = written + lines / MIN_RATE + 120
    waited = wait_counted(tool, scenario.jail, base.failures + batch.failures, base, started, lambda now: now > limit)
    cpu1, pss = tool.meter.cpu(), tool.meter.pss()
    counts = settle_bans(tool, scenario.jail, base.bans + batch.bans(), waited.counts)
    seconds = waited.final_at - started
    cpu = cpu_delta(cpu1, cpu0)
    failures, bans = counts.failures - base.failures, counts.bans - base.bans
    return {
        "lines": lines, "bytes": len(data), "finished": waited.finished,
        "write_seconds": round(written - started, 3), "seconds": round(seconds, 2),
        "lines_per_s": round(lines / seconds) if waited.finished else None,
        "failures_per_s": round(failures / seconds) if waited.finished else None,
        "lag_s": round(waited.final_at - written, 2) if waited.finished else None,
        "failures": failures, "bans": bans,
        "witness": {"failures": batch.failures, "bans": batch.bans(), "agrees": failures == batch.failures
                    and bans == batch.bans()},
        "cpu_s": cpu, "cpu_s_per_100k_lines": round(cpu["total"] * 100_000 / lines, 2),
        "pss_mb_at_end": round(pss["total_kb"] / 1024, 1), "pss_parts_mb": {k: round(v / 1024, 1) for k, v in
                                                                           pss.items()},
        "pss_mb_peak": round(tool.meter.peak_pss_kb / 1024, 1),
        "pss_parts_mb_at_peak": {k: round(v / 1024, 1) for k, v in tool.meter.peak_parts_kb.items()},
        "pss_mb_at_peak_by_process": [[title, round(kb / 1024, 1)] for title, kb in tool.meter.peak_processes_kb],
        "progress": thin(waited.samples),
    }


def thin(samples: list[tuple[float, int]], keep: int = 40) -> list[tuple[float, int]]:
    """At most `keep` (seconds since the write, failures counted) points, for the JSON."""
    if len(samples) <= keep:
        return samples
    step = len(samples) / keep
    return [samples[int(i * step)] for i in range(keep)] + [samples[-1]]


def steady(tool: Tool, scenario: Scenario, log: Path, rate: int, seconds: float, seed: int,
           before: dict[str, int]) -> dict[str, Any]:
    """`rate` lines/s for `seconds`, one write() every 10 ms; kept up when the lag after the last
    write stays under KEPT_UP_LAG. `before`: failures per address written earlier in this stack
    (the witness's ban count carries them over; updated here)."""
    batch = BATCHES[scenario.name](int(rate * seconds), seed)
    witness_bans = batch.bans(before)
    for address, n in batch.per_address.items():
        before[address] = before.get(address, 0) + n
    base = tool.counts(scenario.jail)
    cpu0 = tool.meter.cpu()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    sent, started = 0, time.perf_counter()
    try:
        while sent < len(batch.templates):
            due = min(len(batch.templates), int((time.perf_counter() - started) * rate) + 1)
            if due > sent:
                write_all(fd, dated(batch.templates[sent:due], stamp_for(scenario)))
                sent = due
            time.sleep(STEADY_TICK)
        written = time.perf_counter()
    finally:
        os.close(fd)
    waited = wait_counted(tool, scenario.jail, base.failures + batch.failures, base, started,
                          lambda now: now - written > KEPT_UP_LAG + SETTLE)
    cpu = cpu_delta(tool.meter.cpu(), cpu0)
    lag = waited.final_at - written
    kept = waited.finished and lag <= KEPT_UP_LAG
    counts = settle_bans(tool, scenario.jail, base.bans + witness_bans, waited.counts) if kept else waited.counts
    return {"rate": rate, "seconds": seconds, "lines": len(batch.templates),
            "written_lines_per_s": round(len(batch.templates) / (written - started)),
            "kept_up": kept, "lag_s": round(lag, 2) if waited.finished else None,
            "failures": counts.failures - base.failures, "bans": counts.bans - base.bans,
            "witness_failures": batch.failures, "witness_bans": witness_bans, "cpu_s": cpu["total"],
            "cpu_percent": round(cpu["total"] * 100 / (time.perf_counter() - started))}


def steady_search(tool: Tool, scenario: Scenario, log: Path, rates: Sequence[int], seconds: float,
                  seed: int, burst_batch: Batch) -> dict[str, Any]:
    """Rates in increasing order until the first not kept up with."""
    trials, before = [], dict(burst_batch.per_address)
    for index, rate in enumerate(rates):
        print(f"  {tool.name}: steady {rate:,} lines/s for {seconds:g} s", flush=True)
        trial = steady(tool, scenario, log, rate, seconds, seed + 1000 + index, before)
        trials.append(trial)
        print(f"    kept up: {trial['kept_up']}, lag {trial['lag_s']} s", flush=True)
        if not trial["kept_up"]:
            break
    kept = [t["rate"] for t in trials if t["kept_up"]]
    return {"highest_kept_up": max(kept) if kept else None, "trials": trials,
            "untried_above": [r for r in rates if r > trials[-1]["rate"]]}


def idle(tool: Tool, seconds: float, settle: float = 0.0) -> dict[str, Any]:
    """The stack's CPU over `seconds` of nothing written, `settle` seconds after it started (its
    first reads, beat's first schedules and the followers' start are start-up, not idleness)."""
    time.sleep(settle)
    before, since = tool.meter.cpu(), time.perf_counter()
    time.sleep(seconds)
    spent = cpu_delta(tool.meter.cpu(), before)
    elapsed = time.perf_counter() - since
    return {"seconds": round(elapsed, 1), "settled_s": settle, "cpu_s": spent,
            "cpu_percent": round(spent["total"] * 100 / elapsed, 2), "pss_mb": round(tool.meter.pss()["total_kb"] /
                                                                                   1024, 1)}


# --- the run --------------------------------------------------------------------------------------


@contextmanager
def started(kind: str, backend: str, redis_db: int, keep: bool) -> Iterator[tuple[Tool, dict[str, Any]]]:
    """A tool on a fresh log directory and fresh state, stopped and cleaned up on the way out."""
    workdir = Path(tempfile.mkdtemp(prefix="ipsp-"))  # short: unix socket paths have at most 107 bytes
    tool: Fail2ban | Ours | None = None
    ok = False
    try:
        if kind == "fail2ban":
            tool = Fail2ban(workdir, backend)
            tool.wait_ready()
            startup: dict[str, Any] = {}
        else:
            tool = Ours(workdir, kind.removeprefix("ours-"), backend, redis_db)
            startup = tool.start()
        yield tool, startup
        ok = True
    finally:
        if tool is not None:
            tool.close()
        if keep or not ok:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_one(kind: str, scenario: Scenario, lines: int, args: argparse.Namespace, backend: str, with_idle: bool,
            with_steady: bool) -> dict[str, Any]:
    print(f"{scenario.name} {lines:,} lines: {kind}", flush=True)
    batch = BATCHES[scenario.name](lines, args.seed)
    with started(kind, backend, args.redis_db, args.keep) as (tool, startup):
        result: dict[str, Any] = {"tool": kind, "info": tool.info(), "startup": startup}
        if with_idle:
            print(f"  {kind}: idle {args.idle_seconds:g} s, {args.idle_settle:g} s after start", flush=True)
            result["idle"] = idle(tool, args.idle_seconds, args.idle_settle)
        log = tool.logs / scenario.log  # type: ignore[attr-defined]
        result["burst"] = burst(tool, scenario, batch, log)
        b = result["burst"]
        print(f"  {kind}: {b['lines_per_s']} lines/s, lag {b['lag_s']} s, failures {b['failures']}, "
              f"bans {b['bans']}, CPU {b['cpu_s_per_100k_lines']} s/100k lines", flush=True)
        if with_steady and b["finished"]:
            result["steady"] = steady_search(tool, scenario, log, args.rate_list, args.steady_seconds, args.seed,
                                             batch)
        if isinstance(tool, Ours):
            result["worker_errors"] = tool.problems()
    return result


def compare(cell: dict[str, Any]) -> tuple[list[str], list[str]]:
    """MISMATCH lines: the bursts' counts differ between the tools. NOTE lines: a steady trial both
    kept up with counted differently. Those are notes only: the steady trials run on the state
    the burst left (tallies below maxretry, addresses banned), and fail2ban itself gave 13 and 17
    bans on two runs of the same lines there (generator: 18), see bench/README.md."""
    reference = cell["tools"].get("fail2ban")
    if reference is None:
        return [], []
    problems, notes = [], []
    for kind, result in cell["tools"].items():
        if kind == "fail2ban":
            continue
        for what in ("failures", "bans"):
            theirs, ours = reference["burst"][what], result["burst"][what]
            if not (reference["burst"]["finished"] and result["burst"]["finished"]) or theirs != ours:
                problems.append(f"MISMATCH {cell['scenario']} {cell['lines']} lines, {what}: fail2ban {theirs} vs "
                                f"{kind} {ours}" + ("" if result["burst"]["finished"] else " (ours never finished)"))
        pairs = zip(reference.get("steady", {}).get("trials", []), result.get("steady", {}).get("trials", []),
                    strict=False)
        for mine, other in pairs:
            if mine["rate"] == other["rate"] and mine["kept_up"] and other["kept_up"]:
                for what in ("failures", "bans"):
                    if mine[what] != other[what]:
                        notes.append(f"NOTE {cell['scenario']} steady {mine['rate']} lines/s, {what}: fail2ban "
                                     f"{mine[what]} vs {kind} {other[what]} (generator: "
                                     f"{mine['witness_' + what]})")
    return problems, notes


def ratios(cell: dict[str, Any]) -> dict[str, Any]:
    reference = cell["tools"].get("fail2ban")
    found: dict[str, Any] = {}
    if reference is None:
        return found
    for kind, result in cell["tools"].items():
        if kind == "fail2ban":
            continue
        mine, theirs = result["burst"], reference["burst"]

        def ratio(a: float | None, b: float | None) -> float | None:
            return round(a / b, 2) if a and b else None

        found[kind] = {"lines_per_s": ratio(mine["lines_per_s"], theirs["lines_per_s"]),
                       "cpu_per_100k": ratio(mine["cpu_s_per_100k_lines"], theirs["cpu_s_per_100k_lines"]),
                       "pss": ratio(mine["pss_mb_peak"], theirs["pss_mb_peak"]),
                       "steady": ratio(result.get("steady", {}).get("highest_kept_up"),
                                       reference.get("steady", {}).get("highest_kept_up"))}
    return found


def table(result: dict[str, Any]) -> str:
    header = (f"{'scenario':<8} {'lines':>9} {'tool':<15} {'lines/s':>8} {'fail/s':>7} {'CPU/100k':>8} "
              f"{'PSS MB':>7} {'lag s':>6} {'failures':>8} {'bans':>6} {'steady':>8}")
    rows = [header]
    for cell in result["cells"]:
        for kind, r in cell["tools"].items():
            b = r["burst"]
            kept_text = steady_text(r.get("steady"))
            rows.append(f"{cell['scenario']:<8} {cell['lines']:>9,} {kind:<15} {fmt(b['lines_per_s']):>8} "
                        f"{fmt(b['failures_per_s']):>7} {b['cpu_s_per_100k_lines']:>8} {b['pss_mb_peak']:>7} "
                        f"{fmt(b['lag_s']):>6} {b['failures']:>8} {b['bans']:>6} {kept_text:>8}")
        for kind, r in cell["ratios"].items():
            rows.append(f"{'':<8} {'':>9} {'ratio ' + kind.removeprefix('ours-'):<15} {fmt(r['lines_per_s']):>8} "
                        f"{'':>7} {fmt(r['cpu_per_100k']):>8} {fmt(r['pss']):>7} {'':>6} {'':>8} {'':>6} "
                        f"{fmt(r['steady']):>8}")
    rows.append("ratio = ours / fail2ban (lines/s and steady: higher is better for ours; CPU and PSS: lower is)")
    for kind, data in result["idle"].items():
        rows.append(f"idle {kind}: {data['cpu_percent']}% of one CPU over {data['seconds']} s "
                    f"(parts, CPU s: {data['cpu_s']}), PSS {data['pss_mb']} MB")
    return "\n".join(rows)


def steady_text(search: dict[str, Any] | None) -> str:
    """The highest rate kept up with: "<N" when not the lowest tried, ">=N" when every rate tried."""
    if not search:
        return "-"
    kept, trials = search["highest_kept_up"], search["trials"]
    if kept is None:
        return f"<{trials[0]['rate']}"
    return f">={kept}" if trials[-1]["kept_up"] else str(kept)


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:,}" if isinstance(value, int) else str(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The live pipeline (log appended -> failures counted -> bans) of our stack against a live "
                    "fail2ban-server, side by side in one run (root; builds network namespaces; needs Redis on "
                    "127.0.0.1:6379 and, for --db postgres, the local PostgreSQL). The full run (both sizes, "
                    "SQLite) takes about 1.5-2 hours, most of it our side on 1,000,000 lines; --quick about 10 "
                    "minutes.",
        epilog="Results: a table on standard output and the JSON in --json-out. Exit status 1 when the tools "
               "count different failures or bans (MISMATCH lines), 0 otherwise; timings are never asserted.")
    parser.add_argument("--quick", action="store_true",
                        help="a fast check: --sizes 100000, --db sqlite, --rates 2000,5000,10000,20000, "
                             "--steady-seconds 8, --idle-seconds 15 (each unless given explicitly)")
    parser.add_argument("--sizes", default=None,
                        help="lines per burst, comma separated, each with fresh state (default 200000,1000000)")
    parser.add_argument("--scenarios", default="sshd,apache,flood",
                        help="which of sshd (auth.log, 8%% failures), apache (access.log, 2.5%% scans, seed "
                             "apache-envscan), flood (50%% sshd failures from 20,000 addresses); default all")
    parser.add_argument("--db", default=None,
                        help="our database(s), comma separated: sqlite (a new file), postgres (a new database on "
                             "the local server, dropped afterwards); default sqlite")
    parser.add_argument("--tools", default="fail2ban,ours",
                        help="fail2ban, ours, or both (default); without fail2ban there is no comparison")
    parser.add_argument("--rates", default=None,
                        help="steady rates to try, lines/s, in increasing order until one is not kept up with "
                             "(default 1000,2000,5000,10000,20000,50000,100000); 'none' skips the search")
    parser.add_argument("--steady-seconds", type=float, default=None,
                        help="how long each steady rate is written (default 15)")
    parser.add_argument("--steady-sizes", default="first",
                        help="after which bursts the steady search runs: 'first' size only (default) or 'all'")
    parser.add_argument("--idle-settle", type=float, default=30.0,
                        help="seconds after start before the idle CPU is measured (default 30)")
    parser.add_argument("--idle-seconds", type=float, default=None,
                        help="the idle stack's CPU is measured this long, --idle-settle seconds after start, once "
                             "per tool (default 30; 0 skips it)")
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("IPS_E2E_REDIS_DB", "15")),
                        help="a database of the machine's Redis, checked before the run (default 15); our stack "
                             "runs with a Redis of its own, started and stopped with it, as scripts/run.sh does")
    parser.add_argument("--fail2ban-action", choices=["dummy", "noop"], default="dummy",
                        help="fail2ban's ban action: dummy (default; Debian's action.d/dummy.conf, a shell per ban "
                             "writing to a file of the run, as issue 10 measured) or noop (empty commands: fail2ban "
                             "runs nothing per ban, which no real deployment does)")
    parser.add_argument("--seed", type=int, default=genlogs.DEFAULT_SEED, help="the generators' seed")
    parser.add_argument("--json-out", type=Path, default=RESULTS, help=f"default {RESULTS.relative_to(REPO)}")
    parser.add_argument("--keep", action="store_true", help="keep each run's work directory (logs, databases, "
                                                           "process output)")
    args = parser.parse_args(argv)
    global FAIL2BAN_ACTION
    FAIL2BAN_ACTION = args.fail2ban_action
    quick = args.quick
    args.size_list = [int(s) for s in (args.sizes or ("100000" if quick else "200000,1000000")).split(",") if s]
    args.db_list = [d.strip() for d in (args.db or "sqlite").split(",") if d.strip()]
    rates = args.rates or ("2000,5000,10000,20000" if quick else "1000,2000,5000,10000,20000,50000,100000")
    args.rate_list = [] if rates == "none" else sorted(int(r) for r in rates.split(","))
    args.steady_seconds = args.steady_seconds or (8.0 if quick else 15.0)
    args.idle_seconds = args.idle_seconds if args.idle_seconds is not None else (15.0 if quick else 30.0)
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for name in args.scenario_list:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    for db in args.db_list:
        if db not in latency.DATABASES:
            parser.error(f"unknown database {db!r} (known: {', '.join(latency.DATABASES)})")
    tools = {t.strip() for t in args.tools.split(",")}
    args.kinds = (["fail2ban"] if "fail2ban" in tools else []) + ([f"ours-{db}" for db in args.db_list]
                                                                   if "ours" in tools else [])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    latency.preflight(args.redis_db)
    backend = fail2ban_backend() if "fail2ban" in args.kinds else "auto"
    for path in (CORPUS / "sshd.conf", CORPUS / "common.conf", SEED_FILTERS / "apache-envscan.conf"):
        if not path.is_file():
            raise SystemExit(f"missing filter file {path}")
    result: dict[str, Any] = {
        "benchmark": "pipeline", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick, "machine": latency.machine(), "load_1min_before": round(os.getloadavg()[0], 2),
        "config": {"maxretry": MAXRETRY, "findtime": FINDTIME, "bantime": BANTIME, "fail2ban_backend": backend,
                   "poll_seconds": POLL, "settle_seconds": SETTLE, "kept_up_lag_seconds": KEPT_UP_LAG,
                   "steady_seconds": args.steady_seconds, "rates": args.rate_list, "sizes": args.size_list,
                   "seed": args.seed, "scenarios": {n: SCENARIOS[n].title for n in args.scenario_list}},
        "cells": [], "idle": {}}
    print(f"fail2ban backend: {backend}; tools: {', '.join(args.kinds)}", flush=True)
    problems: list[str] = []
    notes: list[str] = []
    for name in args.scenario_list:
        for index, lines in enumerate(args.size_list):
            cell: dict[str, Any] = {"scenario": name, "title": SCENARIOS[name].title, "lines": lines, "tools": {}}
            for kind in args.kinds:
                with_idle = args.idle_seconds > 0 and kind not in result["idle"]
                with_steady = bool(args.rate_list) and (index == 0 or args.steady_sizes == "all")
                outcome = run_one(kind, SCENARIOS[name], lines, args, backend, with_idle, with_steady)
                if "idle" in outcome:
                    result["idle"][kind] = outcome["idle"]
                cell["tools"][kind] = outcome
            cell["ratios"] = ratios(cell)
            found, differ = compare(cell)
            cell["mismatches"], cell["steady_count_notes"] = found, differ
            problems += found
            notes += differ
            result["cells"].append(cell)
            write_json(args.json_out, result)  # what is done so far survives a later crash
    result["load_1min_after"] = round(os.getloadavg()[0], 2)
    result["status"] = "mismatch" if problems else "ok"
    write_json(args.json_out, result)
    print(table(result))
    for line in notes + problems:
        print(line)
    print(f"written: {args.json_out}")
    return 1 if problems else 0


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
