"""From a log line to a kernel ban, with the real parts: Redis, Celery workers, Celery beat, nftables.

The server and attacker namespaces are joined by a veth pair (tests/bans/netns.py); TCP servers listen
in the server namespace on 22, 80 and 8080. The seed configuration is imported over the stock fail2ban
tree as an admin would, its jails pointed at log files under tmp_path. Then, as child processes:

- the watcher worker (queue "celery") and Celery beat (DatabaseScheduler, the default schedules) in the
  host namespace. The logs are read by beat's 2 s reads (`read_all_sources`), or by the followers
  (`watchers.tasks.follow`, inotify; one more worker process each): the test runs with both readers,
  as test_faults.py does;
- the firewall worker (queue "firewall.local") INSIDE the server namespace (`ip netns exec`), so its
  libnftables changes that namespace's ruleset and never the host's. It reaches Redis through a unix
  socket (see tests/e2e/stack.py): the namespace's loopback is not the host's.

Then, each time waiting (bounded) until the kernel sets hold exactly the expected addresses per jail:

1. attack lines from the attacker and from documentation addresses (an sshd user name that carries
   another address, an ignoreip address, fewer failures than maxretry...): the attacker is cut off
   on the sshd jail's port only;
2. the attacker scans for `.env`: a second ban (apache-envscan), so the recidive schedule bans it
   on every port (the seed's recidive: 2 bans within a day);
3. `manage.py jailctl unban --all` lifts its three bans, the attacker connects again, and recidive
   does not ban it again for the same history.

Redis database 15 (or IPS_E2E_REDIS_DB) is flushed before and after.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import importlib.util
import os
import re
import subprocess
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import redis
from django.apps import apps
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from bans import hostaddrs, schedules
from bans.models import Ban, Failure, Ignored, Tally
from bans.services import network_of
from jails.models import Jail
from tests.bans.netns import ATTACKER_V4, SERVER_V4, Driver, NamespacePair, RemoteFirewall
from tests.e2e.stack import Child, RedisBridge, bridged_redis, wait_for
from tests.jails.builders import stock_tree_with_seed
from tests.paths import REPO
from watchers.models import LogSource

pytestmark = [pytest.mark.worker, pytest.mark.netns, pytest.mark.django_db(transaction=True)]

PYTHON = str(REPO / ".venv" / "bin" / "python")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB = int(os.environ.get("IPS_E2E_REDIS_DB", "15"))

START_WAIT = 60.0  # three Django processes starting on two cores
BAN_WAIT = 60.0
DROP_WAIT = 0.5  # a handshake on a veth takes < 1 ms; no answer within this is a drop
SSH, HTTP, OTHER = 22, 80, 8080

# Who does what (documentation addresses, and the attacker's own veth address)
SSH_INJECTOR = "203.0.113.9"  # puts INJECTED in the user name of its sshd failures
INJECTED = "198.51.100.1"  # never sends anything: must never be blamed
FEW_FAILURES = "192.0.2.10"  # fewer failures than maxretry
IGNORED = "192.0.2.200"  # in every jail's ignoreip
SCANNER_V6 = "2001:db8::e1"
WP_BRUTE = "198.51.100.77"
SASL_BRUTE = "198.51.100.88"
SASL_ONCE = "198.51.100.99"

# After the first attack: each address banned once at most (two bans would make it a recidive)
FIRST = {
    "sshd": {ATTACKER_V4, SSH_INJECTOR},  # maxretry 3
    "apache-envscan": {SCANNER_V6},  # maxretry 1
    "wordpress-auth": {WP_BRUTE},  # maxretry 3
    "postfix-sasl": {SASL_BRUTE},  # maxretry 2
}
RECIDIVE_EVERY = 2  # seconds; the default schedule says 60 (an admin may change it in Django admin)
FOLLOW_EVERY = 2  # seconds between beat's (re)starts of the followers; the default schedule says 10


# --- the log files ------------------------------------------------------------------------------


def rfc3339(epoch: float) -> str:
    """rsyslog's default time stamp on Debian 12+ (it carries its zone: no host TZ guessing)."""
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat(timespec="microseconds")


