"""How each host of the fleet is doing, for the Hosts page and `jailctl status --host`: read from what each
host's own processes write (its firewall worker's FirewallHost row: heartbeat, version, state,
kernel drift; its log sources: last read per jail), the bans it applies, and its queues' depth in
the central Redis. Nothing here is what an agent says about itself beyond those rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis
from django.db.models import Count, Max, Q
from django.utils import timezone

from bans.models import Ban, FirewallHost
from bans.status import STALE_AFTER, firewall_status
from config import fleet
from config.redisclient import broker_redis
from config.version import VERSION
from jails.models import Host
from watchers.models import LogSource


@dataclass
class JailRead:
    jail: str
    last_read_at: dt.datetime | None
    health: str
    reason: str


@dataclass
class HostRow:
    host: Host
    firewall_ok: bool
    firewall_says: str
    heartbeat: dt.datetime | None
    alive: bool
    version: str
    drift: str
    in_force: int = 0
    pending: int = 0
    failed: int = 0
    queues: dict[str, int | None] = field(default_factory=dict)
    reads: list[JailRead] = field(default_factory=list)

    @property
    def version_differs(self) -> bool:
        return bool(self.version) and self.version != VERSION


def host_rows(now: dt.datetime | None = None) -> tuple[list[HostRow], dict[str, int | None]]:
    """One row per host of the fleet (removed ones last), a handful of queries whatever the fleet's size;
    and the depth of the central fleet queue (read in the same round trip to Redis)."""
    now = now or timezone.now()
    Host.central()
    hosts = sorted(Host.objects.all(), key=lambda h: (h.state == Host.State.REVOKED, h.kind != Host.Kind.CENTRAL,
                                                       h.name))
    firewalls = {row.name: row for row in FirewallHost.objects.all()}
    tallied = Ban.objects.in_force(now).values("host").annotate(
        total=Count("pk"), pending=Count("pk", filter=Q(state=Ban.State.PENDING)),
        failed=Count("pk", filter=Q(state=Ban.State.FAILED)))
    counts = {str(row["host"]): (int(row["total"]), int(row["pending"]), int(row["failed"])) for row in tallied}
    reads: dict[str, list[JailRead]] = {}
    for row in (LogSource.objects.values("host", "jail__name").annotate(last=Max("last_read_at"))
                .order_by("host", "jail__name")):
        reads.setdefault(row["host"], []).append(JailRead(row["jail__name"], row["last"], "ok", ""))
    for source in LogSource.objects.exclude(health=LogSource.Health.OK).select_related("jail"):
        for read in reads.get(source.host, []):
            if read.jail == source.jail.name:
                read.health, read.reason = source.health, source.health_reason
    depths = queue_depths([h.name for h in hosts if h.state != Host.State.REVOKED])
    rows = []
    for host in hosts:
        firewall = firewalls.get(host.name)
        ok, says = firewall_status(host.name, now) if host.state != Host.State.REVOKED else (False, "removed")
        in_force, pending, failed = counts.get(host.name, (0, 0, 0))
        rows.append(HostRow(
            host=host, firewall_ok=ok, firewall_says=says,
            heartbeat=firewall.last_seen_at if firewall else None,
            alive=firewall is not None and now - firewall.last_seen_at <= STALE_AFTER,
            version=firewall.version if firewall else "", drift=firewall.drift if firewall else "",
            in_force=in_force, pending=pending, failed=failed,
            queues=depths.get(host.name, {}), reads=reads.get(host.name, [])))
    return rows, depths.get("", {})


def queue_depths(names: Sequence[str]) -> dict[str, dict[str, int | None]]:
    """Messages waiting in each host's queues (its firewall's; an agent's log work too), and in the
    central fleet queue under the key "" ; None where Redis cannot say."""
    wanted = {name: [fleet.firewall_queue(name), fleet.watch_queue(name)] for name in names}
    try:
        client = broker_redis()
        pipe = client.pipeline(transaction=False)
        for queues in wanted.values():
            for queue in queues:
                pipe.llen(queue)
        pipe.llen(fleet.FLEET_QUEUE)
        found = iter(pipe.execute())
    except redis.RedisError:
        return {name: dict.fromkeys(queues) for name, queues in {**wanted, "": [fleet.FLEET_QUEUE]}.items()}
    depths: dict[str, dict[str, int | None]] = {name: {queue: int(next(found)) for queue in queues}
                                                for name, queues in wanted.items()}
    depths[""] = {fleet.FLEET_QUEUE: int(next(found))}
    return depths
