"""A ban made by an agent, under its own credentials, reaches the other hosts through the central side.

Real processes, real Redis, real PostgreSQL roles: agent A counts failures and bans (bans.services,
as its watcher does) with its own database role and Redis user; the central `fleet` worker copies the
ban to the central host and agent B; agent A's firewall worker takes its own sync from its queue.
Nothing any of them sends is refused by the ACLs or the grants. (The kernel side, three hosts with
their own nftables in network namespaces, is the fleet's end-to-end test.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from django.db import connection

from bans.models import Ban, Failure, FirewallHost
from config import fleet
from jails.fleet import redis_acl
from jails.models import Jail
from tests.factories import make_jail
from tests.fleet import REDIS_URL, Agent, enrolled, start_process, stop_process, wait_until
from tests.paths import REPO

pytestmark = [pytest.mark.skipif(connection.vendor != "postgresql", reason="agents' roles are PostgreSQL's"),
              pytest.mark.django_db(transaction=True)]

ATTACKER = "203.0.113.45"
# what an agent's watcher does with a read's failures (watchers.services.act_on), as agent A
AGENT_READ = """
import django, sys
django.setup()
from django.db import transaction
from bans.services import Observed, now_epoch, record_failures
from jails.models import Jail
jail = Jail.objects.get(name=sys.argv[1])
now = now_epoch()
seen = [Observed(host=sys.argv[2], time=now - 5 + i, lines=(f"fail {sys.argv[2]}",)) for i in range(3)]
with transaction.atomic():
    decision = record_failures(jail, seen, now=now, own_addresses=[], catching_up=False, host=sys.argv[3])
print("banned", len(decision.bans))
"""


def central_env() -> dict[str, str]:
    name = connection.settings_dict["NAME"]
    return {**os.environ, "DATABASE_URL": f"postgres:///{name}", "IPS_REDIS_URL": REDIS_URL, "IPS_FIREWALL": "off"}


def agent_env(agent: Agent) -> dict[str, str]:
    return {**os.environ, **agent.enrollment.environment, "IPS_FIREWALL": "off"}


def worker(env: dict[str, str], queue: str, name: str) -> subprocess.Popen[str]:
    return start_process([sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--queues",
                          queue, "--hostname", f"{name}@%h"], env, str(REPO))


@pytest.fixture
def central_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.acl_log_reset()
    yield client
    client.flushdb()




def test_an_agents_ban_in_an_every_host_jail_is_copied_to_the_others_through_the_central_worker(
        central_redis: redis.Redis) -> None:
    jail = make_jail("sshd", ban_scope=Jail.BanScope.ALL)
    with enrolled() as agent_a, enrolled() as agent_b:
        central = worker(central_env(), fleet.FLEET_QUEUE, "central-fleet")
        firewall_a = worker(agent_env(agent_a), fleet.firewall_queue(agent_a.name), f"firewall-{agent_a.name}")
        outputs: dict[str, str] = {}
        try:
            read = subprocess.run([sys.executable, "-c", AGENT_READ, jail.name, ATTACKER, agent_a.name], cwd=REPO,
                                  env=agent_env(agent_a), capture_output=True, text=True, timeout=60, check=False)
            assert read.returncode == 0 and "banned 1" in read.stdout, read.stderr
            made = Ban.objects.get(primary__isnull=True, network=f"{ATTACKER}/32")
            assert made.host == agent_a.name and Failure.objects.filter(address=ATTACKER).count() == 3
            copies = wait_until(lambda: set(Ban.objects.filter(primary=made).values_list("host", flat=True))
                              if Ban.objects.filter(primary=made).count() == 2 else None)
            assert copies == {settings.IPS_HOST_NAME, agent_b.name}
            # agent A's firewall worker took its own sync request (its firewall is off here: it says so)
            wait_until(lambda: FirewallHost.objects.filter(name=agent_a.name).exists())
        finally:
            outputs["central"] = stop_process(central)
            outputs["firewall"] = stop_process(firewall_a)
        refused = [entry for entry in central_redis.acl_log(count=200)
                   if entry.get("username") in (redis_acl.username(agent_a.name), redis_acl.username(agent_b.name))
                   and entry.get("object") != "client|list"]  # shutdown's CLIENT LIST: docs/fleet.md
        assert refused == []
        for name, output in outputs.items():
            assert "permission denied" not in output.lower(), (name, output)
