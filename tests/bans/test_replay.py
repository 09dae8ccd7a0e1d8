"""bans.replay: a jail's settings over its existing log, compared with what the live jail did."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone

from bans import replay
from bans.models import Ban, ReplayRun
from jails import changes
from jails.access.audit import Actor
from jails.models import Jail
from tests.factories import DATED_FAIL_SOURCE, make_filter, make_jail

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 11, 20, 10, 0, 0, tzinfo=dt.UTC)


def line(seconds: int, text: str) -> str:
    return f"{START + dt.timedelta(seconds=seconds):%Y-%m-%d %H:%M:%S} {text}\n"


@pytest.fixture
def jail(tmp_path: Path) -> Jail:
    return make_jail("web", flt=make_filter("replay-test", DATED_FAIL_SOURCE), logpath=[str(tmp_path / "app.log")])


def write_log(tmp_path: Path, lines: list[str], name: str = "app.log") -> None:
    (tmp_path / name).write_text("".join(lines))


def run(jail: Jail, **overrides: object) -> ReplayRun:
    created = ReplayRun.objects.create(jail=jail, overrides=overrides)
    assert replay.run_replay(created.pk, own_addresses=[]) in ("done", "failed")
    created.refresh_from_db()
    return created


STANDARD = [
    line(0, "fail 192.0.2.7"), line(10, "fail 192.0.2.8"), line(20, "fail 192.0.2.7"),
    line(25, "all fine here"), line(30, "fail 192.0.2.8"), line(40, "fail 192.0.2.7"),
]


def test_it_finds_who_would_have_been_banned_when_and_for_how_long(jail: Jail, tmp_path: Path) -> None:
    write_log(tmp_path, STANDARD)

    done = run(jail)

    assert done.state == ReplayRun.State.DONE, done.error
    assert [row["network"] for row in done.results] == ["192.0.2.7/32"]
    ban = done.results[0]["bans"][0]
    assert ban["at"] == (START + dt.timedelta(seconds=40)).isoformat()
    assert ban["bantime"] == 3600 and ban["count"] == 3
    assert ban["evidence"][-1].endswith("fail 192.0.2.7")
    assert done.bytes_read == done.bytes_total == (tmp_path / "app.log").stat().st_size
    assert done.lines_read == 6 and done.failures_found == 5
    assert done.first_time == START and done.last_time == START + dt.timedelta(seconds=40)
    assert done.summary["replay"] == 1 and done.summary["live"] == 0


def test_it_applies_the_overrides(jail: Jail, tmp_path: Path) -> None:
    write_log(tmp_path, STANDARD)

    done = run(jail, maxretry=2, bantime=600)

    assert [row["network"] for row in done.results] == ["192.0.2.7/32", "192.0.2.8/32"]
    assert done.results[0]["bans"][0]["bantime"] == 600
    assert done.parameters["maxretry"] == 2 and done.parameters["findtime"] == 600


def test_it_replaces_the_failregex_when_one_is_given(jail: Jail, tmp_path: Path) -> None:
    write_log(tmp_path, [*STANDARD, line(50, "denied 203.0.113.5"), line(51, "denied 203.0.113.5"),
                         line(52, "denied 203.0.113.5")])

    done = run(jail, failregex="^\\s*denied <HOST>$")

    assert [row["network"] for row in done.results] == ["203.0.113.5/32"]


def test_it_counts_the_window_like_the_live_jail(jail: Jail, tmp_path: Path) -> None:
    # three failures, but the third comes more than findtime after the first two
    write_log(tmp_path, [line(0, "fail 192.0.2.7"), line(10, "fail 192.0.2.7"), line(1000, "fail 192.0.2.7")])

    assert run(jail).results == []


def test_it_reads_the_rotated_file_first(jail: Jail, tmp_path: Path) -> None:
    write_log(tmp_path, [line(0, "fail 192.0.2.7"), line(10, "fail 192.0.2.7")], name="app.log.1")
    write_log(tmp_path, [line(20, "fail 192.0.2.7")])

    done = run(jail)

    assert done.files == [str(tmp_path / "app.log.1"), str(tmp_path / "app.log")]
    assert [row["network"] for row in done.results] == ["192.0.2.7/32"]


def test_it_never_bans_what_the_jail_ignores(jail: Jail, tmp_path: Path) -> None:
    jail.ignoreip = ["192.0.2.0/24"]
    jail.save()
    write_log(tmp_path, STANDARD)

    done = run(jail)

    assert done.results == [] and done.summary["ignored"] == 5


def test_it_never_bans_what_the_global_ignore_list_holds(jail: Jail, tmp_path: Path) -> None:
    changes.add_global_ignored(["192.0.2.7"], Actor.system())
    write_log(tmp_path, STANDARD)

    done = run(jail)

    assert done.parameters["global_ignoreip"] == ["192.0.2.7"] and done.parameters["ignoreip"] == []
    assert done.results == [] and done.summary["ignored"] == 3  # 192.0.2.8 failed twice: no ban either


def test_a_run_stored_before_the_global_list_existed_still_runs(jail: Jail) -> None:
    stored = replay.effective_parameters(jail, {})
    del stored["global_ignoreip"]

    simulation = replay.simulation_for(jail, stored, own_addresses=[])

    assert simulation.ignore("192.0.2.7") is None


def test_it_makes_repeat_bans_longer_with_bantime_increment(jail: Jail, tmp_path: Path) -> None:
    jail.bantime_increment = True
    jail.bantime = 60
    jail.save()
    attacks = [line(t, "fail 192.0.2.7") for t in (0, 1, 2, 100, 101, 102)]
    write_log(tmp_path, attacks)

    done = run(jail)

    assert [ban["bantime"] for ban in done.results[0]["bans"]] == [60, 120]


def test_it_does_not_ban_again_while_banned(jail: Jail, tmp_path: Path) -> None:
    write_log(tmp_path, [line(t, "fail 192.0.2.7") for t in (0, 1, 2, 3, 4, 5)])

    done = run(jail)

    assert done.results[0]["count"] == 1


def test_it_compares_with_what_the_live_jail_did(jail: Jail, tmp_path: Path) -> None:
    write_log(tmp_path, [*STANDARD, line(60, "fail 198.51.100.1"), line(61, "fail 198.51.100.1"),
                         line(62, "fail 198.51.100.1")])
    for network in ("192.0.2.7/32", "203.0.113.9/32"):
        Ban.objects.create(jail=jail, jail_name="web", network=network, family=4, bantime=3600,
                           started_at=START + dt.timedelta(seconds=41), state=Ban.State.EXPIRED)
    Ban.objects.create(jail=jail, jail_name="web", network="198.51.100.1/32", family=4, bantime=3600,
                       started_at=START, origin=Ban.Origin.USER)  # by hand: not the jail's doing

    done = run(jail)

    verdicts = {row["network"]: row["verdict"] for row in done.comparison}
    assert verdicts == {"192.0.2.7/32": "both", "198.51.100.1/32": "replay", "203.0.113.9/32": "live"}
    assert done.summary == {**done.summary, "both": 1, "replay": 1, "live": 1}


def test_it_fails_with_a_reason_when_the_log_is_missing(jail: Jail) -> None:
    done = run(jail)

    assert done.state == ReplayRun.State.FAILED
    assert "no log file matches" in done.error


def test_it_fails_with_a_reason_when_the_failregex_does_not_compile(jail: Jail, tmp_path: Path) -> None:
    write_log(tmp_path, STANDARD)

    done = run(jail, failregex="^no host tag here$")

    assert done.state == ReplayRun.State.FAILED and done.error


def test_it_runs_a_claimed_run_once(jail: Jail, tmp_path: Path) -> None:
    write_log(tmp_path, STANDARD)
    busy = ReplayRun.objects.create(jail=jail, state=ReplayRun.State.RUNNING, heartbeat_at=timezone.now())
    finished = run(jail)

    assert replay.run_replay(busy.pk, own_addresses=[]) == "skipped"
    assert replay.run_replay(finished.pk, own_addresses=[]) == "skipped"


def test_it_takes_over_a_run_whose_worker_was_lost(jail: Jail, tmp_path: Path) -> None:
    write_log(tmp_path, STANDARD)
    lost = ReplayRun.objects.create(jail=jail, state=ReplayRun.State.RUNNING,
                                    heartbeat_at=timezone.now() - dt.timedelta(minutes=5))

    assert replay.run_replay(lost.pk, own_addresses=[]) == "done"


def test_it_reports_progress_while_reading(jail: Jail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_log(tmp_path, STANDARD * 50)
    monkeypatch.setattr(replay, "READ_BLOCK_BYTES", 256)
    seen: list[int] = []
    original = replay.Progress.flush

    def flush(self: replay.Progress) -> None:
        original(self)
        seen.append(ReplayRun.objects.get(pk=self.run_id).bytes_read)

    monkeypatch.setattr(replay.Progress, "flush", flush)
    created = ReplayRun.objects.create(jail=jail)
    ticks = iter(range(0, 10_000))  # a clock that moves a second per look: every block reports

    replay.run_replay(created.pk, own_addresses=[], clock=lambda: float(next(ticks)))

    assert len(seen) > 5 and seen == sorted(seen)
    assert 0 < seen[0] < (tmp_path / "app.log").stat().st_size


def test_the_simulation_skips_host_names_and_counts_in_log_time() -> None:
    from bans import policy

    simulation = replay.Simulation(maxretry=2, findtime=60, bantime=30, maxmatches=None,
                                   increment=policy.IncrementSettings(enabled=False), ignore=lambda a: None)
    simulation.feed("example.org", 0)
    simulation.feed("192.0.2.1", 0)
    first = simulation.feed("192.0.2.1", 10)
    simulation.feed("192.0.2.1", 20)
    again = simulation.feed("192.0.2.1", 50)  # the first ban (10 + 30) is over by now

    assert first is not None and first.at == 10
    assert again is not None and again.at == 50
    assert simulation.skipped == 1
