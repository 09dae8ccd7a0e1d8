"""watchers.services.read_source: lines read once, failures counted, position kept with them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from pytest_django import Settings

from bans.models import Ban, Failure
from jails.builtin import FILTER_DIR
from jails.models import Filter, Jail
from tests.factories import make_jail
from watchers import services
from watchers.models import LogSource
from watchers.services import Matched, read_source, sync_sources
from watchers.tail import ReadResult, read_new_lines

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 22, 12, 0, 0, tzinfo=dt.UTC)


def syslog(seconds_ago: int, text: str) -> str:
    when = NOW - dt.timedelta(seconds=seconds_ago)
    return f"{when:%b %d %H:%M:%S} web sshd[{100 + seconds_ago}]: {text}\n"


@pytest.fixture
def jail(tmp_path: Path, no_broker: None) -> Jail:
    for name in ("ips-common", "sshd"):
        Filter.objects.create(name=name, source=(FILTER_DIR / f"{name}.conf").read_text())
    return make_jail("sshd", flt=Filter.objects.get(name="sshd"), logpath=[str(tmp_path / "auth.log")])


def read(source: LogSource) -> None:
    read_source(source.pk, now=NOW.timestamp(), own_addresses=[])


def test_it_bans_after_maxretry_failures_and_reads_each_line_once(jail: Jail, tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("".join(syslog(30 - i, f"Failed password for root from 203.0.113.9 port 4{i} ssh2")
                           for i in range(2)))
    [source] = sync_sources(jail)
    read(source)
    read(source)  # nothing new: nothing counted twice
    assert Failure.objects.count() == 2 and not Ban.objects.exists()
    with log.open("a") as fh:
        fh.write(syslog(5, "Failed password for root from 203.0.113.9 port 47 ssh2"))
        fh.write(syslog(4, "Failed password for adm").rstrip("\n"))  # a partial line: waits for its newline
    read(source)
    assert Ban.objects.get().network == "203.0.113.9/32"
    source.refresh_from_db()
    assert source.lines_read == 3 and source.health == LogSource.Health.OK


def test_it_blames_the_sender_not_an_address_in_the_user_name(jail: Jail, tmp_path: Path) -> None:
    (tmp_path / "auth.log").write_text("".join(
        syslog(20 - i, "Invalid user root from 198.51.100.1 from 203.0.113.9 port 22") for i in range(3)))
    read(sync_sources(jail)[0])
    assert list(Ban.objects.values_list("network", flat=True)) in ([], ["203.0.113.9/32"])
    assert not Failure.objects.filter(address="198.51.100.1").exists()


def test_it_skips_lines_older_than_findtime_at_first_start(jail: Jail, tmp_path: Path) -> None:
    (tmp_path / "auth.log").write_text("".join(
        syslog(7200 + i, "Failed password for root from 203.0.113.9 port 22 ssh2") for i in range(5)))
    read(sync_sources(jail)[0])
    assert not Failure.objects.exists()


def test_it_marks_a_missing_log_as_waiting_and_goes_on(jail: Jail) -> None:
    [source] = sync_sources(jail)
    read(source)
    source.refresh_from_db()
    assert source.health == LogSource.Health.WAITING and "auth.log" in source.health_reason


def test_it_gives_bans_to_this_firewall_host(jail: Jail, tmp_path: Path, settings: Settings) -> None:
    settings.IPS_HOST_NAME = "web1"
    (tmp_path / "auth.log").write_text("".join(
        syslog(20 - i, f"Failed password for root from 203.0.113.9 port 4{i} ssh2") for i in range(3)))
    read(sync_sources(jail)[0])
    assert Ban.objects.get().host == "web1"


def test_it_drops_its_read_when_another_reader_moved_the_position_meanwhile(
        jail: Jail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "auth.log"
    log.write_text("".join(syslog(20 - i, f"Failed password for root from 203.0.113.9 port 4{i} ssh2")
                           for i in range(2)))
    [source] = sync_sources(jail)
    read(source)
    with log.open("a") as fh:
        fh.write(syslog(5, "Failed password for root from 203.0.113.9 port 47 ssh2"))
    matching = services.match_lines

    def another_reader_first(source: LogSource, result: ReadResult, now: float) -> Matched:
        found = matching(source, result, now)
        monkeypatch.setattr(services, "match_lines", matching)
        read_source(source.pk, now=NOW.timestamp(), own_addresses=[])  # between our match and our save
        return found

    monkeypatch.setattr(services, "match_lines", another_reader_first)
    report = read_source(source.pk, now=NOW.timestamp(), own_addresses=[])
    assert report.events == ["busy: another worker is reading this source"]
    assert Failure.objects.count() == 3 and Ban.objects.count() == 1  # the third line counted once


def test_it_matches_before_it_opens_the_transaction(
        jail: Jail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "auth.log").write_text(syslog(5, "Failed password for root from 203.0.113.9 port 47 ssh2"))
    [source] = sync_sources(jail)
    matching = services.match_lines
    depths: list[int] = []

    def noting_the_depth(source: LogSource, result: ReadResult, now: float) -> Matched:
        depths.append(len(connection.savepoint_ids))
        return matching(source, result, now)

    monkeypatch.setattr(services, "match_lines", noting_the_depth)
    read(source)
    # pytest-django's test transaction is open around everything; read_source adds no savepoint of its own
    assert depths == [0] and Failure.objects.count() == 1


def test_jails_on_one_file_read_it_once(jail: Jail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = Jail.objects.create(name="sshd-aggressive", enabled=True, filter=jail.filter, maxretry=1, findtime=600,
                                bantime=3600, logpath=jail.logpath)
    (tmp_path / "auth.log").write_text(syslog(5, "Failed password for root from 203.0.113.9 port 47 ssh2"))
    reads: list[str] = []
    reading = read_new_lines  # what services calls

    def counted(*args: Any, **kwargs: Any) -> ReadResult:
        reads.append(args[0])
        return reading(*args, **kwargs)

    monkeypatch.setattr(services, "read_new_lines", counted)
    sources = [sync_sources(each)[0] for each in (jail, other)]  # as a follower knows them
    for source in sources:
        read(source)
    assert len(reads) == 1
    assert Failure.objects.filter(jail=jail).count() == Failure.objects.filter(jail=other).count() == 1
    assert Ban.objects.get().jail == other  # maxretry 1
    with (tmp_path / "auth.log").open("a") as fh:
        fh.write(syslog(1, "Failed password for root from 203.0.113.10 port 48 ssh2"))
    for source in sources:
        read(source)
    assert len(reads) == 2 and Failure.objects.count() == 4
    assert "auth.log" not in "".join(services._last_reads)  # both took the read: it is not kept


def test_a_file_with_one_source_keeps_no_read_for_others(jail: Jail, tmp_path: Path) -> None:
    # a flood's read holds megabytes of lines: kept, they would sit beside the next read for nothing
    (tmp_path / "auth.log").write_text(syslog(5, "Failed password for root from 203.0.113.9 port 47 ssh2"))
    read(sync_sources(jail)[0])
    assert Failure.objects.count() == 1
    assert str(tmp_path / "auth.log") not in services._last_reads