def clf(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def history(now: float) -> dict[str, list[str]]:
    """What the logs already hold when the panel starts: old attacks, outside every findtime."""
    old, older = rfc3339(now - 2 * 86400), now - 3 * 86400
    return {
        "auth.log": [f"{old} srv sshd[{900 + i}]: Failed password for root from {ATTACKER_V4} port {40000 + i} ssh2"
                     for i in range(5)],
        "access.log": [f'{ATTACKER_V4} - - [{clf(older)}] "GET /.env HTTP/1.1" 404 196 "-" "Mozilla/5.0"'],
        "mail.log": [f"{old} mx postfix/smtpd[700]: warning: unknown[{SASL_BRUTE}]: SASL LOGIN authentication "
                     "failed: UGFzc3dvcmQ6"] * 3,
        "error.log": [],
        "fail2ban.log": [],
    }


def first_attack(now: float) -> dict[str, list[str]]:
    ts, web = rfc3339(now), clf(now)
    sshd = [
        f"{ts} srv sshd[1001]: Failed password for root from {ATTACKER_V4} port 50122 ssh2",
        f"{ts} srv sshd[1002]: Failed password for invalid user oracle from {ATTACKER_V4} port 50124 ssh2",
        f"{ts} srv sshd[1003]: Invalid user admin from {ATTACKER_V4} port 50126",
        f"{ts} srv sshd[1010]: Accepted publickey for deploy from 192.0.2.50 port 40100 ssh2: ED25519 SHA256:x",
        *(f"{ts} srv sshd[{1020 + i}]: Failed password for invalid user root from {INJECTED} port 22 ssh2 "
          f"from {SSH_INJECTOR} port {50200 + i} ssh2" for i in range(3)),
        *(f"{ts} srv sshd[{1030 + i}]: Failed password for root from {FEW_FAILURES} port {41000 + i} ssh2"
          for i in range(2)),
        *(f"{ts} srv sshd[{1040 + i}]: Failed password for root from {IGNORED} port {42000 + i} ssh2"
          for i in range(4)),
    ]
    access = [
        f'{ATTACKER_V4} - - [{web}] "GET / HTTP/1.1" 200 512 "-" "curl/8.5.0"',
        f'{SCANNER_V6} - - [{web}] "GET /.git/config HTTP/1.1" 403 199 "-" "Go-http-client/1.1"',
        f'{IGNORED} - - [{web}] "GET /.env HTTP/1.1" 404 196 "-" "monitoring"',
        f'{FEW_FAILURES} - - [{web}] "GET /.env HTTP/1.1" 200 44 "-" "Mozilla/5.0"',  # answered: no failure
        # the agent is the robot's to write: only the sender (whose request succeeded) could be blamed
        f'{SSH_INJECTOR} - - [{web}] "GET /x HTTP/1.1" 200 196 "-" "{INJECTED} - - [] \\"GET /.env HTTP/1.1\\" 404"',
        *(f'{WP_BRUTE} - - [{web}] "POST /wp-login.php HTTP/1.1" 403 1201 "-" "Mozilla/5.0"' for _ in range(3)),
    ]
    mail = [
        f"{ts} mx postfix/smtpd[2000]: connect from unknown[{SASL_BRUTE}]",
        *(f"{ts} mx postfix/smtpd[2000]: warning: unknown[{SASL_BRUTE}]: SASL LOGIN authentication failed: "
          "UGFzc3dvcmQ6" for _ in range(2)),
        f"{ts} mx postfix/smtpd[2001]: warning: unknown[{SASL_ONCE}]: SASL PLAIN authentication failed: "
        "authentication failure",
    ]
    return {"auth.log": sshd, "access.log": access, "mail.log": mail}


def env_scan(now: float) -> dict[str, list[str]]:
    return {"access.log": [f'{ATTACKER_V4} - - [{clf(now)}] "GET /.env HTTP/1.1" 404 196 "-" "Mozilla/5.0 (l9x)"']}


def append(logs: Path, lines: dict[str, list[str]]) -> None:
    for name, text in lines.items():
        with (logs / name).open("a") as out:
            out.write("".join(f"{line}\n" for line in text))


# --- the jails ----------------------------------------------------------------------------------

LOG_OF_JAIL = {
    "sshd": "auth.log",
    "apache-botsearch": "access.log",
    "wordpress-auth": "access.log",
    "apache-envscan": "access.log",
    "wordpress-auth-hook": "error.log",
    "postfix": "mail.log",
    "postfix-sasl": "mail.log",
    "postfix-protocol": "mail.log",
    "postfix-postscreen": "mail.log",
    "recidive": "fail2ban.log",
}


def import_seed(tmp_path: Path, logs: Path) -> None:
    """Import the seed over the stock tree, then point every jail at our files (never the host's)."""
    call_command("importconf", str(stock_tree_with_seed(tmp_path)), stdout=StringIO(), stderr=StringIO())
    jails = list(Jail.objects.all())
    assert {jail.name for jail in jails} == set(LOG_OF_JAIL), "the seed's jails changed: route their logs here"
    for jail in jails:
        jail.logpath = [str(logs / LOG_OF_JAIL[jail.name])]
        if jail.backend == Jail.Backend.SYSTEMD:
            jail.backend = Jail.Backend.POLLING  # no journal here: sshd writes auth.log
        jail.ignoreip = [*jail.ignoreip, IGNORED]
        jail.full_clean()
        jail.save()
    assert ATTACKER_V4 not in hostaddrs.read_addresses()  # ignoreself must not protect the attacker


# Who reads the logs: "beat" (read_all_sources every 2 s) or "follow" (the followers), as in test_faults.py.
FOLLOW_SCHEDULES = "watchers.migrations.0003_follow_schedule"
READERS = ["beat"] + (["follow"] if importlib.util.find_spec(FOLLOW_SCHEDULES) is not None else [])


def install_followers(*, follow: bool) -> int:
    """The followers' schedules as their migration makes them, or none (a first test in a fresh database
    still has the migration's rows); returns how many followers beat will start."""
    if importlib.util.find_spec(FOLLOW_SCHEDULES) is None:
        return 0
    module = importlib.import_module(FOLLOW_SCHEDULES)
    if not follow:
        module.remove(apps, None)
        return 0
    module.create(apps, None)
    rows = PeriodicTask.objects.filter(task="watchers.tasks.follow", enabled=True)
    # beat's first start comes one interval after it starts (10 s): sooner here, as for recidive (a start
    # while a follower runs returns at once)
    rows.update(interval=IntervalSchedule.objects.filter(every=FOLLOW_EVERY, period="seconds").first()
                or IntervalSchedule.objects.create(every=FOLLOW_EVERY, period="seconds"))
    count: int = rows.count()  # django_celery_beat has no types: its querysets are Any
    return count


def install_default_schedules() -> bool:
    """The beat schedules the migrations create (a transactional test before this one flushed them);
    True when there is a recidive schedule, then run every RECIDIVE_EVERY seconds."""
    for module in ("watchers.migrations.0002_default_schedules", "bans.migrations.0002_default_schedules"):
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).create(apps, None)
    recidive = PeriodicTask.objects.filter(task="bans.tasks.run_recidive").first()
    if recidive is None:
        return False
    recidive.interval = (IntervalSchedule.objects.filter(every=RECIDIVE_EVERY, period="seconds").first()
                         or IntervalSchedule.objects.create(every=RECIDIVE_EVERY, period="seconds"))
    recidive.save()
    return True


