"""Joining and leaving the fleet: the rules and the audit of `hostctl add`, `remove` and `list`.

Adding a host creates its row, its PostgreSQL role (jails.fleet.postgres) and its Redis user
(jails.fleet.redis_acl) with fresh passwords, gives it copies of the bans in force whose jails' scope
includes it (bans.fanout), and returns the environment the agent runs with. The
passwords are in that environment only: nothing keeps them, so a lost one is replaced by adding the
host again (`hostctl add NAME --again`), which also ends the old one. Removing a host ends both
credentials at once (its open connections are closed), marks it revoked and keeps its history.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from bans import fanout, periodic
from config.redisclient import broker_redis
from jails import validators
from jails.access import audit
from jails.fleet import postgres, redis_acl
from jails.models import Host, Jail, JailHost

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class FleetError(ValueError):
    """A fleet change that cannot be made; the message says why and what to do instead."""


@dataclass(frozen=True)
class Reach:
    """How an agent reaches the central server: its address, ports, and whether over TLS."""

    address: str
    database_port: int
    redis_port: int
    redis_db: int
    database_sslmode: str = "require"
    redis_tls: bool = True
    ca_file: str = ""  # on the agent: the CA that signed the central server's certificates (else the system's)

    @classmethod
    def of_central(cls, address: str, *, database_sslmode: str = "require", redis_tls: bool = True,
                   redis_port: int | None = None, database_port: int | None = None, ca_file: str = "") -> Reach:
        """The central server as its own settings describe it, seen from an agent at `address`."""
        if not address.strip():
            raise FleetError("say how agents reach this server: --central ADDRESS (or set IPS_FLEET_CENTRAL)")
        if ca_file and not ca_file.startswith("/"):
            raise FleetError(f"--ca-file {ca_file!r}: give the CA file's absolute path on the agent")
        if database_sslmode not in SSL_MODES:
            raise FleetError(f"--database-sslmode {database_sslmode!r}: expected one of {', '.join(SSL_MODES)}")
        redis_url = urlsplit(settings.CELERY_BROKER_URL)
        if redis_url.scheme not in ("redis", "rediss"):
            raise FleetError(f"the central Redis is reached over {redis_url.scheme}://; agents need it on TCP "
                             "(IPS_REDIS_URL=redis://... or rediss://...)")
        return cls(address=address.strip(),
                   database_port=database_port or int(connection.settings_dict.get("PORT") or 5432),
                   redis_port=redis_port or redis_url.port or 6379,
                   redis_db=int(redis_url.path.strip("/") or 0),
                   database_sslmode=database_sslmode, redis_tls=redis_tls, ca_file=ca_file)


@dataclass
class Enrollment:
    host: Host
    environment: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    def env_file(self) -> str:
        """The agent's environment file, as systemd's EnvironmentFile and scripts/agent.sh read it."""
        lines = [f"# The fleet agent {self.host.name}: written by `manage.py hostctl add` on "
                 f"{timezone.now():%Y-%m-%d %H:%M} UTC. Secret: keep it mode 0600 on the agent only.",
                 *(f"{key}={value}" for key, value in self.environment.items())]
        return "\n".join(lines) + "\n"


def central_host() -> Host:
    """This server's own row (a single server is a fleet of one)."""
    return Host.central()


def list_hosts() -> list[Host]:
    central_host()
    return list(Host.objects.all())


def _clean_addresses(addresses: Sequence[str]) -> list[str]:
    if not addresses:
        raise FleetError("give the host's address(es) with --address: no ban anywhere may cover them, or the "
                         "agent would be cut off from this server")
    cleaned = []
    for text in addresses:
        try:
            cleaned.append(str(ipaddress.ip_address(text.strip())))
        except ValueError:
            raise FleetError(f"--address {text!r} is not an IP address (names are not resolved: give the "
                             "address the agent connects from)") from None
    return sorted(set(cleaned))


def _clean_groups(groups: Sequence[str]) -> list[str]:
    try:
        for group in groups:
            validators.validate_host_group(group)
    except ValidationError as exc:
        raise FleetError(exc.messages[0]) from None
    return sorted(set(groups))


def _clean_name(name: str) -> str:
    try:
        validators.validate_host_name(name)
    except ValidationError as exc:
        raise FleetError(exc.messages[0]) from None
    return name


