"""A fleet's processes in network namespaces (scripts/harness/netns.py FleetNet), for the three-host
end-to-end test and bench/fleet.py: the central Redis and a PostgreSQL forwarder on the bridge, the
central worker (firewall and fan-out) and beat in the central namespace, and each agent's stack in
its own namespace, started as `scripts/agent.sh` starts it. What they run against (jails, hosts and
their credentials) is made by the caller, through the product's own services."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redis

from scripts.harness.netns import FleetNet
from scripts.harness.processes import Child, stop_children, wait_for

PYTHON = sys.executable
REDIS_PORT = 6390
PG_SOCKET = "/var/run/postgresql/.s.PGSQL.5432"
PG_PORT = 5432


@dataclass
class FleetStack:
    net: FleetNet
    workdir: Path
    children: list[Child] = field(default_factory=list)

    @property
    def socket_path(self) -> Path:
        return self.workdir / "redis" / "redis.sock"

    @property
    def central_redis_url(self) -> str:
        """The central Redis as the test or bench process (and the central's processes) reach it."""
        return f"redis+socket://{self.socket_path}?virtual_host=0"

    @property
    def central_address(self) -> str:
        return self.net.addresses["central"]

    def start_services(self) -> redis.Redis:
        """The central Redis (on the bridge and on a unix socket) and PostgreSQL's forwarder."""
        (self.workdir / "redis").mkdir(exist_ok=True)
        self.start("redis", ["ip", "netns", "exec", self.net.central, "redis-server", "--bind", self.central_address,
                             "--port", str(REDIS_PORT), "--unixsocket", str(self.socket_path), "--unixsocketperm",
                             "700", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir",
                             str(self.workdir / "redis")], {"PATH": os.environ["PATH"]})
        self.start("postgres-forward", ["ip", "netns", "exec", self.net.central, PYTHON, "-m",
                                        "scripts.harness.forward", self.central_address, str(PG_PORT), PG_SOCKET],
                   dict(os.environ))
        client = redis.Redis(unix_socket_path=str(self.socket_path))
        if not wait_for(lambda: _pings(client), 10):
            raise RuntimeError(f"the central Redis did not start:\n{self.digest()}")
        return client

    def start_central(self, env: dict[str, str]) -> None:
        """The central firewall worker (which also copies bans to the fleet) and beat."""
        central_env = {**env, "IPS_REDIS_URL": self.central_redis_url, "PYTHONUNBUFFERED": "1"}
        celery = [PYTHON, "-m", "celery", "-A", "config"]
        self.start("central-worker", ["ip", "netns", "exec", self.net.central, *celery, "worker", "-Q",
                                      f"firewall.{env.get('IPS_HOST_NAME', 'local')},fleet", "--pool", "solo",
                                      "--hostname", "central@%h", "--loglevel", "INFO"], central_env)
        self.start("beat", ["ip", "netns", "exec", self.net.central, *celery, "beat", "-S", "config.beat:Scheduler",
                            "--loglevel", "INFO", "--schedule", str(self.workdir / "beat-schedule")], central_env)

    def start_agent(self, member: str, environment: dict[str, str], **extra: str) -> None:
        """An agent's stack in its namespace, with the environment `hostctl add` printed for it."""
        env = {**os.environ, **environment, "IPS_FIREWALL": "nftables", "PYTHONUNBUFFERED": "1",
               "IPS_SECRET_KEY": "agent-only-secret-key-not-the-panels-" + "x" * 20, **extra}
        self.start(f"agent-{member}", ["ip", "netns", "exec", self.net.members[member], PYTHON, "manage.py",
                                       "runstack", "--no-fork", "--concurrency", "1"], env)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        child = Child.start(name, argv, env, self.workdir)
        self.children.append(child)
        return child

    def digest(self) -> str:
        return "\n".join(f"===== {child.name}\n{child.digest()}" for child in self.children)

    def stop(self, keep: tuple[str, ...] = ()) -> None:
        """Stop the processes, but those named in `keep` (bench/fleet.py keeps Redis for its next part)."""
        stopping = [child for child in self.children if child.name not in keep]
        stop_children(stopping)
        self.children = [child for child in self.children if child.name in keep]


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
