"""Faults during a burst of attack lines: the totals must equal those of the burst without the fault.

The stack is the end-to-end test's (tests/e2e/stack.py): the watcher worker and Celery beat as child
processes in the host namespace, the firewall worker inside a server namespace (its nftables changes
stay there), all on a redis-server of the test's own (loopback, a free port, no persistence) that
the firewall worker reaches through a unix-socket bridge. Two jails (sshd, postfix-sasl, maxretry 3)
read two log files under tmp_path. The logs are read by beat's 2 s reads, or by the followers
(watchers.tasks.follow) when they exist: each fault runs with both.

The burst: 300 addresses write `maxretry` failures each and 50 write one fewer, round after round
over about 5 s, in chunks, across both logs (1000 lines); half-way, 250 lines at once (a surge), then
one fault:

- none: the control run;
- the watcher worker is SIGKILLed (its whole process group) while a read is inside its transaction,
  then started again;
- the firewall worker is SIGKILLed while bans are being applied (APPLYING), then started again;
- Redis is stopped, stays down for 2 s while lines keep coming, and starts again EMPTY (every
  queued message is lost);
- both logs are rotated by rename (logrotate "create"; the daemon writes two more chunks to the
  renamed file before it reopens), or by copytruncate.

After it: each jail has exactly one Failure row per line written, one Ban per address that wrote
maxretry lines (ACTIVE), a Tally of maxretry-1 for the others, and the kernel's sets hold exactly
the banned addresses. A doubled or a lost line changes one of these; the message names them.
Known bugs are marked xfail with their cause (KNOWN_BUGS).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.db.models import Count
from django_celery_beat.models import PeriodicTask

from bans.models import Ban, Failure, FirewallHost, Tally
from bans.status import firewall_status
from jails.builtin import install_builtin_filters
from jails.models import Filter, Jail
from tests.bans.netns import Driver, NamespacePair, RemoteFirewall
from tests.e2e.faults import (
    Burst,
    JailPlan,
    OwnRedis,
    Writer,
    addresses,
    kill_inside_a_read,
    rotate_by_copytruncate,
    rotate_by_rename,
    sasl_line,
    sshd_line,
)
from tests.e2e.stack import Child, RedisBridge, wait_for
from tests.paths import REPO
from watchers.models import LogSource

pytestmark = [pytest.mark.worker, pytest.mark.netns, pytest.mark.django_db(transaction=True)]

PYTHON = str(REPO / ".venv" / "bin" / "python")
START_WAIT = 60.0  # three Django processes starting on two cores
SETTLE_WAIT = 50.0  # a lost sync message is re-sent by beat's "apply pending bans" every 30 s
MAXRETRY = 3
CHUNK, PACE = 25, 0.15  # 1000 lines in 40 chunks, 30 paced: 4.5 s, so beat (every 2 s) reads it in pieces
SURGE = 10  # chunks written at once half-way: a read long enough to be killed inside
REDIS_DOWN = 2.0

LOGS = {"sshd": "auth.log", "postfix-sasl": "mail.log"}


def the_burst() -> Burst:
    """300 banned addresses (20 of them IPv6) and 50 that stay one failure short, in two jails."""
    return Burst(maxretry=MAXRETRY, plans=(
        JailPlan("sshd", LOGS["sshd"], sshd_line, banned=addresses("198.18.1.0", 150),
                 few=addresses("198.18.200.0", 25)),
        JailPlan("postfix-sasl", LOGS["postfix-sasl"], sasl_line,
                 banned=addresses("198.19.1.0", 130) + addresses("2001:db8:f::1", 20),
                 few=addresses("198.19.200.0", 25)),
    ))


# --- the stack ------------------------------------------------------------------------------------


@dataclass
class Stack:
    env: dict[str, str]
    logs: Path
    directory: Path
    server: Driver
    redis: OwnRedis
    children: list[Child]
    watcher_processes: int
    namespace: str  # the server namespace, where the firewall worker runs
    firewall_redis_url: str  # through the bridge: the namespace's loopback is not the host's
    events: list[str] = field(default_factory=list)
    killed: list[Child] = field(default_factory=list)  # by the test: their exit is no failure

    def worker(self, name: str) -> Child:
        return next(child for child in reversed(self.children) if child.name.startswith(name))

    def start_watchers(self, name: str = "watchers") -> Child:
        # tests.e2e.slowreads: our app, each read holding its transaction 50 ms (kill_the_watcher)
        child = Child.start(name, [PYTHON, "-m", "celery", "-A", "tests.e2e.slowreads", "worker", "-Q", "celery",
                                   "--concurrency",
                                   str(self.watcher_processes), "--hostname", "w@%h", "--loglevel", "INFO"],
                            self.env, self.directory)
        self.children.append(child)
        return child

    def start_firewall(self, name: str = "firewall") -> Child:
        child = Child.start(name, ["ip", "netns", "exec", self.namespace, PYTHON, "-m", "celery", "-A", "config",
                                   "worker", "-Q", "firewall.local", "--pool", "solo", "--concurrency", "1",
                                   "--hostname", "fw@%h", "--loglevel", "INFO"],
                            {**self.env, "IPS_REDIS_URL": self.firewall_redis_url}, self.directory)
        self.children.append(child)
        return child


# Who reads the logs: "beat" (read_all_sources every 2 s, one worker process, as the end-to-end test
# runs it) or "follow" (the followers, one worker process each plus one, as runstack starts them).
FOLLOW_SCHEDULES = "watchers.migrations.0003_follow_schedule"
READERS = ["beat"] + (["follow"] if importlib.util.find_spec(FOLLOW_SCHEDULES) is not None else [])


@pytest.fixture
def stack(pair: NamespacePair, own_redis: OwnRedis, bridge: RedisBridge, children: list[Child],
          settings_db_env: dict[str, str], tmp_path: Path, reader: str) -> Stack:
    logs = tmp_path / "log"
    logs.mkdir()
    for name in LOGS.values():
        (logs / name).touch()
    make_jails(logs)
    followers = install_schedules(follow=reader == "follow")
    env: dict[str, Any] = {**settings_db_env, "IPS_HOST_NAME": "local", "IPS_FIREWALL": "nftables",
                           "IPS_NFT_TABLE": "ips", "IPS_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
                           "IPS_REDIS_URL": own_redis.url}
    stack = Stack(env=env, logs=logs, directory=tmp_path, server=pair.driver(pair.server), redis=own_redis,
                  children=children, watcher_processes=1 + followers, namespace=pair.server,
                  firewall_redis_url=bridge.url(0))
    celery = [PYTHON, "-m", "celery", "-A", "config"]
    stack.start_watchers()
    stack.start_firewall()
    children.append(Child.start("beat", [*celery, "beat", "-S", "config.beat:Scheduler",
                                         "--loglevel", "INFO", "--pidfile", str(tmp_path / "beat.pid")], env, tmp_path))
    with diagnostics(stack):
        assert wait_for(lambda: all(ready(child) for child in children), START_WAIT), "the workers or beat are down"
        assert wait_for(lambda: sources_read_to_end(logs), START_WAIT), "the first reads did not happen"
        if followers:  # the burst must meet the followers, not the 2 s reads they replace
            assert wait_for(lambda: stack.worker("watchers").output().count(": following for ") >= followers,
                            START_WAIT), "the followers did not start"
    return stack


def ready(child: Child) -> bool:
    assert child.alive(), f"{child.name} exited with status {child.process.returncode}:\n{child.tail()}"
    return ("beat: Starting" if child.name == "beat" else " ready.") in child.output()


def make_jails(logs: Path) -> None:
    install_builtin_filters()
    for name, port in (("sshd", "ssh"), ("postfix-sasl", "smtp,submission,submissions")):
        jail = Jail(name=name, enabled=True, filter=Filter.objects.get(name=name), logpath=[str(logs / LOGS[name])],
                    backend=Jail.Backend.POLLING, maxretry=MAXRETRY, findtime=600, bantime=3600, port=port)
        jail.full_clean()
        jail.save()


def install_schedules(*, follow: bool) -> int:
    """The default schedules, as the migrations make them (a transactional test before this one
    flushed them): read every 2 s, apply pending bans every 30 s, reconcile every 5 min, and with
    `follow` the followers' (else none: the migration's rows are removed). Returns how many followers."""
    importlib.import_module("watchers.migrations.0002_default_schedules").create(apps, None)
    if importlib.util.find_spec(FOLLOW_SCHEDULES) is None:
        return 0
    module = importlib.import_module(FOLLOW_SCHEDULES)
    if not follow:
        module.remove(apps, None)
        return 0
    module.create(apps, None)
    # one worker process per follower, as runstack gives them (the follow task declines otherwise)
    return int(PeriodicTask.objects.filter(task="watchers.tasks.follow", enabled=True).count())


@contextlib.contextmanager
def diagnostics(stack: Stack, writer: Writer | None = None) -> Iterator[None]:
    """On failure, print what explains it: what happened when, the processes' logs, the rows."""
    try:
        yield
    except BaseException:
        if writer is not None:
            stack.events.extend(writer.events)
        print(describe(stack))
        raise


