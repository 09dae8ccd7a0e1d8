"""`hostctl`: joining and leaving the fleet, and what an agent's database credential can and cannot do.

The PostgreSQL tests create real roles on the test server and connect as them (psycopg, outside
Django). This machine's pg_hba trusts local TCP, so a password is not asked for here: what is
tested is what the role may do once connected, and that the password is stored (as SCRAM) at all.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO

import psycopg
import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from bans import hosts, periodic
from bans.models import Ban, Tally
from jails.access import audit
from jails.apps import regrant_agents
from jails.fleet import postgres
from jails.models import AuditEntry, Host
from tests.factories import make_jail
from tests.fleet import REDIS_URL, Agent, enrolled, reach
from tests.paths import REPO
from watchers.models import LogSource

needs_postgres = pytest.mark.skipif(connection.vendor != "postgresql",
                                    reason="roles, grants and row-level security are PostgreSQL's")


def hostctl(*args: str) -> str:
    out = StringIO()
    call_command("hostctl", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- on either database -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_single_server_is_a_fleet_of_one_named_as_its_workers() -> None:
    central = Host.objects.get(name=settings.IPS_HOST_NAME)  # made by the migration
    assert central.kind == Host.Kind.CENTRAL and central.state == Host.State.ACTIVE
    listed = json.loads(hostctl("list", "--json"))
    assert [(row["name"], row["kind"]) for row in listed] == [(settings.IPS_HOST_NAME, "central")]


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "sqlite", reason="what SQLite says")
def test_on_sqlite_adding_a_host_says_a_fleet_needs_postgresql() -> None:
    with pytest.raises(CommandError, match="a fleet needs PostgreSQL"):
        hostctl("add", "web1", "--address", "198.51.100.7", "--central", "192.0.2.1")
    assert not Host.objects.filter(name="web1").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "said"), [
    (["Web_1", "--address", "198.51.100.7"], "not a valid host name"),
    (["web1", "--address", "agent.example.net"], "is not an IP address"),
    (["web1", "--address", "198.51.100.7", "--group", "Web Servers"], "not a valid group name"),
    (["web1", "--address", "198.51.100.7", "--central", ""], "say how agents reach this server"),
    ([settings.IPS_HOST_NAME, "--address", "198.51.100.7"], "is this server"),
])
def test_a_bad_add_says_what_is_wrong_and_changes_nothing(args: list[str], said: str) -> None:
    if "--central" not in args:
        args = [*args, "--central", "192.0.2.1"]
    if connection.vendor != "postgresql" and said == "is this server":
        said = "a fleet needs PostgreSQL"  # checked before the name is looked up
    before = Host.objects.count()
    with pytest.raises(CommandError, match=said):
        hostctl("add", *args)
    assert Host.objects.count() == before and not AuditEntry.objects.filter(action__startswith="host.").exists()


def test_an_agent_needs_its_name_and_gets_its_own_keys_and_no_remote_control() -> None:
    code = ("from django.conf import settings as s; import json; print(json.dumps([s.CELERY_BROKER_TRANSPORT_OPTIONS,"
            " s.CELERY_WORKER_ENABLE_REMOTE_CONTROL, s.CELERY_TASK_DEFAULT_QUEUE]))")
    run = [sys.executable, "-c", f"import django; django.setup(); {code}"]
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", "IPS_FLEET_ROLE": "agent", "PATH": "/usr/bin:/bin",
           "IPS_SECRET_KEY": "x" * 50}
    done = subprocess.run(run, cwd=REPO, env={**env, "IPS_HOST_NAME": "web1"}, capture_output=True, text=True,
                          check=True)
    options, remote_control, default_queue = json.loads(done.stdout)
    assert options["unacked_key"] == "unacked.web1" and options["priority_steps"] == [0]
    assert remote_control is False and default_queue == "watch.web1"
    nameless = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert nameless.returncode != 0 and "IPS_FLEET_ROLE=agent needs IPS_HOST_NAME" in nameless.stderr


# --- on PostgreSQL: real roles (transaction=True: the agent's own connections must see them) -----


@pytest.fixture
def agent() -> Iterator[Agent]:
    with enrolled(groups=("web",)) as made:
        yield made


def connect_as(agent: Agent) -> psycopg.Connection:
    name = connection.settings_dict["NAME"]
    return psycopg.connect(dbname=name, user=agent.enrollment.host.db_role, host="127.0.0.1", autocommit=True)


def insert_ban(conn: psycopg.Connection, host: str, network: str = "203.0.113.9/32") -> int:
    row = conn.execute(
        "INSERT INTO bans_ban (jail_name, network, family, host, started_at, bantime, earlier_bans, evidence,"
        " origin, reason, state, apply_attempts, apply_error, claimed_by)"
        " VALUES ('sshd', %s, 4, %s, now(), 600, 0, '[]', 'jail', '', 'pending', 0, '', '') RETURNING id",
        [network, host]).fetchone()
    assert row is not None
    return int(row[0])


def central_ban(host: str, network: str = "203.0.113.50/32") -> Ban:
    return Ban.objects.create(jail_name="sshd", network=network, family=4, host=host, bantime=600,
                              expires_at=timezone.now() + dt.timedelta(minutes=10))


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_add_prints_the_agents_environment_and_audits_without_the_secrets(agent: Agent) -> None:
    env = agent.enrollment.environment
    assert env["IPS_FLEET_ROLE"] == "agent" and env["IPS_HOST_NAME"] == agent.name
    assert env["DATABASE_URL"].startswith(f"postgres://{postgres.role_name(agent.name)}:")
    assert env["IPS_REDIS_URL"].startswith(f"redis://ips-agent-{agent.name}:") and env["IPS_REDIS_URL"].endswith(
        REDIS_URL.rsplit("/", 1)[1])
    host = Host.objects.get(name=agent.name)
    assert (host.kind, host.state, host.groups, host.addresses) == ("agent", "enrolled", ["web"], ["198.51.100.20"])
    entry = AuditEntry.objects.get(action="host.add")
    assert entry.via == "cli" and entry.object_repr == agent.name
    assert agent.redis_password not in json.dumps(entry.after)  # no secret in the audit trail
    with connection.cursor() as cursor:  # stored as a SCRAM verifier, not in clear
        cursor.execute("SELECT rolpassword LIKE 'SCRAM-SHA-256$%%', rolconnlimit FROM pg_authid WHERE rolname = %s",
                       [host.db_role])
        assert cursor.fetchone() == (True, postgres.CONNECTION_LIMIT)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_adding_a_host_twice_is_refused_unless_again_which_ends_the_old_credentials(agent: Agent) -> None:
    with pytest.raises(hosts.FleetError, match="is in the fleet already"):
        hosts.add_host(agent.name, addresses=["198.51.100.20"], reach=reach(), actor=audit.Actor.command())
    again = hosts.add_host(agent.name, addresses=["198.51.100.21"], reach=reach(), actor=audit.Actor.command(),
                           again=True)
    assert again.environment["IPS_REDIS_URL"] != agent.redis_url
    assert Host.objects.get(name=agent.name).addresses == ["198.51.100.21"]
    assert AuditEntry.objects.filter(action="host.again").count() == 1


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_stolen_agent_credential_cannot_read_the_panels_people_sessions_audit_or_schedules(agent: Agent) -> None:
    with connect_as(agent) as conn:
        for table in ("auth_user", "auth_group", "django_session", "jails_panelsession", "jails_auditentry",
                      "django_celery_beat_periodictask", "ips_cache", "bans_replayrun", "django_admin_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM {table} LIMIT 1")  # noqa: S608  (fixed names)
        for statement in ("UPDATE jails_jail SET enabled = false", "DELETE FROM jails_filter",
                          "INSERT INTO jails_globalignore (id, entries, updated_at) VALUES (1, '[]', now())",
                          "UPDATE jails_host SET addresses = '[]'", "CREATE TABLE stolen (x int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_stolen_agent_credential_writes_its_own_hosts_bans_only(agent: Agent) -> None:
    central = central_ban(settings.IPS_HOST_NAME)
    with connect_as(agent) as conn:
        own = insert_ban(conn, agent.name)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            insert_ban(conn, settings.IPS_HOST_NAME, "203.0.113.10/32")
        assert conn.execute("UPDATE bans_ban SET state = 'lifted' WHERE id = %s", [central.pk]).rowcount == 0
        assert conn.execute("DELETE FROM bans_ban WHERE id = %s", [central.pk]).rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("UPDATE bans_ban SET host = %s WHERE id = %s", [settings.IPS_HOST_NAME, own])
        # SET ROLE to the agents' group does not widen it: the policies look at the login role
        conn.execute(f'SET ROLE "{postgres.group_role()}"')
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            insert_ban(conn, settings.IPS_HOST_NAME, "203.0.113.11/32")
        conn.execute("RESET ROLE")
        # what remains possible, and said in docs/fleet.md: reading every host's bans
        seen = conn.execute("SELECT count(*) FROM bans_ban").fetchone()
        assert seen == (2,)
        assert conn.execute("SHOW lock_timeout").fetchone() == ("30s",)
    central.refresh_from_db()
    assert central.state == Ban.State.PENDING
    assert Ban.objects.get(pk=own).host == agent.name


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_remove_ends_the_role_and_its_open_connections_and_keeps_the_history(agent: Agent) -> None:
    conn = connect_as(agent)
    insert_ban(conn, agent.name)
    out = hostctl("remove", agent.name)
    assert "1 database" in out
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        connect_as(agent)
    host = Host.objects.get(name=agent.name)
    assert host.state == Host.State.REVOKED and host.revoked_at is not None
    assert AuditEntry.objects.filter(action="host.remove", object_repr=agent.name).exists()
    with pytest.raises(CommandError, match="was removed already"):
        hostctl("remove", agent.name)
    with pytest.raises(CommandError, match="cannot leave its own fleet"):
        hostctl("remove", settings.IPS_HOST_NAME)
    # a removed name may join again, with new credentials
    with enrolled(agent.name) as back:
        assert Host.objects.get(name=back.name).state == Host.State.ENROLLED


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_grants_are_exactly_the_declared_tables(agent: Agent) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type)"
                       " FROM information_schema.role_table_grants WHERE grantee = %s GROUP BY table_name",
                       [postgres.group_role()])
        granted = dict(cursor.fetchall())
    declared = {apps.get_model(g.model)._meta.db_table: ",".join(sorted(g.privileges)) for g in postgres.AGENT_TABLES}
    assert granted == declared


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_migration_gives_the_agents_their_grants_again(agent: Agent) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'REVOKE ALL ON bans_ban FROM "{postgres.group_role()}"')
    regrant_agents(plan=[])  # nothing migrated: nothing done
    with connect_as(agent) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT 1 FROM bans_ban")
    regrant_agents(plan=[("a migration", False)])
    with connect_as(agent) as conn:
        conn.execute("SELECT 1 FROM bans_ban")


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_stolen_agent_credential_cannot_touch_another_hosts_tallies_or_log_sources(agent: Agent) -> None:
    jail = make_jail("sshd")
    now = timezone.now()
    theirs = Tally.objects.create(jail=jail, host=settings.IPS_HOST_NAME, address="203.0.113.5", first_time=now,
                                  last_time=now, count=2)
    source = LogSource.objects.create(jail=jail, host=settings.IPS_HOST_NAME, path="/var/log/auth.log", offset=100)
    with connect_as(agent) as conn:
        assert conn.execute("UPDATE bans_tally SET count = 99 WHERE id = %s", [theirs.pk]).rowcount == 0
        assert conn.execute("DELETE FROM bans_tally WHERE id = %s", [theirs.pk]).rowcount == 0
        assert conn.execute("UPDATE watchers_logsource SET \"offset\" = 0 WHERE id = %s", [source.pk]).rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("INSERT INTO bans_tally (jail_id, host, address, first_time, last_time, count, matches)"
                         " VALUES (%s, %s, '203.0.113.6', now(), now(), 1, '[]')", [jail.pk, settings.IPS_HOST_NAME])
        conn.execute("INSERT INTO bans_tally (jail_id, host, address, first_time, last_time, count, matches)"
                     " VALUES (%s, %s, '203.0.113.6', now(), now(), 1, '[]')", [jail.pk, agent.name])
    theirs.refresh_from_db()
    source.refresh_from_db()
    assert theirs.count == 2 and source.offset == 100


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_add_schedules_the_agents_work_on_its_own_queues_and_remove_takes_it_away(agent: Agent) -> None:
    rows = {row.name: row for row in periodic.agent_rows(agent.name)}
    assert {row.queue for row in rows.values()} == {f"watch.{agent.name}", f"firewall.{agent.name}"}
    assert {row.task for row in rows.values()} == {"watchers.tasks.follow", "watchers.tasks.read_all_sources",
                                                   "bans.tasks.sync_firewall", "bans.tasks.reconcile_firewall"}
    assert all(json.loads(row.kwargs)["host"] == agent.name for row in rows.values())
    # the central server's own install leaves the agent's rows alone
    periodic.install(settings.IPS_HOST_NAME, 2)
    assert periodic.agent_rows(agent.name).filter(enabled=True).count() == len(rows)
    hostctl("remove", agent.name)
    assert not periodic.agent_rows(agent.name).exists()
