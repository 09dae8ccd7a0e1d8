"""The names a fleet host's work goes by in Redis, in one place (plain Python, no Django import).

Settings read it to configure an agent's Celery (its own keys for in-flight messages, its own default
queue), jails.fleet.redis_acl to grant an agent's Redis user exactly those keys and nothing else, and
the code that sends work to a host to find its queues. Keeping the names here means the ACL and what
Celery really touches cannot drift apart (tests/bans/test_fleet_redis.py runs a real worker under
the ACL).

Every name is the host's name spelled out in full, never a pattern: kombu's priority steps are set to
one step fleet-wide (`PRIORITY_STEPS`), so no queue has suffixed sibling keys and no ACL needs a
glob that would also match a longer host name (web1 and web10).
"""

from __future__ import annotations

import socket
from typing import Any

ROLES = ("central", "agent")
# The central queue agents report to (a ban they made, for fan-out): agents may only push to it.
FLEET_QUEUE = "fleet"
# One priority step: a queue is one Redis list named as the queue (kombu's default [0, 3, 6, 9] gives
# each queue three more keys, and a worker BRPOPs four keys per queue). Nothing here sets priorities.
PRIORITY_STEPS = [0]


def firewall_queue(host: str) -> str:
    """Each firewall host has its own queue, consumed by the only worker that needs CAP_NET_ADMIN."""
    return f"firewall.{host}"


def watch_queue(host: str) -> str:
    """An agent's log work (its followers and fallback reads), consumed by its watcher worker."""
    return f"watch.{host}"


def binding_keys(queue: str) -> list[str]:
    """The sets kombu's Redis transport adds a queue's binding to when it declares it."""
    return [f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]


def unacked_keys(host: str) -> dict[str, str]:
    """kombu's keys for messages a worker took and has not acknowledged yet, per agent: with the
    shared defaults any worker could read, drop or forge every other host's in-flight messages
    (they are restored to their queues from there)."""
    return {
        "unacked_key": f"unacked.{host}",
        "unacked_index_key": f"unacked_index.{host}",
        "unacked_mutex_key": f"unacked_mutex.{host}",
    }


def lease_prefix(host: str) -> str:
    """The start of an agent's follower lease keys (watchers.lease)."""
    return f"ips:follow:lease:{host}:"


def agent_queues(host: str) -> list[str]:
    return [watch_queue(host), firewall_queue(host)]


# A connection whose peer went away without a word (a link down, a host unplugged) is found dead by
# TCP keepalive within about KEEPIDLE + KEEPINTVL * KEEPCNT seconds of silence, instead of when kombu's
# overdue-BRPOP check (brpop timeout + health_check_interval) or TCP itself gives up (minutes).
KEEPALIVE = {socket.TCP_KEEPIDLE: 5, socket.TCP_KEEPINTVL: 2, socket.TCP_KEEPCNT: 3}


def transport_options(role: str, host: str, poll_seconds: int) -> dict[str, Any]:
    """CELERY_BROKER_TRANSPORT_OPTIONS for a host of this role."""
    options: dict[str, Any] = {"polling_interval": poll_seconds, "priority_steps": PRIORITY_STEPS}
    if role == "agent":
        # an agent's Redis is across a network: dead links are noticed in seconds, and a connect (TCP and
        # the TLS handshake, which a busy machine may take seconds over) or a synchronous command (a
        # publish) gives up instead of hanging (the BRPOP waits poll_seconds)
        options.update(unacked_keys(host), socket_keepalive=True, socket_keepalive_options=KEEPALIVE,
                       socket_connect_timeout=10, socket_timeout=poll_seconds + 5, health_check_interval=5)
    return options