# --- checks -------------------------------------------------------------------------------------


def reach(attacker: Driver, port: int) -> str:
    return str(attacker.call(op="probe", host=SERVER_V4, port=port, timeout=DROP_WAIT))


def blocked(jail_name: str) -> str:
    """What a probe of a port of this jail sees once banned: drop: no answer; reject: a reset."""
    return "timeout" if Jail.objects.get(name=jail_name).blocktype == Jail.BlockType.DROP else "refused"


def reach_all(attacker: Driver) -> tuple[str, str, str]:
    return reach(attacker, SSH), reach(attacker, HTTP), reach(attacker, OTHER)


def want(expected: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(jail, network_of(address)) for jail, addresses in expected.items() for address in addresses}


def kernel(server: Driver) -> dict[tuple[str, str], int | None]:
    """(jail, network) -> seconds left, from the sets in the server namespace's `inet ips` table."""
    snapshot = RemoteFirewall(server).snapshot()
    return {(jail, str(net)): left for jail, elements in snapshot.items() for net, left in elements.items()}


def bans_in(*states: str) -> set[tuple[str, str]]:
    return set(Ban.objects.filter(state__in=states).values_list("jail_name", "network"))


def sources_read_to_end() -> bool:
    sources = list(LogSource.objects.all())
    return len(sources) == len(LOG_OF_JAIL) and all(
        s.inode is not None and s.offset == os.path.getsize(s.path) for s in sources)


