"""config/env.py: typed environment readers fail loudly on bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import broker_poll_seconds, database_from_url, env_bool, env_int, env_list


def test_it_reads_booleans_in_the_usual_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    for word, expected in [("yes", True), ("ON", True), ("1", True), ("false", False), ("0", False)]:
        monkeypatch.setenv("IPS_X", word)
        assert env_bool("IPS_X", not expected) is expected


def test_it_refuses_a_boolean_it_cannot_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPS_X", "maybe")
    with pytest.raises(ImproperlyConfigured, match="IPS_X='maybe'"):
        env_bool("IPS_X", False)


def test_it_refuses_a_number_below_its_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPS_N", "-5")
    with pytest.raises(ImproperlyConfigured, match="at least 0"):
        env_int("IPS_N", 1, minimum=0)
    monkeypatch.setenv("IPS_N", "ten")
    with pytest.raises(ImproperlyConfigured, match="whole number"):
        env_int("IPS_N", 1)


def test_it_splits_lists_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPS_L", "a.example, b.example,,")
    assert env_list("IPS_L", []) == ["a.example", "b.example"]


def test_it_reads_a_relative_sqlite_url_with_wal() -> None:
    db = database_from_url("sqlite:///var/db.sqlite3", Path("/srv/ips"))
    assert db["NAME"] == "/srv/ips/var/db.sqlite3"
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]


def test_it_reads_an_absolute_sqlite_url() -> None:
    assert database_from_url("sqlite:////var/lib/ips.db", Path("/srv"))["NAME"] == "/var/lib/ips.db"


def test_it_reads_a_postgres_url() -> None:
    db = database_from_url("postgres://ips:s%40cret@db.internal:5433/ips?sslmode=require", Path("/"))
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"]) == ("django.db.backends.postgresql", "ips", "ips",
                                                                      "s@cret")
    assert (db["HOST"], db["PORT"], db["OPTIONS"]) == ("db.internal", "5433", {"sslmode": "require"})


def test_it_refuses_an_unknown_database_scheme() -> None:
    with pytest.raises(ImproperlyConfigured, match="unsupported scheme 'mysql'"):
        database_from_url("mysql://x@y/z", Path("/"))


def test_an_idle_worker_waits_long_over_tcp_and_briefly_over_a_unix_socket() -> None:
    # over a Unix socket CLIENT UNBLOCK cannot find the waiting connection (config/broker.py), so a
    # stopping worker would wait out the whole BRPOP: keep it short there
    assert broker_poll_seconds("redis://127.0.0.1:6379/0") == 10
    assert broker_poll_seconds("rediss://redis.example.org:6380/0") == 10
    assert broker_poll_seconds("redis+socket:///run/redis/redis.sock?virtual_host=3") == 1
    assert broker_poll_seconds("unix:///run/redis/redis.sock") == 1
