"""Writing a read's failures in bulk: plain SQL through Django's connection, a few statements a read.

A ban storm brings thousands of failures per read, and Django's bulk_create spends about 40 µs a
row preparing each field of each model instance: more than matching the line did. The rows
written here are simple (addresses, times, text, a small JSON object), so they go straight to the
database driver: on SQLite one INSERT run over all the rows (values adapted by the backend's own
`connection.ops`, times once per distinct second, JSON once per distinct object); on PostgreSQL
the rows as ONE JSON document per statement, encoded by json's C encoder and taken apart by the
server (psycopg adapts each value, and arrays element by element, in Python). Same tables, same
columns, same values as the ORM would write; the models stay the way to read them.

- `insert_failures`: the Failure rows;
- `read_tallies`, `upsert_tallies` / `delete_tallies`: the per-address tallies (INSERT ... ON
  CONFLICT DO UPDATE, which SQLite >= 3.24 and PostgreSQL both speak);
- `insert_bans`: new PENDING bans, with their ids;
- `add_to_stats`: the per-minute and per-hour counters the charts read (JailStat), added to in the
  same transaction as the rows they count, so the charts never recount raw failures;
- `add_to_tops`: failures per address and per user name per hour (AddressStat, UserStat), which
  the dashboard's top addresses, networks and user names read, added to the same way.

Callers are inside the read's transaction (bans.services.record_failures).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from django.db import connection

from bans import policy
from bans.models import AddressStat, Ban, Failure, JailStat, Tally, UserStat

log = logging.getLogger(__name__)

# Rows per statement at most: under SQLite's and PostgreSQL's bound-parameter limits (32,766 and
# 65,535) for any of the tables here, and large enough that the per-statement cost vanishes.
ROWS_PER_STATEMENT = 512
T = TypeVar("T")


def batches(items: Sequence[T], most: int = ROWS_PER_STATEMENT, *,
            few_lengths: bool | None = None) -> Iterator[Sequence[T]]:
    """`items` in batches of `most`; on SQLite (`few_lengths`), the rest in batches whose sizes are
    powers of two, largest first (700 -> 512, 128, 32, 16, 8, 4).

    Why, on SQLite: each distinct statement text (an IN list or a multi-row VALUES of its own
    length) is compiled and kept in the connection's statement cache (sqlite3 keeps 128 per
    connection, in native memory), and a flood brings every length from 1 to the limit; with
    power-of-two batches a statement comes in at most 10 lengths, for at most 9 more statements
    (in-process calls) per call. PostgreSQL keeps plain batches: there every statement is a round
    trip, and the statements that carry a read's rows are one JSON document each, whatever its size."""
    if most & (most - 1):
        raise ValueError("batches: `most` must be a power of two")
    if few_lengths is None:
        few_lengths = connection.vendor == "sqlite"
    start, total = 0, len(items)
    while start < total:
        size = min(most, 1 << ((total - start).bit_length() - 1)) if few_lengths else most
        yield items[start:start + size]
        start += size


class Adapter:
    """The backend's own adaptation of datetimes and JSON, remembered per distinct value."""

    def __init__(self) -> None:
        self.ops = connection.ops
        self._times: dict[float, Any] = {}
        self._isos: dict[float, str] = {}
        self._json: dict[tuple[Any, ...], Any] = {}

    def iso(self, epoch: float) -> str:
        """`_iso`, once per distinct time: a flood's failures and tallies share a few seconds."""
        text = self._isos.get(epoch)
        if text is None:
            text = self._isos[epoch] = _iso(epoch)
        return text

    def time(self, epoch: float) -> Any:
        adapted = self._times.get(epoch)
        if adapted is None:
            adapted = self._times[epoch] = self.ops.adapt_datetimefield_value(
                dt.datetime.fromtimestamp(epoch, tz=dt.UTC))
        return adapted

    def json(self, value: Any) -> Any:
        """Failures' fields repeat ({"user": "root"}): those are adapted once; others each time."""
        try:
            key = tuple(value.items()) if isinstance(value, dict) else None
            adapted = self._json.get(key) if key is not None else None
        except TypeError:  # a list among the values: not hashable
            key = adapted = None
        if adapted is None:
            adapted = self.ops.adapt_json_value(value, None)
            if key is not None:
                self._json[key] = adapted
        return adapted