def describe(stack: Stack) -> str:
    parts = ["===== events\n" + "\n".join(stack.events)]
    for child in stack.children:
        parts.append(f"===== {child.name} (exit status {child.process.poll()}), from {child.log}\n{child.digest()}")
    parts.append(f"===== redis (port {stack.redis.port})\n{stack.redis.logs()}")
    try:
        sets = RemoteFirewall(stack.server).snapshot()
        parts.append("===== kernel: " + ", ".join(f"{jail}: {len(elements)}" for jail, elements in sets.items()))
    except Exception as exc:  # the table may not exist yet
        parts.append(f"===== kernel: {exc}")
    parts.append("===== bans by state: " + repr(dict(Ban.objects.values_list("state").annotate(n=Count("id")))))
    parts.append("===== failures by jail: " + repr(dict(Failure.objects.values_list("jail__name").annotate(
        n=Count("id")))))
    parts.append("===== sources\n" + "\n".join(
        f"{s.jail.name} {s.path} inode={s.inode} offset={s.offset} lines={s.lines_read} health={s.health} "
        f"{s.health_reason}" for s in LogSource.objects.select_related("jail")))
    parts.append("===== firewall hosts\n" + "\n".join(
        f"{h.name} {h.state} {h.reason!r} seen={h.last_seen_at}" for h in FirewallHost.objects.all()))
    return "\n".join(parts)