def add_host(name: str, *, addresses: Sequence[str], groups: Sequence[str] = (), reach: Reach,
             actor: audit.Actor, again: bool = False) -> Enrollment:
    """Enroll `name`: its row, its database role and its Redis user, with new passwords. `again`:
    the host exists already, and gets new credentials (the old ones stop working)."""
    name = _clean_name(name)
    pinned, chosen_groups = _clean_addresses(addresses), _clean_groups(groups)
    postgres.require_postgres()
    postgres.check_can_create_roles()
    client = _central_redis()
    existing = Host.objects.filter(name=name).first()
    if existing is not None and existing.kind == Host.Kind.CENTRAL:
        raise FleetError(f"{name} is this server (IPS_HOST_NAME): it is in the fleet already, as the central host")
    if existing is not None and existing.state != Host.State.REVOKED and not again:
        raise FleetError(f"{name} is in the fleet already: `hostctl add {name} --again` gives it new credentials "
                         f"(the old ones stop working), `hostctl remove {name}` takes it out")
    db_password, redis_password = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    before = audit.snapshot(existing, AUDITED) if existing is not None else None
    redis_user_made = False
    try:
        with transaction.atomic():
            host = existing or Host(name=name, kind=Host.Kind.AGENT)
            host.state, host.addresses, host.groups = Host.State.ENROLLED, pinned, chosen_groups
            host.created_by, host.revoked_at, host.revoked_by = actor.username, None, ""
            host.db_role, host.redis_user = postgres.role_name(name), redis_acl.username(name)
            host.save()
            postgres.apply_grants()
            postgres.create_role(name, db_password)
            copies = fanout.copy_to_host(host)
            periodic.install_agent(name)  # its followers, fallback reads and firewall runs, sent by our beat
            audit.record(actor, "host.again" if existing is not None and again else "host.add", host,
                         before=before, after={**audit.snapshot(host, AUDITED), "bans_copied": copies})
            # last: a failure above leaves no Redis user behind (and one here rolls the rest back)
            redis_acl.create_user(client, name, redis_password)
            redis_user_made = True
    except Exception:
        if redis_user_made:  # the commit failed: the database has no such agent, Redis must not either
            redis_acl.delete_user(client, redis_acl.username(name))
        raise
    environment = agent_environment(host, reach, db_password, redis_password)
    return Enrollment(host=host, environment=environment, warnings=_warnings(client, reach))


AUDITED = ["name", "kind", "state", "groups", "addresses", "db_role", "redis_user"]


def agent_environment(host: Host, reach: Reach, db_password: str, redis_password: str) -> dict[str, str]:
    """What the agent's processes need to join: its name and role, and its own URLs."""
    where = f"[{reach.address}]" if ":" in reach.address else reach.address
    # across a network: a connect gives up after 5 s, and a connection whose link went down is found
    # dead within about 10 s (keepalives; tcp_user_timeout for a query in flight) instead of holding
    # the agent's worker for the minutes TCP takes to give up
    database_options: dict[str, str | int] = {
        "sslmode": reach.database_sslmode, "connect_timeout": 5, "keepalives": 1, "keepalives_idle": 5,
        "keepalives_interval": 2, "keepalives_count": 3, "tcp_user_timeout": 10000}
    if reach.ca_file:
        database_options["sslrootcert"] = reach.ca_file
    query = urlencode(database_options)
    database = (f"postgres://{quote(host.db_role, safe='')}:{quote(db_password, safe='')}@{where}:"
                f"{reach.database_port}/{quote(postgres.database_name(), safe='')}?{query}")
    scheme = "rediss" if reach.redis_tls else "redis"
    broker = f"{scheme}://{quote(host.redis_user, safe='')}:{quote(redis_password, safe='')}@{where}:" \
             f"{reach.redis_port}/{reach.redis_db}"
    if reach.redis_tls:  # certificates verified (config/env.py redis_tls), against the CA given if any
        broker += "?" + urlencode({"ssl_cert_reqs": "required", **({"ssl_ca_certs": reach.ca_file}
                                                                      if reach.ca_file else {})})
    return {"IPS_FLEET_ROLE": "agent", "IPS_HOST_NAME": host.name, "DATABASE_URL": database,
            "IPS_REDIS_URL": broker}


def _warnings(client: redis.Redis, reach: Reach) -> list[str]:
    said = []
    if redis_acl.unprotected_default_user(client):
        said.append("the central Redis lets anyone in without a password (its default user is nopass): set "
                    "one (requirepass, or ACL SETUSER default) before agents connect over the network, or any "
                    "client can do what this panel does")
    if not reach.redis_tls:
        said.append("the agent reaches Redis without TLS: its password and every message cross the network "
                    "in clear text")
    if reach.database_sslmode in ("disable", "allow", "prefer"):
        said.append(f"the agent's database connection may run without TLS (sslmode={reach.database_sslmode})")
    return said