# The SQL below is built in code (S608): its identifiers are the models' own table and column names,
# quoted by connection.ops.quote_name, their column types, constants and counts; every value is a
# placeholder (%s) bound by the driver: no row's text is ever spliced into a statement.
def _quoted(model: Any, *columns: str) -> tuple[str, str]:
    qn = connection.ops.quote_name
    return qn(model._meta.db_table), ", ".join(qn(c) for c in columns)


def _insert(table: str, columns: str, width: int, rows: Sequence[Sequence[Any]], suffix: str = "") -> None:
    """One statement, run for every row by the driver (sqlite3 loops in C; psycopg pipelines the
    rows)."""
    if not rows:
        return
    one = "(" + ", ".join(["%s"] * width) + ")"
    sql = f"INSERT INTO {table} ({columns}) VALUES {one}{suffix}"  # noqa: S608  # quoted names, bound values
    if connection.vendor == "postgresql":
        with _pg_cursor() as raw:
            raw.executemany(sql, rows)
        return
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def insert_failures(jail_id: int, failures: Iterable[tuple[str, float, str, Mapping[str, Any]]],
                    created: float, adapter: Adapter | None = None) -> int:
    """Failure rows: (address, time, line, fields) each. Returns how many."""
    table, columns = _quoted(Failure, "jail_id", "address", "time", "line", "fields", "created_at")
    if connection.vendor == "postgresql":
        # as upsert_tallies: one JSON document, encoded in C, taken apart by the server
        iso = (adapter or Adapter()).iso
        cells: list[list[Any]] = [[address, iso(when), line, fields] for address, when, line, fields in failures]
        if cells:
            with _pg_cursor() as raw:
                raw.execute(f"INSERT INTO {table} ({columns}) "  # noqa: S608  # quoted names, bound values
                            f"SELECT %s, (r->>0)::inet, (r->>1)::timestamptz, "
                            f"r->>2, r->3, %s FROM jsonb_array_elements(%s::jsonb) AS rows(r)",
                            [jail_id, dt.datetime.fromtimestamp(created, tz=dt.UTC), json.dumps(cells)])
        return len(cells)
    adapter = adapter or Adapter()
    created_at = adapter.time(created)
    rows = [(jail_id, address, adapter.time(when), line, adapter.json(dict(fields)), created_at)
            for address, when, line, fields in failures]
    _insert(table, columns, 6, rows)
    return len(rows)


def upsert_tallies(jail_id: int, host: str, tallies: Iterable[tuple[str, float, float, int, list[str]]],
                   adapter: Adapter | None = None) -> None:
    """Insert or replace `host`'s tallies: (address, first_time, last_time, count, matches) each."""
    qn = connection.ops.quote_name
    table, columns = _quoted(Tally, "jail_id", "host", "address", "first_time", "last_time", "count", "matches")
    updates = ", ".join(f"{qn(c)} = excluded.{qn(c)}" for c in ("first_time", "last_time", "count", "matches"))
    conflict = f" ON CONFLICT ({qn('jail_id')}, {qn('host')}, {qn('address')}) DO UPDATE SET {updates}"
    if connection.vendor == "postgresql":
        # One statement, every row in one JSON document (made by json's C encoder, parsed by the
        # server): psycopg adapts array parameters element by element in Python, 40 µs a tally.
        iso = (adapter or Adapter()).iso
        document = json.dumps([[address, iso(first), iso(last), count, matches]
                               for address, first, last, count, matches in tallies])
        if document != "[]":
            with _pg_cursor() as raw:
                raw.execute(f"INSERT INTO {table} ({columns}) "  # noqa: S608  # quoted names, bound values
                            f"SELECT %s, %s, (r->>0)::inet, (r->>1)::timestamptz, "
                            f"(r->>2)::timestamptz, (r->>3)::integer, r->4 FROM jsonb_array_elements(%s::jsonb) "
                            f"AS rows(r){conflict}", [jail_id, host, document])
        return
    adapter = adapter or Adapter()
    rows = [(jail_id, host, address, adapter.time(first), adapter.time(last), count, adapter.json(matches))
            for address, first, last, count, matches in tallies]
    _insert(table, columns, 7, rows, conflict)


def _iso(epoch: float) -> str:
    """A time as the ORM would store it (to the microsecond, UTC), in ISO 8601."""
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat()