# --- what the run left ----------------------------------------------------------------------------


def sources_read_to_end(logs: Path) -> bool:
    sources = list(LogSource.objects.all())
    if len(sources) != len(LOGS):
        return False
    for source in sources:
        st = os.stat(source.path)
        if (source.inode, source.offset) != (st.st_ino, st.st_size):
            return False
    return True


def kernel(server: Driver) -> set[tuple[str, str]]:
    sets = RemoteFirewall(server).snapshot()
    return {(jail, str(net)) for jail, elements in sets.items() for net in elements}


def bans_in(*states: str) -> set[tuple[str, str]]:
    return set(Ban.objects.filter(state__in=states).values_list("jail_name", "network"))


def quiet(stack: Stack) -> bool:
    """Nothing left to do: every line read, no ban waiting, the kernel holding the active bans."""
    for child in stack.children:
        if child not in stack.killed:
            assert child.alive(), f"{child.name} exited with status {child.process.returncode}:\n{child.tail()}"
    if not sources_read_to_end(stack.logs):
        return False
    if bans_in(Ban.State.PENDING, Ban.State.APPLYING, Ban.State.FAILED, Ban.State.LIFTING):
        return False
    return kernel(stack.server) == bans_in(Ban.State.ACTIVE)


def totals_problems(burst: Burst, server: Driver) -> list[str]:
    """Every way the run differs from the burst's own totals, named (empty: equal)."""
    problems = []
    failures = dict(Failure.objects.values_list("jail__name").annotate(n=Count("id")))
    if failures != burst.expected_failures():
        problems.append(f"failures per jail {failures}, expected {burst.expected_failures()}")
    per_address = Failure.objects.values_list("jail__name", "address").annotate(n=Count("id"))
    wanted = {(jail, address): MAXRETRY for jail, network in burst.expected_bans()
              for address in [network.split("/")[0]]} | burst.expected_tallies()
    counted = {(jail, address): n for jail, address, n in per_address}
    doubled = sorted((key, n, wanted.get(key, 0)) for key, n in counted.items() if n > wanted.get(key, 0))
    lost = sorted((key, counted.get(key, 0), n) for key, n in wanted.items() if counted.get(key, 0) < n)
    if doubled:
        problems.append(f"{len(doubled)} addresses counted too often (key, counted, written): {doubled[:10]}")
    if lost:
        problems.append(f"{len(lost)} addresses with lines lost (key, counted, written): {lost[:10]}")
    bans = list(Ban.objects.values_list("jail_name", "network", "state"))
    if len(bans) != len(burst.expected_bans()) or {(j, n) for j, n, _ in bans} != burst.expected_bans():
        problems.append(f"{len(bans)} bans, expected {len(burst.expected_bans())}; extra "
                        f"{sorted({(j, n) for j, n, _ in bans} - burst.expected_bans())[:10]}, missing "
                        f"{sorted(burst.expected_bans() - {(j, n) for j, n, _ in bans})[:10]}")
    if {state for _, _, state in bans} - {Ban.State.ACTIVE}:
        problems.append(f"bans not active: {[b for b in bans if b[2] != Ban.State.ACTIVE][:10]}")
    tallies = {(t.jail.name, t.address): t.count for t in Tally.objects.select_related("jail")}
    if tallies != burst.expected_tallies():
        problems.append(f"{len(tallies)} tallies, expected {len(burst.expected_tallies())}; differing "
                        f"{sorted(set(tallies.items()) ^ set(burst.expected_tallies().items()))[:10]}")
    in_kernel = kernel(server)
    if in_kernel != burst.expected_bans():
        problems.append(f"kernel holds {len(in_kernel)} elements, expected {len(burst.expected_bans())}; extra "
                        f"{sorted(in_kernel - burst.expected_bans())[:10]}, missing "
                        f"{sorted(burst.expected_bans() - in_kernel)[:10]}")
    return problems


