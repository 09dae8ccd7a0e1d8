"""An agent's PostgreSQL role: what its watchers and firewall worker need, its own host's rows only
where it writes bans, and nothing of the panel's people (users, sessions, audit) or beat's schedules.

Every agent role is a member of one group role per database (`<database>_agents`) that holds the
grants; row-level security policies on the tables an agent writes per host compare the row's host
with the host whose `db_role` is the connection's `session_user` (which SET ROLE cannot change): an
agent inserts, updates and deletes its own host's bans and firewall status, reads every host's bans
(bantime.increment counts an address's earlier bans everywhere) and nothing else by default. The
central connection owns the tables and so is not subject to these policies.

`apply_grants` is idempotent and re-run by `hostctl add` and after every `migrate` when agents
exist (jails.apps), so a table added by a later release gets its grants. SQLite has no roles: a
fleet needs PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.db import connection
from psycopg import sql

# Statement and lock limits set on every agent role: an agent cut off mid-transaction (its link
# dropped, its process stopped) must not hold locks the central workers and other agents wait for.
ROLE_SETTINGS = {"idle_in_transaction_session_timeout": "60s", "lock_timeout": "30s"}
# An agent runs a handful of connections (its watcher worker's processes, its firewall worker); a
# stolen credential cannot take every connection slot of the central server.
CONNECTION_LIMIT = 32
READ, WRITE = ("SELECT",), ("SELECT", "INSERT", "UPDATE", "DELETE")


@dataclass(frozen=True)
class TableGrant:
    model: str  # app_label.Model
    privileges: tuple[str, ...]
    own_rows: str = ""  # writes limited to rows whose column equals the agent's host name


# What an agent's processes read and write (the watchers' reads and followers, the firewall worker).
AGENT_TABLES = (
    TableGrant("jails.Filter", READ),
    TableGrant("jails.Jail", READ),
    TableGrant("jails.GlobalIgnore", READ),
    TableGrant("jails.Host", READ),
    TableGrant("jails.JailHost", READ),
    TableGrant("jails.LivePanelAddress", READ),  # a view: the sessions' addresses only, for the gate
    TableGrant("bans.Failure", ("SELECT", "INSERT")),
    TableGrant("bans.Ignored", ("INSERT",)),
    TableGrant("bans.Tally", WRITE, own_rows="host"),
    TableGrant("bans.Ban", WRITE, own_rows="host"),
    TableGrant("bans.FirewallHost", ("SELECT", "INSERT", "UPDATE"), own_rows="name"),
    TableGrant("bans.JailStat", ("SELECT", "INSERT", "UPDATE")),
    TableGrant("bans.AddressStat", ("SELECT", "INSERT", "UPDATE")),
    TableGrant("bans.UserStat", ("SELECT", "INSERT", "UPDATE")),
    TableGrant("watchers.LogSource", ("SELECT", "INSERT", "UPDATE"), own_rows="host"),
)


class FleetDatabaseError(RuntimeError):
    """The database cannot hold agents' roles (SQLite, no CREATEROLE); the message says what to do."""


def require_postgres() -> None:
    if connection.vendor != "postgresql":
        raise FleetDatabaseError(
            "a fleet needs PostgreSQL: each agent gets a database role of its own, which SQLite cannot give. "
            "Move the panel to PostgreSQL first (DATABASE_URL=postgres://..., see README: Configure).")


def database_name() -> str:
    return str(connection.settings_dict["NAME"])


def group_role() -> str:
    return f"{database_name()}_agents"


def role_name(host: str) -> str:
    """The agent's role, named after the database too: roles belong to the whole PostgreSQL server,
    which may hold other panels' databases (and the test suite's)."""
    name = f"{database_name()}_agent_{host}"
    if len(name.encode()) > 63:
        raise FleetDatabaseError(f"the role name {name!r} is longer than PostgreSQL's 63 bytes: "
                                 "use a shorter host name")
    return name


def check_can_create_roles() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
        row = cursor.fetchone()
    if not row or not row[0]:
        raise FleetDatabaseError(
            "the panel's database user cannot create roles: give it CREATEROLE "
            "(as postgres: ALTER ROLE <user> CREATEROLE), then run hostctl again")