def insert_bans(bans: Sequence[Ban], adapter: Adapter | None = None) -> None:
    """New Ban rows (built, not saved), their ids set on them as bulk_create does. A ban storm makes
    thousands a read, where the ORM spent 100 µs preparing each."""
    if not bans:
        return
    if not connection.features.can_return_rows_from_bulk_insert:  # SQLite before 3.35: no RETURNING
        Ban.objects.bulk_create(bans)
        return
    fields = [f for f in Ban._meta.concrete_fields if not f.primary_key]
    table, columns = _quoted(Ban, *(str(f.column) for f in fields))
    pk = connection.ops.quote_name(str(Ban._meta.pk.column))
    if connection.vendor == "postgresql":
        _insert_bans_pg(bans, fields, table, columns, pk)
        return
    adapter = adapter or Adapter()
    adapt = [_adapter_of(field, adapter) for field in fields]
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    for batch in batches(bans):
        params = [convert(getattr(ban, field.attname)) for ban in batch for field, convert in zip(fields, adapt,
                                                                                                     strict=True)]
        sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * len(batch))} RETURNING {pk}"  # noqa: S608
        with _cursor() as cursor:
            cursor.execute(sql, params)
            ids = [row[0] for row in cursor.fetchall()]
        for ban, pk_value in zip(batch, ids, strict=True):
            ban.pk = pk_value
            ban._state.adding = False
            ban._state.db = connection.alias


def _insert_bans_pg(bans: Sequence[Ban], fields: list[Any], table: str, columns: str, pk: str) -> None:
    """insert_bans on PostgreSQL: the rows as one JSON document (see upsert_tallies), the ids given
    back by network (a read makes at most one ban per network, create_jail_bans)."""
    def cell(field: Any, value: Any) -> Any:
        return _iso(value.timestamp()) if isinstance(value, dt.datetime) else value

    picks = ", ".join(f"r->{i}" if field.get_internal_type() == "JSONField" else
                      f"(r->>{i})::{field.db_type(connection)}" for i, field in enumerate(fields))
    network = connection.ops.quote_name("network")
    document = json.dumps([[cell(field, getattr(ban, field.attname)) for field in fields] for ban in bans])
    with _pg_cursor() as raw:
        raw.execute(f"INSERT INTO {table} ({columns}) "  # noqa: S608  # quoted names, the fields' types, bound values
                    f"SELECT {picks} FROM jsonb_array_elements(%s::jsonb) AS rows(r) "
                    f"RETURNING {pk}, {network}", [document])
        ids = dict((network_text, pk_value) for pk_value, network_text in raw.fetchall())
    for ban in bans:
        ban.pk = ids[ban.network]
        ban._state.adding = False
        ban._state.db = connection.alias


def _adapter_of(field: Any, adapter: Adapter) -> Any:
    internal = field.get_internal_type()
    if internal == "DateTimeField":
        return lambda value: None if value is None else adapter.time(value.timestamp())
    if internal == "JSONField":
        return adapter.json
    return lambda value: value


def _cursor() -> Any:
    """A server-binding psycopg cursor on PostgreSQL (_pg_cursor), Django's on SQLite."""
    return _pg_cursor() if connection.vendor == "postgresql" else connection.cursor()


@contextmanager
def pipelined() -> Iterator[None]:
    """On PostgreSQL, statements sent in the block go out without waiting for their results (psycopg's
    pipeline mode): the server executes a read's writes while this process goes on preparing the
    next ones, on another core. A statement whose result is read (a SELECT's rows) waits for those
    before it; an error is raised at the latest when the block ends, and the transaction it is in
    is then rolled back as usual. Elsewhere (SQLite: in this process) the statements run as they come."""
    if connection.vendor != "postgresql" or not _pipeline_supported():
        yield
        return
    connection.ensure_connection()
    # errors as Django's (DatabaseError...), as the statements' own would be; one raised here may come
    # from any statement sent earlier in the block, not the one its traceback shows
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


@cache
def _pipeline_supported() -> bool:
    """psycopg's pipeline mode needs libpq 14 or later; with an older one the statements run as they come."""
    import psycopg  # noqa: PLC0415  # only on PostgreSQL: psycopg needs libpq to import

    supported = bool(psycopg.Pipeline.is_supported())
    if not supported:
        log.warning("PostgreSQL writes are not pipelined: this libpq (%s) has no pipeline mode (libpq 14 or later)",
                    psycopg.pq.version())
    return supported


