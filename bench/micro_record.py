"""Micro-benchmark: the follower's live path on a flood, in one process, without the stack.

Writes bench/pipeline.py's flood scenario (every other line an sshd failure from one of 20,000
addresses; maxretry 5, findtime 3600, bantime 86400, the stock sshd filter, imported with
`importconf` as the pipeline bench does) to a log, then reads it with
watchers.services.read_source exactly as a follower would (the same read sizes, growing from 256 KB
while reads are quick, the backlog flag), on a fresh SQLite file or PostgreSQL database, and prints
lines/s and where the time went: matching (watchers.services.match_lines) and counting/writing
(bans.services.record_failures, the read's transaction) per failure, the CPU time of this process
and of its PostgreSQL server process (the wall time is about their sum where nothing overlaps; the
CPU figures vary less on a shared machine), and with --statements each kind of SQL statement's time.
The firewall worker is not asked (no Redis message per read). Failures and bans are checked against
the generator's counts (exit status 1 when they differ). For comparisons, fix the read size
(--read-bytes 1048576): how many reads a flood takes changes the database's work (each read updates
an address's rows once), and the follower's adaptive sizes depend on the machine's load.

    .venv/bin/python bench/micro_record.py --db postgres --lines 200000
    .venv/bin/python bench/micro_record.py --db sqlite --lines 200000 --runs 3

PostgreSQL: a database named by --pg-name (default ips_micro_record) is dropped and created on
127.0.0.1 (trust auth) for each run. Profile it with py-spy: `py-spy record -o out.txt -f raw --
.venv/bin/python bench/micro_record.py ...`.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402  # the flood's lines and the configuration directory, as the pipeline bench builds them


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--lines", type=int, default=200_000, help="flood lines (default 200,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=1, help="runs, each on a fresh database, each printed")
    parser.add_argument("--read-bytes", type=int, default=0,
                        help="every read takes at most this many bytes (default: as a follower adapts them, which "
                             "varies with the machine's load from run to run)")
    parser.add_argument("--statements", action="store_true",
                        help="also time each SQL statement kind (its first words and table), per failure")
    parser.add_argument("--pg-name", default="ips_micro_record", help="PostgreSQL database, dropped and created")
    return parser.parse_args(argv)


def fresh_database(args: argparse.Namespace) -> str:
    """The same URL every run (Django is set up once), the database made anew."""
    if args.db == "sqlite":
        path = Path(tempfile.gettempdir()) / "ips-micro-record.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    for command in (["dropdb", "--if-exists"], ["createdb"]):
        subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres", args.pg_name], check=True, timeout=60)
    return f"postgres:///{args.pg_name}"


def setup_django(url: str) -> None:
    os.environ.update({"DATABASE_URL": url, "IPS_SECRET_KEY": "bench-only-secret-key-not-for-production-use-0123456789",
                       "IPS_SSL_REDIRECT": "false", "IPS_HOST_NAME": "local", "IPS_FIREWALL": "off",
                       "IPS_LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "config.settings"})
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def timed(module: Any, name: str, spent: dict[str, float]) -> None:
    """Wrap module.name so that the time spent in it adds up in spent[name]."""
    original: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

    setattr(module, name, wrapper)


def statement_kind(sql: Any) -> str:
    """A statement's verb and table: 'INSERT INTO "bans_failure"', 'SELECT ... FROM "bans_tally"'."""
    text = sql if isinstance(sql, str) else str(sql)
    words = text.split()
    verb = words[0].upper() if words else "?"
    for marker in ("INTO", "FROM", "UPDATE"):
        if marker in words[:-1] and not (verb == "SELECT" and marker != "FROM"):
            return f"{verb} {marker} {words[words.index(marker) + 1]}"
    return verb