def _role_exists(cursor: object, name: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])  # type: ignore[attr-defined]
    return cursor.fetchone() is not None  # type: ignore[attr-defined]


def _table(model: str) -> str:
    return str(apps.get_model(model)._meta.db_table)


def agent_host_condition(column: str) -> sql.Composed:
    """`column` equals the host of the connecting agent role (NULL, so false, for any other role)."""
    host_table = sql.Identifier(_table("jails.Host"))
    return sql.SQL("{column} = (SELECT h.name FROM {hosts} h WHERE h.db_role = session_user AND h.state <> 'revoked')"
                   ).format(column=sql.Identifier(column), hosts=host_table)


def apply_grants() -> None:
    """Create the agents' group role if needed and (re)grant it exactly AGENT_TABLES, with the
    row-level security policies of the tables written per host. Idempotent."""
    require_postgres()
    group = sql.Identifier(group_role())
    with connection.cursor() as cursor:
        if not _role_exists(cursor, group_role()):
            cursor.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(group))
        cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(group))
        for grant in AGENT_TABLES:
            table = sql.Identifier(_table(grant.model))
            cursor.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(table, group))
            cursor.execute(sql.SQL("GRANT {} ON {} TO {}").format(
                sql.SQL(", ").join(sql.SQL(p) for p in grant.privileges), table, group))
            if "INSERT" in grant.privileges:
                _grant_sequence(cursor, _table(grant.model), group)
            if grant.own_rows:
                _own_rows_policies(cursor, table, group, agent_host_condition(grant.own_rows))


def _grant_sequence(cursor: object, table: str, group: sql.Identifier) -> None:
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])  # type: ignore[attr-defined]
    row = cursor.fetchone()  # type: ignore[attr-defined]
    if row and row[0]:
        cursor.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(sql.SQL(row[0]), group))  # type: ignore[attr-defined]


def _own_rows_policies(cursor: object, table: sql.Identifier, group: sql.Identifier, own: sql.Composed) -> None:
    """Agents read every row and write only their own host's; the table's owner (the panel) is not
    subject to row-level security, so nothing changes for the central side."""
    run = cursor.execute  # type: ignore[attr-defined]
    run(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table))
    policies = {
        "ips_agents_read": sql.SQL("FOR SELECT TO {group} USING (true)"),
        "ips_agents_insert_own": sql.SQL("FOR INSERT TO {group} WITH CHECK ({own})"),
        "ips_agents_update_own": sql.SQL("FOR UPDATE TO {group} USING ({own}) WITH CHECK ({own})"),
        "ips_agents_delete_own": sql.SQL("FOR DELETE TO {group} USING ({own})"),
    }
    for name, body in policies.items():
        run(sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(name), table))
        run(sql.SQL("CREATE POLICY {} ON {} ").format(sql.Identifier(name), table)
            + body.format(group=group, own=own))


def create_role(host: str, password: str) -> str:
    """Create the agent's login role (or give an existing one a new password), a member of the
    agents' group; returns its name."""
    require_postgres()
    name = role_name(host)
    role = sql.Identifier(name)
    with connection.cursor() as cursor:
        verb = "ALTER" if _role_exists(cursor, name) else "CREATE"
        cursor.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                                      "CONNECTION LIMIT {} PASSWORD {}").format(
            role, sql.Literal(CONNECTION_LIMIT), sql.Literal(password)))
        for setting, value in ROLE_SETTINGS.items():
            cursor.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(role, sql.Identifier(setting),
                                                                        sql.Literal(value)))
        cursor.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group_role()), role))
    return name


def drop_role(name: str) -> int:
    """Revoke an agent's role: no more logins, its open connections ended, then the role dropped.
    Returns how many connections were ended."""
    require_postgres()
    role = sql.Identifier(name)
    with connection.cursor() as cursor:
        if not _role_exists(cursor, name):
            return 0
        cursor.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(role))
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s", [name])
        ended = int(cursor.fetchone()[0])
        cursor.execute(sql.SQL("DROP OWNED BY {}").format(role))
        cursor.execute(sql.SQL("DROP ROLE {}").format(role))
    return ended


def agent_roles_exist() -> bool:
    """Whether this database has an agents' group role (then migrations re-apply the grants)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        return _role_exists(cursor, group_role())