def _pg_cursor() -> Any:
    """A psycopg cursor that binds on the server, on Django's connection (so in its transaction).

    Django's cursors bind on the client: psycopg then quotes every value into the SQL text in
    Python (arrays element by element: 40 µs a tally here). Sent as parameters, the values are
    adapted in C and the server parses the statement once."""
    import psycopg  # noqa: PLC0415  # PostgreSQL only: a SQLite install never loads psycopg (nor needs libpq)

    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def read_tallies(jail_id: int, host: str, addresses: Sequence[str]) -> dict[str, tuple[float, float, int, list[str]]]:
    """The stored tallies of these addresses on `host`: address -> (first_time, last_time, count,
    matches), locked (SELECT ... FOR UPDATE) on PostgreSQL; SQLite's writer lock is the transaction's."""
    table, columns = _quoted(Tally, "address", "first_time", "last_time", "count", "matches")
    qn = connection.ops.quote_name
    if connection.vendor == "postgresql":
        return _read_tallies_pg(jail_id, host, addresses, table)
    found: dict[str, tuple[float, float, int, list[str]]] = {}
    with connection.cursor() as cursor:
        for batch in batches(addresses):
            cursor.execute(f"SELECT {columns} FROM {table} "  # noqa: S608  # quoted names, bound values
                           f"WHERE {qn('jail_id')} = %s AND {qn('host')} = %s AND {qn('address')} IN "
                           f"({', '.join(['%s'] * len(batch))})", [jail_id, host, *batch])
            for address, first, last, count, matches in cursor.fetchall():
                found[str(address)] = (_epoch(first), _epoch(last), int(count),
                                       json.loads(matches) if isinstance(matches, str) else list(matches))
    return found


TALLY_LOCK_SPACE = 0x1F2B  # the top bits of the per-jail, per-host advisory lock's key (tally_lock_key)


def tally_lock_key(jail_id: int, host: str) -> int:
    """One advisory lock per jail and host (each host of a fleet counts its own tallies): the space in
    the top 16 bits, the jail's id and a digest of the host's name in 24 bits each. Two pairs that
    share a key only take turns, as one jail's reads always did."""
    return (TALLY_LOCK_SPACE << 48) | ((jail_id & 0xFFFFFF) << 24) | (zlib.crc32(host.encode()) & 0xFFFFFF)


def _read_tallies_pg(jail_id: int, host: str, addresses: Sequence[str], table: str
                     ) -> dict[str, tuple[float, float, int, list[str]]]:
    """read_tallies on PostgreSQL: the addresses in as one JSON document, the tallies out as one
    (locked FOR UPDATE in the inner query). psycopg would otherwise build an IN list of 512
    parameters and load five values per row in Python: 17% of a flood's follower time."""
    qn = connection.ops.quote_name
    found: dict[str, tuple[float, float, int, list[str]]] = {}
    with _pg_cursor() as raw:
        # FOR UPDATE locks the tallies that exist; an address new to both of two readers of one jail's
        # sources (two pool processes reading a jail no follower holds) would be inserted by both, the
        # second's count replacing the first's: a ban missed without a sign. One jail's failures on one
        # host are therefore counted one transaction at a time (SQLite has a single writer anyway).
        raw.execute("SELECT pg_advisory_xact_lock(%s)", [tally_lock_key(jail_id, host)])
        for batch in batches(addresses, 4096):
            raw.execute(f"SELECT coalesce(json_agg(json_build_array(a, f, l, c, m)), '[]')::text FROM ("  # noqa: S608
                        f"SELECT host({qn('address')}) AS a, {qn('first_time')}::text AS f, "
                        f"{qn('last_time')}::text AS l, {qn('count')} AS c, {qn('matches')} AS m FROM {table} "
                        f"WHERE {qn('jail_id')} = %s AND {qn('host')} = %s AND {qn('address')} IN "
                        f"(SELECT (jsonb_array_elements_text(%s::jsonb))::inet) FOR UPDATE) AS held",
                        [jail_id, host, json.dumps(list(batch))])
            row = raw.fetchone()
            for address, first, last, count, matches in json.loads(row[0] if row else "[]"):
                found[address] = (_epoch(first), _epoch(last), int(count), list(matches))
    return found


def _epoch(value: Any) -> float:
    """A stored time as epoch seconds: SQLite gives Django's text (UTC, naive), PostgreSQL a datetime."""
    if isinstance(value, str):  # SQLite: naive UTC; PostgreSQL as text: with its offset
        parsed = dt.datetime.fromisoformat(value)
        value = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return float(value.timestamp())