def time_statements(spent: dict[str, float]) -> None:
    """Time every statement sent through Django's cursors and psycopg's (bans.bulk), by kind."""
    from django.db.backends import utils

    def timing(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, sql: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(self, sql, *args, **kwargs)
            finally:
                key = "sql " + statement_kind(sql)
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - started
        return wrapper

    from django.db.backends.base.base import BaseDatabaseWrapper

    for cls, names in ((utils.CursorWrapper, ("execute", "executemany")),):
        for name in names:
            setattr(cls, name, timing(getattr(cls, name)))
    commit = getattr(BaseDatabaseWrapper, "_commit")  # noqa: B009  # private to Django: mypy's stubs lack it

    def timed_commit(self: Any) -> Any:
        started = time.perf_counter()
        try:
            return commit(self)
        finally:
            spent["sql COMMIT"] = spent.get("sql COMMIT", 0.0) + time.perf_counter() - started

    setattr(BaseDatabaseWrapper, "_commit", timed_commit)  # noqa: B010
    try:
        import psycopg
    except ImportError:
        return
    for name in ("execute", "executemany"):
        setattr(psycopg.Cursor, name, timing(getattr(psycopg.Cursor, name)))


def cpu_seconds(pid: int | None = 0) -> float:
    """User + system CPU seconds of this process (pid 0), or of another one on this machine (None: 0)."""
    if pid == 0:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connections

    from bans import dispatch
    from bans.models import Ban, Failure
    from jails.models import Jail
    from watchers import follow, services

    connections.close_all()
    with open(os.devnull, "w") as quiet:
        call_command("migrate", verbosity=0, stdout=quiet)
        logs, confdir = pipeline.fresh_logs(workdir, "auto")
        call_command("importconf", str(confdir), stdout=quiet)
    dispatch.request_sync = lambda host: None  # no firewall worker here
    scenario = pipeline.SCENARIOS["flood"]
    jail = Jail.objects.get(name=scenario.jail)
    source = services.sync_sources(jail)[0]
    services.read_source(source.pk, own_addresses=[])  # the empty log: the position the flood is appended to
    batch = pipeline.flood_batch(args.lines, args.seed)
    with open(logs / scenario.log, "ab") as out:
        out.write(pipeline.dated(batch.templates, pipeline.stamp_for(scenario)))
    spent: dict[str, float] = {}
    timed(services, "match_lines", spent)
    timed(services, "record_failures", spent)
    if args.statements:
        time_statements(spent)
    size, backlog, reads = args.read_bytes or follow.FIRST_READ_BYTES, False, 0
    backend = pipeline.backend_pid()
    cpu0, server0 = cpu_seconds(), cpu_seconds(backend)
    started = time.perf_counter()
    while True:
        began = time.perf_counter()
        report = services.read_source(source.pk, own_addresses=[], max_bytes=size, backlog=backlog)
        took, reads, backlog = time.perf_counter() - began, reads + 1, report.more
        if not args.read_bytes:
            size = follow.next_read_bytes(size, report.more, took)  # as the follower adapts it
        if not report.more:
            break
    seconds = time.perf_counter() - started
    cpu, server = cpu_seconds() - cpu0, cpu_seconds(backend) - server0
    failures, bans = Failure.objects.filter(jail=jail).count(), Ban.objects.filter(jail_name=jail.name).count()
    connections.close_all()
    return {"seconds": seconds, "cpu": cpu, "server_cpu": server, "reads": reads, "failures": failures,
            "bans": bans, "expected_failures": batch.failures, "expected_bans": batch.bans(), **spent}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pipeline.FAIL2BAN_ACTION = "noop"  # the configuration directory without Debian's action file
    mismatch = False
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="micro-record-") as tmp:
            setup_django(fresh_database(args))
            result = run(args, Path(tmp))
        per_failure = 1e6 / max(result["failures"], 1)
        print(f"{args.db}: {args.lines:,} lines in {result['seconds']:.2f} s = {args.lines / result['seconds']:,.0f} "
              f"lines/s ({result['reads']} reads); match_lines {result.get('match_lines', 0) * per_failure:.1f} µs, "
              f"record_failures {result.get('record_failures', 0) * per_failure:.1f} µs, total "
              f"{result['seconds'] * per_failure:.1f} µs per failure; CPU {result['cpu'] * per_failure:.1f} µs here + "
              f"{result['server_cpu'] * per_failure:.1f} µs in the server; failures {result['failures']:,} "
              f"(expected {result['expected_failures']:,}), bans {result['bans']:,} "
              f"(expected {result['expected_bans']:,})", flush=True)
        for key, value in sorted(result.items()):
            if key.startswith("sql "):
                print(f"  {key[4:]:60} {value * per_failure:6.1f} µs per failure")
        mismatch |= (result["failures"], result["bans"]) != (result["expected_failures"], result["expected_bans"])
    return 1 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