# --- the faults -----------------------------------------------------------------------------------


def no_fault(stack: Stack) -> None:
    stack.events.append("no fault")


def kill_the_watcher(stack: Stack) -> None:
    watchers = stack.worker("watchers")
    stack.killed.append(watchers)
    database = connection.settings_dict["NAME"] if connection.vendor == "sqlite" else None
    mid_read, what = kill_inside_a_read(watchers, database)
    stack.events.append(f"{what}; {unread_bytes(stack.logs)} bytes written and not yet read")
    stack.start_watchers("watchers-restarted")
    stack.events.append("watcher worker started again")
    assert mid_read, what


def unread_bytes(logs: Path) -> int:
    return sum(os.path.getsize(s.path) - s.offset for s in LogSource.objects.all()
               if s.inode == os.stat(s.path).st_ino)


def kill_the_firewall(stack: Stack) -> None:
    """SIGKILL the firewall worker between its claim of pending bans (APPLYING) and its verdict."""
    firewall = stack.worker("firewall")
    stack.killed.append(firewall)
    inside = wait_for(lambda: Ban.objects.filter(state=Ban.State.APPLYING).exists(), 10, interval=0.002)
    os.killpg(firewall.process.pid, signal.SIGKILL)
    firewall.process.wait(timeout=10)
    applying = Ban.objects.filter(state=Ban.State.APPLYING).count()
    stack.events.append(f"SIGKILL of the firewall worker {'with' if inside else 'WITHOUT'} bans being applied "
                        f"({applying} APPLYING after the kill)")
    stack.start_firewall("firewall-restarted")
    stack.events.append("firewall worker started again")
    assert inside, "no ban was being applied within 10 s"


def restart_redis(stack: Stack) -> None:
    down = stack.redis.restart(REDIS_DOWN)
    stack.events.append(f"redis restarted empty, unreachable for {down:.1f} s")


FAULTS: dict[str, tuple[Callable[[Stack], None], Callable[[Writer], int] | None]] = {
    # name: (what the test does half-way, what the log writer does half-way)
    "none": (no_fault, None),
    "kill-watcher": (kill_the_watcher, None),
    "kill-firewall": (kill_the_firewall, None),
    "restart-redis": (restart_redis, None),
    "rotate-rename": (no_fault, rotate_by_rename(old_chunks=2)),
    "rotate-copytruncate": (no_fault, rotate_by_copytruncate),
}


# Known bugs, reported with their fix; each mark goes once its fix lands (strict: a fix shows as XPASS).
KNOWN_BUGS: dict[str, Any] = {}  # none today; Redis restarts were one (fixed in config/broker.py)


def cases() -> list[Any]:
    """Every fault with every reader, but the firewall worker's own fault once: it reads no logs."""
    found = []
    for reader in READERS:
        for fault in FAULTS:
            if fault == "kill-firewall" and reader != "beat":
                continue
            mark = KNOWN_BUGS.get(f"{reader}-{fault}") or KNOWN_BUGS.get(fault)
            found.append(pytest.param(reader, fault, id=f"{reader}-{fault}", marks=[mark] if mark else []))
    return found


@pytest.mark.parametrize(("reader", "fault"), cases())
def test_it_keeps_failure_and_ban_totals_through_a_fault(stack: Stack, reader: str, fault: str) -> None:
    burst = the_burst()
    during, rotate = FAULTS[fault]
    writer = Writer(burst, stack.logs, chunk=CHUNK, pace=PACE, surge=SURGE, rotate=rotate)
    started = time.monotonic()
    with diagnostics(stack, writer), joined(writer):
        writer.start()
        assert writer.halfway.wait(timeout=30), "the writer did not reach half-way"
        during(stack)
        writer.join(timeout=60)
        assert not writer.is_alive() and writer.error is None, f"the writer failed: {writer.error!r}"
        written = time.monotonic() - started
        settled = wait_for(lambda: quiet(stack), SETTLE_WAIT, interval=0.5)
        took = time.monotonic() - started
        problems = totals_problems(burst, stack.server)
        assert settled and not problems, f"{fault}: " + ("; ".join(problems) or "did not settle")
        # what the panel and jailctl say, from what the firewall worker recorded in its namespace
        assert firewall_status("local") == (True, "changing nftables on host local")
    stack.events.extend(writer.events)
    print(f"fault {fault} ({stack.watcher_processes} watcher processes): {len(burst.lines)} lines written in "
          f"{written:.1f} s, totals equal "
          f"{took:.1f} s after the burst began ({'; '.join(stack.events)})")


@contextlib.contextmanager
def joined(writer: Writer) -> Iterator[None]:
    """The writer never outlives the test (it ends by itself: a bounded number of chunks)."""
    try:
        yield
    finally:
        if writer.is_alive():
            writer.join(timeout=30)