def delete_tallies(jail_id: int, host: str, addresses: Sequence[str]) -> None:
    """Delete these addresses' tallies (those that ended: banned, or forgotten). Plain SQL: the ORM's
    delete() collects and compiles per batch, and PostgreSQL gets every address in one statement."""
    if not addresses:
        return
    qn = connection.ops.quote_name
    table = qn(Tally._meta.db_table)
    where = (f"DELETE FROM {table} WHERE {qn('jail_id')} = %s AND {qn('host')} = %s "  # noqa: S608  # quoted names
             f"AND {qn('address')} IN ")
    if connection.vendor == "postgresql":
        with _pg_cursor() as raw:
            raw.execute(f"{where}(SELECT (jsonb_array_elements_text(%s::jsonb))::inet)",
                        [jail_id, host, json.dumps(list(addresses))])
        return
    with connection.cursor() as cursor:
        for batch in batches(addresses):
            cursor.execute(f"{where}({', '.join(['%s'] * len(batch))})", [jail_id, host, *batch])


def expire_ran_out(jail_name: str, networks: Sequence[str], host: str, moment: dt.datetime,
                   live_states: Sequence[str], expired: str) -> None:
    """Mark `expired` (ended at their expiry) the bans of these networks in a jail on a host that are in
    one of `live_states` and whose time ran out by `moment`: Ban.objects.live()...update() as one
    statement (PostgreSQL) or one per batch of networks (SQLite), without the ORM's compiling."""
    if not networks:
        return
    qn = connection.ops.quote_name
    table = qn(Ban._meta.db_table)
    states = ", ".join(["%s"] * len(live_states))
    sql = (f"UPDATE {table} SET {qn('state')} = %s, {qn('ended_at')} = {qn('expires_at')} "  # noqa: S608  # quoted names
           f"WHERE {qn('state')} IN ({states}) AND {qn('jail_name')} = %s AND {qn('host')} = %s "
           f"AND {qn('expires_at')} <= %s AND {qn('network')} IN ")
    head = [str(expired), *(str(state) for state in live_states), jail_name, host]  # values, not enum members
    if connection.vendor == "postgresql":
        with _pg_cursor() as raw:
            raw.execute(f"{sql}(SELECT jsonb_array_elements_text(%s::jsonb))",
                        [*head, moment, json.dumps(list(networks))])
        return
    when = connection.ops.adapt_datetimefield_value(moment)
    with connection.cursor() as cursor:
        for batch in batches(networks):
            cursor.execute(f"{sql}({', '.join(['%s'] * len(batch))})", [*head, when, *batch])


def bans_of_networks(networks: Sequence[str], since: dt.datetime) -> list[tuple[str, str, str, str, bool]]:
    """Every ban of these networks, whatever its jail, host and state: (network, jail_name, host,
    state, whether it counts as an earlier ban: an original, not a fleet copy, started at or after
    `since`) each. Looked up by network alone (the index on network, started_at): with the state in
    the query, SQLite's planner walked the state index."""
    if not networks:
        return []
    qn = connection.ops.quote_name
    table = qn(Ban._meta.db_table)
    sql = (f"SELECT {qn('network')}, {qn('jail_name')}, {qn('host')}, {qn('state')}, "  # noqa: S608  # quoted names
           f"({qn('started_at')} >= %s AND {qn('primary_id')} IS NULL) FROM {table} WHERE {qn('network')} IN ")
    found: list[tuple[str, str, str, str, bool]] = []
    if connection.vendor == "postgresql":
        with _pg_cursor() as raw:
            raw.execute(f"{sql}(SELECT jsonb_array_elements_text(%s::jsonb))", [since, json.dumps(list(networks))])
            found.extend((network, jail, host, state, bool(recent)) for network, jail, host, state, recent in raw)
        return found
    when = connection.ops.adapt_datetimefield_value(since)
    with connection.cursor() as cursor:
        for batch in batches(networks):
            cursor.execute(f"{sql}({', '.join(['%s'] * len(batch))})", [when, *batch])
            found.extend((network, jail, host, state, bool(recent))
                         for network, jail, host, state, recent in cursor.fetchall())
    return found


def minute_of(epoch: float) -> float:
    return epoch - epoch % 60


def hour_of(epoch: float) -> float:
    return epoch - epoch % 3600


