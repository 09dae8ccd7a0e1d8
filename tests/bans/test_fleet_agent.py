"""A fleet agent as it runs: `manage.py runstack` under the environment `hostctl add` printed follows
the log of the jail placed on it, counts and bans under its own credentials, and the central side
copies the ban to the other hosts. Central beat (in a worker's loop, consuming the `fleet` queue)
sends the agent its follower, as in production. Real Redis, PostgreSQL roles and processes; the
firewall is off here (the kernel side is the three-namespace test)."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from bans.models import Ban
from config import fleet
from jails.builtin import FILTER_DIR
from jails.fleet import redis_acl
from jails.models import Filter, Host, Jail, JailHost
from tests.fleet import REDIS_URL, enrolled, start_process, stop_process, wait_until
from tests.paths import REPO
from watchers.models import LogSource

pytestmark = [pytest.mark.skipif(connection.vendor != "postgresql", reason="agents' roles are PostgreSQL's"),
              pytest.mark.django_db(transaction=True)]

ATTACKER = "203.0.113.77"


def failure_line(port: int) -> str:
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    return f"{stamp} web1 sshd[{port}]: Failed password for root from {ATTACKER} port {port} ssh2\n"





def test_an_agent_follows_its_own_log_and_its_ban_reaches_the_central_host(tmp_path: Path) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.acl_log_reset()
    for name in ("ips-common", "sshd"):
        Filter.objects.create(name=name, source=(FILTER_DIR / f"{name}.conf").read_text())
    log = tmp_path / "auth.log"
    log.write_text("")
    jail = Jail.objects.create(name="sshd", filter=Filter.objects.get(name="sshd"), enabled=True, maxretry=3,
                               findtime=600, bantime=3600, ban_scope=Jail.BanScope.ALL, logpath=["/nonexistent"])
    Host.central()
    with enrolled() as agent:
        JailHost.objects.create(jail=jail, host=Host.objects.get(name=agent.name), logpath=[str(log)])
        central_env = {**os.environ, "DATABASE_URL": f"postgres:///{connection.settings_dict['NAME']}",
                       "IPS_REDIS_URL": REDIS_URL, "IPS_FIREWALL": "off"}
        agent_env = {**os.environ, **agent.enrollment.environment, "IPS_FIREWALL": "off"}
        central = start_process([sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--queues",
                           fleet.FLEET_QUEUE, "--beat-in-loop", "--schedule-filename",
                           str(tmp_path / "beat-schedule"), "--hostname", "central@%h"], central_env, str(REPO))
        stack = start_process([sys.executable, "manage.py", "runstack", "--no-fork", "--concurrency", "1"], agent_env,
                              str(REPO))
        outputs: dict[str, str] = {}
        try:
            # the agent's follower, sent by central beat, finds the jail placed on it and its own log
            source = wait_until(lambda: LogSource.objects.filter(host=agent.name, path=str(log)).first(), 90)
            assert not LogSource.objects.filter(host=settings.IPS_HOST_NAME).exists()  # central runs no copy of it
            time.sleep(1)
            with log.open("a") as handle:
                for port in range(3):
                    handle.write(failure_line(40000 + port))
            made = wait_until(lambda: Ban.objects.filter(primary__isnull=True, network=f"{ATTACKER}/32").first(), 60)
            assert made.host == agent.name and made.jail_name == "sshd"
            copy = wait_until(lambda: Ban.objects.filter(primary=made, host=settings.IPS_HOST_NAME).first(), 60)
            assert copy.expires_at == made.expires_at
            source.refresh_from_db()
            assert source.lines_read >= 3 or source.offset > 0
        except AssertionError:
            said = "agent:\n" + stop_process(stack) + "\ncentral:\n" + stop_process(central)
            Path("/tmp/fleet-agent-test.log").write_text(said)
            raise AssertionError(said[-4000:]) from None
        finally:
            outputs["agent"] = stop_process(stack)
            outputs["central"] = stop_process(central)
        refused = [entry for entry in client.acl_log(count=200)
                   if entry.get("username") == redis_acl.username(agent.name) and entry.get("object") != "client|list"]
        assert refused == [], (refused, outputs["agent"][-3000:])
        assert "permission denied" not in outputs["agent"].lower(), outputs["agent"][-3000:]
    client.flushdb()
