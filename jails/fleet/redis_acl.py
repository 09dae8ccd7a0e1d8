"""An agent's Redis user: its own queues and keys, the commands Celery and the followers use, and a
write-only way to report to the central `fleet` queue. Nothing else: not another host's queue, not
the central workers' in-flight messages, not remote control, not CLIENT, CONFIG, KEYS or FLUSHALL.

The keys are the ones config/fleet.py names for the host, the same names the agent's settings give
Celery, so the two cannot drift apart. The commands were read off what a real worker, a publisher and
a follower send (tests/bans/test_fleet_redis.py runs them under this ACL and reads ACL LOG).
"""

from __future__ import annotations

from typing import Any

import redis

from config import fleet

USER_PREFIX = "ips-agent-"

# What a consuming Celery worker (kombu's Redis transport) and our followers send, by purpose.
CONNECTION = ("ping", "hello", "auth", "client|setinfo", "client|setname", "client|id", "select", "echo")
CONSUME = ("brpop", "lpush", "rpush", "llen", "lrem", "sadd", "smembers", "srem")
IN_FLIGHT = ("multi", "exec", "discard", "watch", "unwatch", "zadd", "zrem", "zrange", "zrevrangebyscore",
             "zrangebyscore", "hset", "hget", "hdel", "set", "get", "del", "pexpire", "pttl",
             "evalsha", "script|load", "script|exists", "exists")


def username(host: str) -> str:
    return f"{USER_PREFIX}{host}"


def agent_keys(host: str) -> list[str]:
    """Every key the agent may read and write, by exact name (and its lease prefix)."""
    queues = fleet.agent_queues(host)
    bindings = [key for queue in queues for key in fleet.binding_keys(queue)]
    return [*queues, *bindings, *fleet.unacked_keys(host).values(), f"{fleet.lease_prefix(host)}*"]


def agent_rules(host: str, password: str, known: set[str] | None = None) -> list[str]:
    """ACL SETUSER's rules for the agent `host` (reset first: nothing left from an earlier user).
    `known`: the commands this Redis has (an older one lacks CLIENT SETINFO, which redis-py sends
    and does without); None: all of them."""
    wanted = (*CONNECTION, *CONSUME, *IN_FLIGHT)
    commands = [f"+{name}" for name in wanted if known is None or name in known]
    keys = [f"~{key}" for key in agent_keys(host)]
    # A selector: LPUSH, and only LPUSH, to the central fleet queue (not read it, not delete it).
    report = f"(%W~{fleet.FLEET_QUEUE} +lpush)"
    return ["reset", "on", f">{password}", "resetchannels", *keys, "-@all", *commands, report]


def create_user(client: redis.Redis, host: str, password: str) -> str:
    """Create (or replace, with a new password) the agent's Redis user; returns its name."""
    name = username(host)
    _command(client, "ACL", "SETUSER", name, *agent_rules(host, password, known_commands(client)))
    return name


def known_commands(client: redis.Redis) -> set[str]:
    """Which of the commands an agent needs this Redis knows (subcommands as `command|sub`)."""
    wanted = (*CONNECTION, *CONSUME, *IN_FLIGHT)
    # one argument "COMMAND INFO": redis-py sends two words, and its parser for COMMAND (which fails on an
    # unknown command's nil) is not applied
    replies = _command(client, "COMMAND INFO", *wanted)
    return {name for name, reply in zip(wanted, replies, strict=True) if reply}


def delete_user(client: redis.Redis, name: str) -> int:
    """Remove the user and its connections; returns how many were closed. Redis closes a deleted
    user's connections itself; they are counted (and closed) first, so the count says what ended."""
    try:
        closed = int(_command(client, "CLIENT", "KILL", "USER", name) or 0)
    except redis.ResponseError:  # no such user
        closed = 0
    _command(client, "ACL", "DELUSER", name)
    return closed


def unprotected_default_user(client: redis.Redis) -> bool:
    """The central Redis lets anyone in without a password (its default user is `nopass` and on):
    an agent's own user protects nothing then, since any client can connect as the default one."""
    rules = _command(client, "ACL", "GETUSER", "default")
    if not rules:
        return False
    flags = _field(rules, "flags")
    return "on" in flags and "nopass" in flags


def _field(reply: object, name: str) -> list[str]:
    """One field of ACL GETUSER's reply (a flat list on RESP2, a dict on RESP3), as text."""
    items = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=False)  # type: ignore[index]
    for key, value in items:
        if (key.decode() if isinstance(key, bytes) else key) == name:
            return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
    return []


def _command(client: redis.Redis, *args: Any) -> Any:
    """A raw command (redis-py's typed helpers cannot write ACL selectors)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]