def add_to_stats(jail_name: str, failure_times: Iterable[float] = (), ban_times: Iterable[float] = (),
                 adapter: Adapter | None = None) -> None:
    """Add failures and bans to their minute and hour buckets (JailStat), creating the buckets.

    Both resolutions are written at once: the hour buckets outlive the minute ones (kept 2 days),
    so they cannot be summed from them later."""
    counts: Counter[tuple[str, float, int]] = Counter()
    for kind, times in enumerate((failure_times, ban_times)):
        for when, n in Counter(times).items():  # a flood's failures share a few seconds: bucketed once each
            counts["minute", minute_of(when), kind] += n
            counts["hour", hour_of(when), kind] += n
    if not counts:
        return
    buckets: dict[tuple[str, float], list[int]] = {}
    for (resolution, bucket, kind), n in counts.items():
        buckets.setdefault((resolution, bucket), [0, 0])[kind] += n
    adapter = adapter or Adapter()
    table, columns = _quoted(JailStat, "jail_name", "resolution", "bucket", "failures", "bans")
    qn = connection.ops.quote_name
    rows = [(jail_name, resolution, adapter.time(bucket), failures, bans)
            for (resolution, bucket), (failures, bans) in sorted(buckets.items())]
    add = ", ".join(f"{qn(c)} = {table}.{qn(c)} + excluded.{qn(c)}" for c in ("failures", "bans"))
    keys = ", ".join(qn(c) for c in ("jail_name", "resolution", "bucket"))
    _insert(table, columns, 5, rows, f" ON CONFLICT ({keys}) DO UPDATE SET {add}")


def add_to_tops(jail_name: str, failures: Iterable[tuple[float, str, Any]], adapter: Adapter | None = None) -> None:
    """Add failures, (time, address, captured user name or None) each, to their hour's AddressStat
    and UserStat rows, creating them: one upsert each, one row per distinct address (or name) and hour."""
    per_address: Counter[tuple[float, str]] = Counter()
    per_user: Counter[tuple[float, str]] = Counter()
    hours: dict[float, float] = {}  # a flood's failures share a few seconds: each one's hour found once
    for when, address, user in failures:
        hour = hours.get(when)
        if hour is None:
            hour = hours[when] = hour_of(when)
        per_address[hour, address] += 1
        if user is not None:
            name = policy.stat_user_name(user, UserStat.USER_LENGTH)
            if name:
                per_user[hour, name] += 1
    if not per_address:
        return
    networks = {address: policy.attacker_network(address) for _, address in per_address}
    address_rows = [(hour, address, networks[address], n) for (hour, address), n in sorted(per_address.items())]
    _add_counts(AddressStat, ("hour", "address", "network", "failures"), ("hour", "address", "jail_name"),
                jail_name, address_rows, adapter, casts=("timestamptz", "inet", "text", "integer"))
    _add_counts(UserStat, ("hour", "user", "failures"), ("hour", "user", "jail_name"), jail_name,
                [(hour, user, n) for (hour, user), n in sorted(per_user.items())], adapter,
                casts=("timestamptz", "text", "integer"))


def _add_counts(model: Any, columns: Sequence[str], key: Sequence[str], jail_name: str,
                rows: Sequence[tuple[Any, ...]], adapter: Adapter | None, casts: Sequence[str]) -> None:
    """INSERT rows (jail_name, *columns; the first column an epoch hour, the last a count) ON CONFLICT
    (key) adding the count to the stored one."""
    if not rows:
        return
    qn = connection.ops.quote_name
    table, names = _quoted(model, "jail_name", *columns)
    count = qn(columns[-1])
    conflict = (f" ON CONFLICT ({', '.join(qn(c) for c in key)}) "
                f"DO UPDATE SET {count} = {table}.{count} + excluded.{count}")
    if connection.vendor == "postgresql":
        # as upsert_tallies: one JSON document, encoded in C, taken apart by the server
        iso = (adapter or Adapter()).iso
        document = json.dumps([[iso(row[0]), *row[1:]] for row in rows])
        picks = ", ".join(f"(r->>{i})::{cast}" for i, cast in enumerate(casts))
        with _pg_cursor() as raw:
            raw.execute(f"INSERT INTO {table} ({names}) "  # noqa: S608  # quoted names, bound values
                        f"SELECT %s, {picks} FROM jsonb_array_elements(%s::jsonb) AS rows(r){conflict}",
                        [jail_name, document])
        return
    adapter = adapter or Adapter()
    _insert(table, names, len(columns) + 1, [(jail_name, adapter.time(row[0]), *row[1:]) for row in rows], conflict)
