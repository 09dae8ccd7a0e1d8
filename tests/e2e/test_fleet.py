"""The fleet end to end: a central host and two agents, each in its own network namespace with its
own nftables, joined by a bridge; real Redis (the central's own, listening on the bridge), real
PostgreSQL (offered on the bridge by a TCP forwarder to the machine's server), real Celery workers,
beat and agents started as `scripts/agent.sh` starts them, with the credentials `hostctl add` made.

- Failures in agent A's log ban the address on A only for a jail of the host's scope, and on A, B
  and the central host for a jail of every host's scope.
- B, cut off for 60 s while A bans again, has the ban in its kernel within 5 s of its return, and
  reports the failures its own log showed meanwhile, none lost: its ban reaches the others.
- `hostctl remove A` takes A's bans away: ended in the central view, lifted from B's and the
  central kernel.

PostgreSQL only (agents' roles): it runs in the PostgreSQL pass (marker `fleet`) and skips itself
on SQLite.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings

from bans import hosts, periodic
from bans.models import Ban, Failure
from jails.access import audit
from jails.builtin import FILTER_DIR
from jails.fleet import postgres
from jails.models import Filter, Host, Jail, JailHost
from scripts.harness.fleet import PG_PORT, REDIS_PORT, FleetStack
from scripts.harness.netns import FleetNet, netns_unusable
from scripts.harness.processes import wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.slow,
              pytest.mark.skipif(connection.vendor != "postgresql", reason="agents' roles are PostgreSQL's"),
              pytest.mark.django_db(transaction=True)]

LOCAL_ONLY, EVERYWHERE, WHILE_AWAY, SEEN_BY_B = "203.0.113.10", "203.0.113.20", "203.0.113.30", "203.0.113.40"
RETURN_LIMIT = 5.0  # seconds from a host's return to the ban in its kernel (the target)


def failures(address: str, count: int = 3) -> str:
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    return "".join(f"{stamp} a sshd[{4000 + i}]: Failed password for root from {address} port {4000 + i} ssh2\n"
                   for i in range(count))


@pytest.fixture
def net() -> Iterator[FleetNet]:
    reason = netns_unusable()
    if reason:
        pytest.skip(reason)
    made = FleetNet.create(["a", "b"])
    try:
        yield made
    finally:
        made.destroy()


def in_kernel(net: FleetNet, host: str, jail: str, address: str) -> bool:
    return any(address in elements for name, elements in net.nft_elements(host).items() if name.startswith(f"j_{jail}"))


def time_until(predicate: object, timeout: float) -> float | None:
    started = time.monotonic()
    if wait_for(predicate, timeout, interval=0.05):  # type: ignore[arg-type]
        return time.monotonic() - started
    return None


def test_three_hosts_share_bans_by_scope_converge_after_an_outage_and_forget_a_removed_host(
        net: FleetNet, tmp_path: Path, settings_db_env: dict[str, str]) -> None:
    stack = FleetStack(net, tmp_path)
    names = {member: f"f{member}{os.getpid() % 10000}" for member in ("a", "b")}
    central = stack.central_address
    central_redis = stack.central_redis_url
    try:
        stack.start_services()  # the central server's Redis and PostgreSQL, on the bridge

        # the fleet's rows: jails, hosts (real roles and Redis users), placements, schedules
        for name in ("ips-common", "sshd"):
            Filter.objects.create(name=name, source=(FILTER_DIR / f"{name}.conf").read_text())
        sshd = Filter.objects.get(name="sshd")
        logs = {name: tmp_path / f"{name}.log" for name in ("a-ssh", "a-all", "b-all")}
        for path in logs.values():
            path.write_text("")
        local_jail = Jail.objects.create(name="ssh", filter=sshd, enabled=True, maxretry=3, findtime=600,
                                         bantime=3600, logpath=["/nonexistent"])
        fleet_jail = Jail.objects.create(name="everyhost", filter=sshd, enabled=True, maxretry=3, findtime=600,
                                         bantime=3600, ban_scope=Jail.BanScope.ALL, logpath=["/nonexistent"])
        Host.central()
        reach = hosts.Reach(address=central, database_port=PG_PORT, redis_port=REDIS_PORT, redis_db=0,
                            database_sslmode="disable", redis_tls=False)
        envs: dict[str, dict[str, str]] = {}
        with override_settings(CELERY_BROKER_URL=central_redis):
            for member, name in names.items():
                made = hosts.add_host(name, addresses=[net.addresses[member]], reach=reach, actor=audit.Actor.command())
                envs[member] = made.environment
            periodic.install("local", 0)
        a, b = (Host.objects.get(name=names[member]) for member in ("a", "b"))
        JailHost.objects.create(jail=local_jail, host=a, logpath=[str(logs["a-ssh"])])
        JailHost.objects.create(jail=fleet_jail, host=a, logpath=[str(logs["a-all"])])
        JailHost.objects.create(jail=fleet_jail, host=b, logpath=[str(logs["b-all"])])

        # the processes: central firewall + fan-out worker and beat; each agent as agent.sh runs it
        stack.start_central({**settings_db_env, "IPS_HOST_NAME": "local", "IPS_FIREWALL": "nftables"})
        for member in ("a", "b"):
            stack.start_agent(member, envs[member])
        from watchers.models import LogSource

        followed = {str(logs["a-ssh"]), str(logs["a-all"]), str(logs["b-all"])}
        assert wait_for(lambda: set(LogSource.objects.values_list("path", flat=True)) >= followed, 90), \
            stack.digest()
        time.sleep(1.0)

        # 1. a jail of the host's scope bans on A only; one of every host's scope, everywhere
        with logs["a-ssh"].open("a") as handle:
            handle.write(failures(LOCAL_ONLY))
        with logs["a-all"].open("a") as handle:
            handle.write(failures(EVERYWHERE))
        took = {member: time_until(lambda m=member: in_kernel(net, m, "everyhost", EVERYWHERE), 30)
                for member in ("a", "central", "b")}
        assert all(value is not None for value in took.values()), (took, stack.digest())
        assert wait_for(lambda: in_kernel(net, "a", "ssh", LOCAL_ONLY), 10), stack.digest()
        time.sleep(2.0)  # time enough for a copy that should not exist to have been applied
        assert not in_kernel(net, "b", "ssh", LOCAL_ONLY) and not in_kernel(net, "central", "ssh", LOCAL_ONLY)
        assert Ban.objects.filter(network=f"{LOCAL_ONLY}/32").count() == 1

        # 2. B cut off for 60 s while A bans again; back, it has the ban within RETURN_LIMIT
        net.cut("b")
        cut_at = time.monotonic()
        time.sleep(5.0)
        with logs["a-all"].open("a") as handle:
            handle.write(failures(WHILE_AWAY))
        with logs["b-all"].open("a") as handle:  # what B's own log shows while it cannot report it
            handle.write(failures(SEEN_BY_B))
        assert wait_for(lambda: in_kernel(net, "central", "everyhost", WHILE_AWAY), 30), stack.digest()
        assert not in_kernel(net, "b", "everyhost", WHILE_AWAY)
        time.sleep(max(0.0, 60.0 - (time.monotonic() - cut_at)))
        net.restore("b")
        converged = time_until(lambda: in_kernel(net, "b", "everyhost", WHILE_AWAY), 60)
        print(f"fleet e2e: failure to kernel (s): {took}; B converged {converged} s after its return")
        assert converged is not None and converged <= RETURN_LIMIT, (converged, stack.digest())
        # ... and reports what it saw meanwhile, losing no failure: its ban reaches the others
        assert wait_for(lambda: in_kernel(net, "a", "everyhost", SEEN_BY_B)
                        and in_kernel(net, "central", "everyhost", SEEN_BY_B), 60), stack.digest()
        assert Failure.objects.filter(address=SEEN_BY_B).count() == 3
        assert Ban.objects.originals().get(network=f"{SEEN_BY_B}/32").host == names["b"]

        # 3. A removed: its bans end in the central view and leave the other hosts' kernels
        with override_settings(CELERY_BROKER_URL=central_redis):
            ended = hosts.remove_host(names["a"], actor=audit.Actor.command())
        assert ended["bans"] >= 3
        assert not Ban.objects.originals().in_force().filter(host=names["a"]).exists()
        def lifted_on(member: str) -> bool:
            return not in_kernel(net, member, "everyhost", EVERYWHERE) and not in_kernel(net, member, "everyhost",
                                                                                          WHILE_AWAY)

        for member in ("b", "central"):
            assert wait_for(functools.partial(lifted_on, member), 30), stack.digest()
    finally:
        stack.stop()
        for name in names.values():  # roles belong to the whole PostgreSQL server, not to the test database
            postgres.drop_role(postgres.role_name(name))