def beat_reads_nothing(watchers: Child, broker: redis.Redis, quiet_for: float = 5.0) -> bool:
    """Since the last follower started, beat's reads of the logs have stopped: a read_all_sources ran
    and queued no read (Celery's log: "... succeeded in 0.004s: 0"), or beat no longer sends it (its
    guard sees every shard followed: config/beat.py) and no read_source came for `quiet_for` s. And
    the reads queued before are done: none waits in the broker's queue, and every one the worker
    received has finished (on a slow machine a batch queued just before the followers took over can
    still be waiting there, and would be received after the attack)."""
    queued = broker.llen("celery")  # before the log: a message taken meanwhile is in the log then
    lines = watchers.output().splitlines()
    last = max((i for i, line in enumerate(lines) if ": following for " in line), default=None)
    if last is None or queued > 0:
        return False
    reads = [line for line in lines if READ_TASK.search(line)]
    received = {task_id(line) for line in reads if " received" in line}
    finished = {task_id(line) for line in reads if " succeeded " in line or " raised " in line}
    if received - finished:  # (read_all_sources too: one still running may queue reads yet)
        return False
    after = lines[last + 1:]
    if any("watchers.tasks.read_all_sources[" in line and " succeeded " in line and line.endswith("s: 0")
           for line in after):
        return True
    return (not any("watchers.tasks.read_source[" in line and " received" in line for line in after)
            and time.time() - logged_at(lines[last]) >= quiet_for)


READ_TASK = re.compile(r"watchers\.tasks\.(?:read_source|read_all_sources)\[([^\]]+)\]")


def task_id(line: str) -> str:
    """The task id of a Celery log line: "... Task watchers.tasks.read_source[<id>] received"."""
    found = READ_TASK.search(line)
    return found.group(1) if found else line


def logged_at(line: str) -> float:
    """The time (epoch) of a Celery log line, which starts with the local time: "[2026-01-31 12:00:00,123: "."""
    return time.mktime(time.strptime(line[1:20], "%Y-%m-%d %H:%M:%S")) + int(line[21:24]) / 1000


def read_tasks(watchers: Child, since: float) -> int:
    """read_source tasks the watcher worker received since `since` (time.time()): beat's reads of the
    sources no follower holds. Celery's log lines start with the local time, "[2026-01-31 12:00:00,123: "."""
    moment = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) + f",{int(since % 1 * 1000):03d}"
    return sum(1 for line in watchers.output().splitlines()
               if "watchers.tasks.read_source[" in line and " received" in line and line[1:24] >= moment)


def settled(server: Driver, expected: set[tuple[str, str]], children: list[Child]) -> bool:
    for child in children:
        assert child.alive(), f"{child.name} exited with status {child.process.returncode}:\n{child.tail()}"
    if not sources_read_to_end():
        return False
    busy = bans_in(Ban.State.PENDING, Ban.State.APPLYING, Ban.State.FAILED, Ban.State.LIFTING)
    return not busy and bans_in(Ban.State.ACTIVE) == expected and set(kernel(server)) == expected


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is needed on {REDIS_HOST}:{REDIS_PORT}: {exc}")
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def bridge() -> Iterator[RedisBridge]:
    with bridged_redis((REDIS_HOST, REDIS_PORT), prefix="ipse2e-") as bridge:
        yield bridge


@contextlib.contextmanager
def diagnostics(pair: NamespacePair, children: list[Child]) -> Iterator[None]:
    """On failure, print what explains it: the processes' logs, the ruleset, the rows."""
    try:
        yield
    except BaseException:
        print(describe(pair, children))
        raise


