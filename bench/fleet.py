#!/usr/bin/env python3
"""The fleet: how fast a ban made on one host is in every host's kernel, and what copying costs at scale.

    .venv/bin/python bench/fleet.py [--rounds 40] [--agents 10] [--bans 100000]   (root, PostgreSQL)

1. Latency, 3 hosts (a central host and two agents, each in its own network namespace with its own
   nftables, on a bridge; scripts/harness/fleet.py, as the end-to-end test runs them): a jail of
   every host's scope runs on agent A; each round writes 3 failures of a new address into A's log
   (maxretry 3) and times, per host, the write to the element in that host's kernel set, seen by
   `nft -j monitor new elements` in each namespace (bench/latency.py's KernelWatch). Reported: p50
   and p99 of the slowest host per round ("in every host's kernel"), and per host.
2. Fan-out at scale, in this process: `--agents` hosts (rows only: what the central side does is
   the same for a host whatever runs on it) and `--bans` bans in force spread over them; at each
   step (0, a quarter, half, all of them) batches of 100 new originals of every host's scope are
   copied (bans.fanout.fan_out_pending: a copy for each other host) and one host claims and applies
   its new copies (bans.sync.apply_pending with the in-memory RecordingBackend). Reported: the median
   milliseconds of REPEATS batches per step, and the last step's over the first (flat: close to 1).

fail2ban has no way to share a ban between servers, so there is nothing of its to run side by side:
the figures are ours alone. Writes bench/results/fleet.json. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # latency (KernelWatch)
sys.path.insert(0, str(REPO))  # the project's packages

import latency  # noqa: E402

from scripts.harness.fleet import PG_PORT, REDIS_PORT, FleetStack  # noqa: E402
from scripts.harness.netns import FleetNet, netns_unusable  # noqa: E402

PYTHON = sys.executable
DATABASE = "ips_bench_fleet"
REPEATS = 5  # batches of 100 originals per step of the fan-out part; the median is reported


def failures(address: str) -> str:
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    return "".join(f"{stamp} a sshd[{4000 + i}]: Failed password for root from {address} port {4000 + i} ssh2\n"
                   for i in range(3))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def prepare_database(env: dict[str, str]) -> None:
    subprocess.run(["dropdb", "--if-exists", DATABASE], check=False, timeout=60)
    subprocess.run(["createdb", DATABASE], check=True, timeout=60)
    for command in (["migrate", "--noinput"], ["installfilters"]):
        subprocess.run([PYTHON, "manage.py", *command], cwd=REPO, env=env, check=True, timeout=300,
                       capture_output=True)


def latency_part(stack: FleetStack, rounds: int, workdir: Path) -> dict[str, Any]:
    from bans import hosts, periodic
    from jails.access import audit
    from jails.models import Filter, Host, Jail, JailHost
    from watchers.models import LogSource

    net = stack.net
    watches: dict[str, latency.KernelWatch] = {}
    try:
        Jail.objects.update(enabled=False)  # installfilters' own jails: not measured
        log = workdir / "a.log"
        log.write_text("")
        jail = Jail.objects.create(name="everyhost", filter=Filter.objects.get(name="sshd"), enabled=True,
                                   maxretry=3, findtime=600, bantime=3600, ban_scope=Jail.BanScope.ALL,
                                   logpath=["/nonexistent"])
        Host.central()
        reach = hosts.Reach(address=stack.central_address, database_port=PG_PORT, redis_port=REDIS_PORT, redis_db=0,
                            database_sslmode="disable", redis_tls=False)
        names = {member: f"bench-{member}" for member in ("a", "b")}
        envs = {}
        for member, name in names.items():
            Host.objects.filter(name=name).delete()
            envs[member] = hosts.add_host(name, addresses=[net.addresses[member]], reach=reach,
                                          actor=audit.Actor.command(), again=False).environment
        periodic.install("local", 0)
        JailHost.objects.create(jail=jail, host=Host.objects.get(name=names["a"]), logpath=[str(log)])
        JailHost.objects.create(jail=jail, host=Host.objects.get(name=names["b"]), logpath=[str(workdir / "b.log")])
        central_env = {**os.environ, "IPS_HOST_NAME": "local", "IPS_FIREWALL": "nftables"}
        stack.start_central(central_env)
        for member in ("a", "b"):
            stack.start_agent(member, envs[member])
        deadline = time.monotonic() + 120
        while not LogSource.objects.filter(path=str(log)).exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"agent A never followed its log:\n{stack.digest()}")
            time.sleep(0.2)
        time.sleep(2.0)
        watches = {host: latency.KernelWatch(stack.net.namespace(host)) for host in ("a", "b", "central")}
        every: list[float] = []
        per_host: dict[str, list[float]] = {host: [] for host in watches}
        for index in range(rounds):
            address = f"198.18.{index // 250}.{index % 250 + 1}"
            written = time.perf_counter()
            with log.open("a") as handle:
                handle.write(failures(address))
            for host, watch in watches.items():
                if not watch.wait_for([address], 30):
                    raise SystemExit(f"{address} never reached {host}'s kernel:\n{stack.digest()}")
            times = {host: watch.first_seen[address] - written for host, watch in watches.items()}
            for host, seconds in times.items():
                per_host[host].append(seconds)
            every.append(max(times.values()))
            time.sleep(0.2)
        return {"hosts": 3, "rounds": rounds,
                "every_host_ms": {"p50": percentile(every, 0.5) * 1000, "p99": percentile(every, 0.99) * 1000,
                                  "max": max(every) * 1000},
                "per_host_p50_ms": {host: statistics.median(values) * 1000 for host, values in per_host.items()}}
    finally:
        for watch in watches.values():
            watch.close()
        stack.stop(keep=("redis",))  # the fan-out part publishes its sync requests to it


def fanout_part(agents: int, total_bans: int) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from bans import bulk, fanout, sync
    from bans.firewall.recording import RecordingBackend
    from bans.models import Ban
    from jails.models import Host, Jail

    jail = Jail.objects.get(name="everyhost")
    Ban.objects.all().delete()
    Host.objects.filter(name__startswith="sim-").delete()
    names = [f"sim-{index}" for index in range(agents)]
    for name in names:
        Host.objects.create(name=name, kind=Host.Kind.AGENT, state=Host.State.ACTIVE)
    now = timezone.now()
    steps = [0, total_bans // 4, total_bans // 2, total_bans]
    made = 0
    rows: list[dict[str, Any]] = []
    serial = 0
    for target in steps:
        # bans in force up to `target`, spread over the hosts, already applied
        while made < target:
            batch = []
            for _ in range(min(5000, target - made)):
                serial += 1
                host = names[serial % agents]
                batch.append(Ban(jail=jail, jail_name=jail.name, network=f"10.{serial >> 16 & 255}.{serial >> 8 & 255}."
                                 f"{serial & 255}/32", family=4, host=host, started_at=now, bantime=3600,
                                 expires_at=now + dt.timedelta(hours=1), state=Ban.State.ACTIVE))
            bulk.insert_bans(batch)
            made += len(batch)
        with connection.cursor() as cursor:  # as autovacuum would have by then: the planner's view of the table
            cursor.execute("ANALYZE bans_ban")
        fan_out_ms, apply_ms = [], []
        for _ in range(REPEATS):
            originals = []
            for _ in range(100):
                serial += 1
                network = f"100.64.{serial >> 8 & 255}.{serial & 255}/32"
                originals.append(Ban(jail=jail, jail_name=jail.name, network=network, family=4, host=names[0],
                                     started_at=timezone.now(), bantime=3600,
                                     expires_at=timezone.now() + dt.timedelta(hours=1), state=Ban.State.ACTIVE,
                                     fanout_pending=True))
            bulk.insert_bans(originals)
            started = time.perf_counter()
            report = fanout.fan_out_pending()
            fan_out_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            applied = sync.apply_pending(names[1], RecordingBackend())
            apply_ms.append((time.perf_counter() - started) * 1000)
        rows.append({"bans_in_force": Ban.objects.in_force().count(), "originals": report.originals,
                     "copies": report.copies, "fan_out_ms": statistics.median(fan_out_ms),
                     "host_apply_ms": statistics.median(apply_ms), "host_applied": len(applied.applied)})
    first, last = rows[0], rows[-1]
    return {"agents": agents, "steps": rows,
            "fan_out_last_over_first": last["fan_out_ms"] / first["fan_out_ms"],
            "apply_last_over_first": last["host_apply_ms"] / first["host_apply_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40, help="bans timed from a failure to every kernel")
    parser.add_argument("--agents", type=int, default=10, help="simulated agents for the fan-out part")
    parser.add_argument("--bans", type=int, default=100_000, help="bans in force at the fan-out part's last step")
    parser.add_argument("--json-out", type=Path, default=BENCH_DIR / "results" / "fleet.json")
    args = parser.parse_args()
    reason = netns_unusable()
    if reason:
        raise SystemExit(f"bench/fleet.py needs network namespaces: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="ipsfleet-"))
    stack_socket = workdir / "redis" / "redis.sock"
    env = {**os.environ, "DATABASE_URL": f"postgres:///{DATABASE}", "IPS_SSL_REDIRECT": "false",
           "IPS_SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789", "IPS_HOST_NAME": "local",
           "IPS_REDIS_URL": f"redis+socket://{stack_socket}?virtual_host=0",
           "DJANGO_SETTINGS_MODULE": "config.settings"}
    prepare_database(env)
    os.environ.update(env)
    import django

    django.setup()
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    net = FleetNet.create(["a", "b"])
    stack = FleetStack(net, workdir)
    try:
        stack.start_services()
        results["latency"] = latency_part(stack, args.rounds, workdir)
        print(json.dumps(results["latency"], indent=2))
        results["fan_out"] = fanout_part(args.agents, args.bans)
        print(json.dumps(results["fan_out"], indent=2))
    finally:
        stack.stop()
        net.destroy()
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.json_out}")


if __name__ == "__main__":
    main()
