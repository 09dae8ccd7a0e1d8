"""What attackers write cannot stop or steer banning: through the real follower (watchers.follow),
real files, the real engine and its watchdog, the database. Each case is one an adversarial
review saw: a regex that backtracks for ever, text planted at the cut of an overlong line, and
lines dropped without a trace."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from pytest_django import Settings

from bans.models import Ban, Failure
from jails.models import Filter, Jail
from tests.clients import client_for
from tests.factories import make_jail
from tests.watchers.test_follow import ATTACKER, append, banned, benign, failure, follower, step_until
from watchers.models import LogSource

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]

# What a reviewer saved (the panel now refuses it without the override: stored directly here).
SLOW_FILTER = "[Definition]\nfailregex = ^(a+)+$ <HOST>\n"


def source_of(jail: Jail) -> LogSource:
    return LogSource.objects.get(jail=jail)


def test_a_runaway_regex_on_one_jail_does_not_hold_up_another(
        sshd: Filter, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    slow_log, auth_log = tmp_path / "app.log", tmp_path / "auth.log"
    slow_log.write_text("start\n")
    auth_log.write_text(benign())
    slow = make_jail("slow", flt=Filter.objects.create(name="slow", source=SLOW_FILTER),
                     logpath=[str(slow_log)], maxretry=1)
    sshd_jail = make_jail("sshd", flt=sshd, logpath=[str(auth_log)], maxretry=1)
    flw, _ = follower()
    flw.start()
    caplog.set_level(logging.WARNING, logger="watchers.skips")

    append(slow_log, ("a" * 5000 + "\n") * 3)  # each line would keep the regex busy for ever
    append(auth_log, failure())
    took = step_until(flw, banned, timeout=10)
    step_until(flw, lambda: (source_of(slow).skipped or {}).get("timeout") == 3, timeout=10)
    flw.close()

    assert took < 1.0  # the bound; a slow line costs its jail IPS_LIVE_REGEX_BUDGET_MS, once
    source = source_of(slow)
    assert source.filter_slow() and "ran longer than" in source.slow_reason
    assert not Failure.objects.filter(jail=slow).exists()
    assert Ban.objects.filter(jail=sshd_jail).count() == 1
    assert any("ran out of time" in record.getMessage() for record in caplog.records)
    page = client_for("viewer").get(reverse("jail_detail", args=[slow.name])).content.decode()
    assert "Filter degraded" in page and "3 lines on which a regex ran out of time" in page
    status = call_json("status", "slow")
    assert status["skipped"] == {"timeout": 3} and status["filter_degraded"]


def call_json(*args: str) -> dict[str, object]:
    import io
    import json

    out = io.StringIO()
    call_command("jailctl", *args, "--json", stdout=out)
    answer: dict[str, object] = json.loads(out.getvalue())
    return answer


def test_text_planted_at_the_cut_of_an_overlong_line_is_never_read_as_a_line(
        sshd: Filter, tmp_path: Path, settings: Settings) -> None:
    """A line longer than a read used to be cut and its rest read as a line of its own: an attacker
    placed a whole sshd failure line there and got an innocent address banned."""
    settings.IPS_MAX_LINE_BYTES = 64 << 10
    auth_log = tmp_path / "auth.log"
    auth_log.write_text(benign())
    jail = make_jail("sshd", flt=sshd, logpath=[str(auth_log)], maxretry=1)
    flw, _ = follower()
    flw.start()
    innocent = "198.51.100.77"
    planted = failure(innocent).rstrip("\n")
    # the planted text sits exactly where a 256 KiB read would have cut the line
    append(auth_log, benign().rstrip("\n") + " " + "x" * ((256 << 10) - 200) + planted + "y" * 1000 + "\n")
    append(auth_log, failure())  # an honest failure after it still counts
    step_until(flw, banned, timeout=10)
    flw.close()
    assert not banned(innocent) and not Failure.objects.filter(address=innocent).exists()
    source = source_of(jail)
    assert source.skipped == {"long": 1} and not source.skipping_line


def test_nothing_is_dropped_without_being_counted_by_reason(sshd: Filter, tmp_path: Path) -> None:
    auth_log = tmp_path / "auth.log"
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat(timespec="seconds")
    auth_log.write_text(f"{old} srv sshd[1]: Failed password for root from {ATTACKER} port 22 ssh2\n")
    jail = make_jail("sshd", flt=sshd, logpath=[str(auth_log)], maxretry=5)
    flw, _ = follower()
    flw.start()  # the first read catches up: a failure older than findtime does not count
    assert source_of(jail).skipped == {"stale": 1}

    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).isoformat(timespec="seconds")
    with auth_log.open("ab") as out:
        out.write(b"2026-12-06T10:00:00 srv sshd[2]: Accepted password for r\xffot from 192.0.2.9 port 1 ssh2\n")
        out.write(failure("010.0.0.1").encode())  # not an address we could ban (leading zero)
        out.write(f"{future} srv sshd[3]: Failed password for root from {ATTACKER} port 22 ssh2\n".encode())
    step_until(flw, lambda: source_of(jail).lines_read == 4, timeout=5)
    flw.close()
    assert source_of(jail).skipped == {"stale": 1, "encoding": 1, "unparsable": 1, "clock": 1}
    # the failure dated three hours ahead counted, as happening now (fail2ban's rule in operation)
    assert Failure.objects.get().time > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


def test_a_slow_line_is_skipped_exactly_and_the_rest_read_after(sshd: Filter, tmp_path: Path) -> None:
    """A read stops right after a line that ran out of time: the lines after it are read by the
    next read, none twice, none lost."""
    slow_log = tmp_path / "app.log"
    slow_log.write_text("")
    slow = make_jail("slow", flt=Filter.objects.create(name="slow", source=SLOW_FILTER),
                     logpath=[str(slow_log)], maxretry=3)
    flw, _ = follower()
    flw.start()
    append(slow_log, "aaaa 203.0.113.5\n" + "a" * 3000 + "\n" + "".join(f"aaa 203.0.113.{n}\n" for n in range(6, 9)))
    step_until(flw, lambda: source_of(slow).lines_read == 5, timeout=10)
    flw.close()
    assert source_of(slow).skipped == {"timeout": 1}


def test_usedns_yes_counts_a_name_for_its_addresses_and_counts_names_without_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No DNS server here: the resolver's lookup is a stand-in (watchers.dns is tested on its own)."""
    from watchers import dns

    answers = {"attacker.example": ["203.0.113.50", "203.0.113.51"]}

    def lookup(name: str) -> list[str]:
        if name not in answers:
            raise dns.Unresolvable(name)
        return answers[name]

    monkeypatch.setattr(dns, "_default", dns.Resolver(lookup=lookup))
    auth_log = tmp_path / "auth.log"
    auth_log.write_text("")
    # (our built-in sshd filter takes <ADDR>, addresses only, whatever usedns says: a filter with <HOST>)
    named = Filter.objects.create(name="named",
                                  source="[Definition]\nfailregex = Failed password for \\S+ from <HOST> port\n")
    jail = make_jail("sshd", flt=named, logpath=[str(auth_log)], usedns=Jail.UseDns.YES, maxretry=5)
    flw, _ = follower()
    flw.start()
    append(auth_log, failure("attacker.example") + failure("nowhere.invalid"))
    step_until(flw, lambda: source_of(jail).lines_read == 2, timeout=10)
    flw.close()
    assert sorted(Failure.objects.values_list("address", flat=True)) == ["203.0.113.50", "203.0.113.51"]
    assert source_of(jail).skipped == {"dns": 1}


def test_after_a_timeout_the_filters_lines_get_a_short_budget_so_a_stream_of_them_is_drained(
        tmp_path: Path) -> None:
    """Slow mode: the first crafted line costs IPS_LIVE_REGEX_BUDGET_MS and ends its read; the next
    ones get SLOW_LINE_SECONDS each and no longer end reads, so 40 of them are drained in about a
    second, not ten."""
    from watchers import services

    slow_log = tmp_path / "app.log"
    slow_log.write_text("")
    slow = make_jail("slow", flt=Filter.objects.create(name="slow", source=SLOW_FILTER),
                     logpath=[str(slow_log)], maxretry=1)
    flw, spy = follower()
    flw.start()
    append(slow_log, ("a" * 5000 + "\n") * 40)
    step_until(flw, lambda: (source_of(slow).skipped or {}).get("timeout") == 40, timeout=10)
    flw.close()
    assert source_of(slow).lines_read == 40
    assert services.compiled(source_of(slow)).slow.active()
    assert len(spy.reads) < 20  # not one read per line