def describe(pair: NamespacePair, children: list[Child]) -> str:
    parts = []
    for child in children:
        parts.append(f"===== {child.name} (exit status {child.process.poll()}), from {child.log}\n{child.digest()}")
    try:
        parts.append("===== nft list table inet ips (server namespace)\n" + pair.nft("list", "table", "inet", "ips"))
    except Exception as exc:  # the table may not exist yet
        parts.append(f"===== nft: {exc}")
    parts.append("===== bans\n" + "\n".join(
        f"{b.jail_name} {b.network} {b.state} host={b.host} bantime={b.bantime} error={b.apply_error!r}"
        for b in Ban.objects.all()))
    parts.append("===== sources\n" + "\n".join(
        f"{s.jail.name} {s.path} inode={s.inode} offset={s.offset} health={s.health} {s.health_reason}"
        for s in LogSource.objects.select_related("jail")))
    parts.append("===== tallies\n" + "\n".join(
        f"{t.jail.name} {t.address} count={t.count}" for t in Tally.objects.select_related("jail")))
    return "\n".join(parts)


# --- the test -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", READERS)
def test_attack_lines_become_kernel_bans_and_an_unban_lifts_them(
    pair: NamespacePair, redis_db: redis.Redis, bridge: RedisBridge, children: list[Child],
    settings_db_env: dict[str, str], tmp_path: Path, reader: str,
) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()

    # 1. the network: a server listening on 22, 80 and 8080, an attacker that reaches it
    server = pair.driver(pair.server)
    server.call(op="listen", ports=[SSH, HTTP, OTHER])
    attacker = pair.driver(pair.attacker)
    assert [reach(attacker, port) for port in (SSH, HTTP, OTHER)] == ["open"] * 3

    # 2. the jails of the seed, on log files that already hold some old attacks
    logs = tmp_path / "log"
    logs.mkdir()
    append(logs, history(time.time()))
    import_seed(tmp_path, logs)
    recidive = install_default_schedules()
    followers = install_followers(follow=reader == "follow")

    # 3. the product's processes
    env: dict[str, Any] = {**settings_db_env, "IPS_HOST_NAME": "local", "IPS_FIREWALL": "nftables",
                           "IPS_NFT_TABLE": "ips", "IPS_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
                           "IPS_LOG_TASKS": "true",  # Celery's line per task: read_tasks() etc. count them
                           "IPS_REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"}
    celery = [PYTHON, "-m", "celery", "-A", "config"]
    # one worker process per follower (the follow task declines otherwise), and one for the other tasks
    children.append(Child.start("watchers", [*celery, "worker", "-Q", "celery", "--concurrency", str(1 + followers),
                                             "--hostname", "w@%h", "--loglevel", "INFO"], env, tmp_path))
    children.append(Child.start("firewall", ["ip", "netns", "exec", pair.server, *celery, "worker", "-Q",
                                             "firewall.local", "--pool", "solo", "--concurrency", "1",
                                             "--hostname", "fw@%h", "--loglevel", "INFO"],
                                {**env, "IPS_REDIS_URL": bridge.url(REDIS_DB)}, tmp_path))
    children.append(Child.start("beat", [*celery, "beat", "-S", "config.beat:Scheduler",
                                         "--loglevel", "INFO", "--pidfile", str(tmp_path / "beat.pid")],
                                env, tmp_path))
    watchers, firewall, beat = children

    with diagnostics(pair, children):
        assert wait_for(lambda: " ready." in watchers.output() and " ready." in firewall.output()
                        and "beat: Starting" in beat.output(), START_WAIT), "the workers or beat did not start"
        if followers:  # the attack must meet the followers, not the 2 s reads they replace
            assert wait_for(lambda: watchers.output().count(": following for ") >= followers, START_WAIT), \
                "the followers did not start"
            # and beat's reads, which read every source until then, have seen them
            assert wait_for(lambda: beat_reads_nothing(watchers, redis_db), START_WAIT), "beat still reads the logs"
        timings["processes up"] = time.monotonic() - started

        # The first read of each source (beat every 2 s): old lines are outside findtime, nothing is banned.
        assert wait_for(lambda: settled(server, set(), children), BAN_WAIT), "the first reads did not finish"
        assert not Ban.objects.exists()
        assert reach_all(attacker) == ("open", "open", "open")
        timings["history read"] = time.monotonic() - started

        # 4. the first attack: exactly the expected addresses, in the kernel and in the table, per jail
        attacked_at = time.time()
        append(logs, first_attack(attacked_at))
        attacked = time.monotonic()
        expected = want(FIRST)
        wait_for(lambda: settled(server, expected, children), BAN_WAIT)
        timings["attack to kernel"] = time.monotonic() - attacked
        assert_settled(server, expected)

        # ... and not the others, for the right reasons
        assert not Failure.objects.filter(address=INJECTED).exists()  # only the real sender is blamed
        assert Failure.objects.filter(jail__name="sshd", address=SSH_INJECTOR).count() == 3
        assert Tally.objects.get(jail__name="sshd", address=FEW_FAILURES).count == 2
        assert Tally.objects.get(jail__name="postfix-sasl", address=SASL_ONCE).count == 1
        assert not Failure.objects.filter(address=IGNORED).exists()
        assert set(Ignored.objects.filter(address=IGNORED).values_list("jail__name", "reason")) == {
            ("sshd", f"listed in ignoreip as {IGNORED}"), ("apache-envscan", f"listed in ignoreip as {IGNORED}")}
        assert not Failure.objects.filter(address=FEW_FAILURES, jail__name="apache-envscan").exists()  # a 200

        # The attacker is cut off on the sshd jail's port only.
        assert reach_all(attacker) == (blocked("sshd"), "open", "open")

        # 5. a second offence: banned in apache-envscan too, then by recidive on every port
        append(logs, env_scan(time.time()))
        escalated = time.monotonic()
        second = {**FIRST, "apache-envscan": FIRST["apache-envscan"] | {ATTACKER_V4}}
        if recidive:
            second["recidive"] = {ATTACKER_V4}
        expected = want(second)
        wait_for(lambda: settled(server, expected, children), BAN_WAIT)
        timings["second offence to recidive"] = time.monotonic() - escalated
        assert_settled(server, expected)
        if recidive:
            assert reach(attacker, OTHER) == blocked("recidive")
            assert "open" not in reach_all(attacker)
        else:
            assert reach_all(attacker)[1:] == (blocked("apache-envscan"), "open")

        # 6. the admin lifts the attacker's bans in every jail
        unbanned = time.monotonic()
        done = subprocess.run([PYTHON, "manage.py", "jailctl", "unban", "--all", ATTACKER_V4], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        lifted = {jail for jail, addresses in second.items() if ATTACKER_V4 in addresses}
        assert f"lifting {len(lifted)} ban(s) of {ATTACKER_V4}" in done.stdout
        expected = want({jail: addresses - {ATTACKER_V4} for jail, addresses in second.items()})
        wait_for(lambda: settled(server, expected, children), BAN_WAIT)
        timings["unban to kernel"] = time.monotonic() - unbanned
        assert_settled(server, expected)
        assert set(Ban.objects.filter(network=f"{ATTACKER_V4}/32").values_list("jail_name", "state")) == {
            (jail, Ban.State.LIFTED) for jail in lifted}
        assert reach_all(attacker) == ("open", "open", "open")

        if recidive:  # two more recidive runs: the lifted history does not ban it again. Run here: beat
            # no longer sends them, since no ban was created meanwhile (its guard, config/beat.py)
            for _ in range(2):
                assert schedules.run_recidive(now=time.time()) == []
            assert not Ban.objects.filter(network=f"{ATTACKER_V4}/32", state__in=Ban.LIVE_STATES).exists()
            assert set(kernel(server)) == expected
        assert bridge.connections > 0  # the firewall worker went through the bridge, not a Redis of its own
        if followers:  # every line since the attack was read by the followers: beat queued no read
            assert read_tasks(watchers, attacked_at) == 0

    timings["total"] = time.monotonic() - started
    print(f"e2e timings ({reader}): " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))


def assert_settled(server: Driver, expected: set[tuple[str, str]]) -> None:
    """The table and the kernel agree, on exactly `expected`, with the time each ban has left."""
    assert sources_read_to_end(), "the watchers did not read the new lines"
    assert bans_in(Ban.State.PENDING, Ban.State.APPLYING, Ban.State.FAILED, Ban.State.LIFTING) == set()
    assert bans_in(Ban.State.ACTIVE) == expected
    in_kernel = kernel(server)
    assert set(in_kernel) == expected
    for ban in Ban.objects.filter(state=Ban.State.ACTIVE):  # the kernel lifts each on time by itself
        left = in_kernel[(ban.jail_name, ban.network)]
        assert left is not None and ban.bantime - 120 <= left <= ban.bantime, (ban.jail_name, ban.network, left)