def remove_host(name: str, *, actor: audit.Actor) -> dict[str, int]:
    """Take `name` out of the fleet: its credentials end now (open connections closed), its bans end
    (those it made are lifted everywhere), its row is kept, revoked, for its history. Returns what
    was ended."""
    central_host()
    host = Host.objects.filter(name=name).first()
    if host is None:
        known = ", ".join(Host.objects.values_list("name", flat=True)) or "none"
        raise FleetError(f"no host is called {name!r} (hosts: {known})")
    if host.kind == Host.Kind.CENTRAL:
        raise FleetError(f"{name} is this server, the central host: it cannot leave its own fleet")
    if host.state == Host.State.REVOKED:
        raise FleetError(f"{name} was removed already, on {host.revoked_at:%Y-%m-%d %H:%M}")
    client = _central_redis()
    before = audit.snapshot(host, AUDITED)
    with transaction.atomic():
        host.state, host.revoked_at, host.revoked_by = Host.State.REVOKED, timezone.now(), actor.username
        host.save(update_fields=["state", "revoked_at", "revoked_by"])
        ended = {"database_connections": postgres.drop_role(host.db_role) if host.db_role else 0,
                 "bans": fanout.end_host(name), "schedules": periodic.remove_agent(name)}
        audit.record(actor, "host.remove", host, before=before,
                     after={**audit.snapshot(host, AUDITED), "bans_ended": ended["bans"]})
    ended["redis_connections"] = redis_acl.delete_user(client, host.redis_user) if host.redis_user else 0
    ended["redis_keys"] = _drop_queues(client, name)
    return ended


def _drop_queues(client: redis.Redis, name: str) -> int:
    """The removed host's queues and in-flight keys: no one will consume them any more."""
    keys = [key for key in redis_acl.agent_keys(name) if not key.endswith("*")]
    return int(client.delete(*keys)) if keys else 0


def _central_redis() -> redis.Redis:
    try:
        client = broker_redis()
        client.ping()
    except redis.RedisError as exc:
        raise FleetError(f"cannot reach the central Redis ({exc}): agents' Redis users live there; start it "
                         "and run hostctl again") from None
    return client


def place_jail(jail_name: str, host_name: str, *, logpath: Sequence[str] = (), actor: audit.Actor) -> JailHost:
    """Run a jail on a host (its log paths there: `logpath`, or the jail's own). A jail placed
    nowhere runs on the central host only; once placed anywhere, it runs exactly where it is placed,
    so placing it on an agent alone takes it off the central host."""
    jail, host = _jail_and_host(jail_name, host_name)
    try:
        validators.validate_logpath(list(logpath))
    except ValidationError as exc:
        raise FleetError(exc.messages[0]) from None
    with transaction.atomic():
        placement, created = JailHost.objects.update_or_create(jail=jail, host=host,
                                                               defaults={"logpath": list(logpath)})
        jail.save(update_fields=["updated_at"])  # the followers re-read their jails when one changes
        audit.record(actor, "jail.place", jail, object_type="jail", object_repr=jail.name,
                     after={"host": host.name, "logpath": list(logpath), "new": created})
    return placement


def unplace_jail(jail_name: str, host_name: str, *, actor: audit.Actor) -> bool:
    """Stop running a jail on a host; False when it was not placed there."""
    jail, host = _jail_and_host(jail_name, host_name)
    with transaction.atomic():
        deleted, _ = JailHost.objects.filter(jail=jail, host=host).delete()
        if deleted:
            jail.save(update_fields=["updated_at"])
            audit.record(actor, "jail.unplace", jail, object_type="jail", object_repr=jail.name,
                         before={"host": host.name})
    return bool(deleted)


def _jail_and_host(jail_name: str, host_name: str) -> tuple[Jail, Host]:
    central_host()
    jail = Jail.objects.filter(name=jail_name).first()
    if jail is None:
        raise FleetError(f"no jail is called {jail_name!r}")
    host = Host.objects.filter(name=host_name).exclude(state=Host.State.REVOKED).first()
    if host is None:
        raise FleetError(f"no host of the fleet is called {host_name!r} (hostctl list shows them)")
    return jail, host
