"""bans.schedules: recidive from the ban history, history cleanup, statistics; their tasks and schedules."""

from __future__ import annotations

import datetime as dt
import importlib

import pytest
from django.apps import apps
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from pytest_django import DjangoCaptureOnCommitCallbacks, Settings

from bans import schedules, tasks
from bans.models import Ban, Failure, Ignored, JailStat, Tally
from bans.services import Observed, aware, new_ban, record_failures
from jails.models import Jail
from tests.factories import make_jail

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host", "no_broker")]

NOW = dt.datetime(2026, 11, 20, 12, 0, 30, tzinfo=dt.UTC).timestamp()
HOUR = 3600
DAY = 86400
ATTACKER = "203.0.113.9"
OTHER = "198.51.100.7"


def make_recidive(**options: object) -> Jail:
    # as importconf creates it from the seed's jail.local
    values: dict[str, object] = {"maxretry": 2, "findtime": DAY, "bantime": 30 * DAY, "port": "all",
                                 "logpath": ["/var/log/fail2ban.log"]}
    values.update(options)
    return make_jail("recidive", **values)


def past_ban(jail: Jail, address: str, seconds_ago: float, *, state: str = Ban.State.EXPIRED,
             host: str = "local", ended_seconds_ago: float | None = None) -> Ban:
    ban = new_ban(jail.name, f"{address}/32", jail.bantime, now=NOW - seconds_ago, host=host, jail=jail,
                  origin=Ban.Origin.JAIL)
    ended = None if state not in (Ban.State.EXPIRED, Ban.State.LIFTED) else aware(NOW - (ended_seconds_ago or 0))
    Ban.objects.filter(pk=ban.pk).update(state=state, ended_at=ended)
    return ban


# -- recidive -----------------------------------------------------------------------------------


def test_it_bans_an_address_banned_maxretry_times_within_findtime_in_other_jails(
        django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks) -> None:
    recidive, sshd, postfix = make_recidive(), make_jail("sshd"), make_jail("postfix")
    past_ban(sshd, ATTACKER, 5 * HOUR)
    past_ban(postfix, ATTACKER, HOUR, state=Ban.State.ACTIVE)
    past_ban(sshd, OTHER, HOUR)  # once only

    with django_capture_on_commit_callbacks() as callbacks:
        [ban] = schedules.run_recidive(now=NOW, own_addresses=[])

    assert (ban.jail_id, ban.jail_name, ban.network, ban.host) == (recidive.pk, "recidive", "203.0.113.9/32", "local")
    assert (ban.origin, ban.state, ban.bantime) == (Ban.Origin.SCHEDULE, Ban.State.PENDING, 30 * DAY)
    assert ban.evidence == ["2026-11-20 07:00:30 UTC [sshd] Ban 203.0.113.9",
                            "2026-11-20 11:00:30 UTC [postfix] Ban 203.0.113.9"]
    assert ban.reason == "banned 2 times within 86400 s in other jails"
    assert len(callbacks) == 1  # the firewall worker is asked once the ban is committed


def test_it_creates_nothing_when_run_again() -> None:
    make_recidive()
    sshd = make_jail("sshd")
    past_ban(sshd, ATTACKER, 2 * HOUR)
    past_ban(sshd, ATTACKER, HOUR)
    assert len(schedules.run_recidive(now=NOW, own_addresses=[])) == 1
    assert schedules.run_recidive(now=NOW + 60, own_addresses=[]) == []
    assert Ban.objects.filter(jail_name="recidive").count() == 1


def test_it_does_nothing_without_an_enabled_recidive_jail() -> None:
    sshd = make_jail("sshd")
    past_ban(sshd, ATTACKER, 2 * HOUR)
    past_ban(sshd, ATTACKER, HOUR)
    assert schedules.run_recidive(now=NOW, own_addresses=[]) == []
    make_recidive(enabled=False)
    assert schedules.run_recidive(now=NOW, own_addresses=[]) == []


def test_it_counts_only_bans_of_other_jails_within_findtime() -> None:
    recidive, sshd = make_recidive(), make_jail("sshd")
    past_ban(sshd, ATTACKER, 2 * DAY)  # outside findtime
    past_ban(sshd, ATTACKER, HOUR)
    past_ban(recidive, OTHER, 10 * DAY)  # recidive's own bans never count
    past_ban(recidive, OTHER, 9 * DAY)
    new_ban("blocklist", f"{OTHER}/32", -1, now=NOW - 60, host="local", jail=None, origin=Ban.Origin.USER)
    past_ban(sshd, OTHER, HOUR)  # one jail ban plus the blocklist: not a repeat offender
    assert schedules.run_recidive(now=NOW, own_addresses=[]) == []


def test_it_does_not_double_ban_what_the_watcher_banned_from_fail2ban_log() -> None:
    recidive, sshd = make_recidive(), make_jail("sshd")
    past_ban(sshd, ATTACKER, 2 * HOUR)
    past_ban(sshd, ATTACKER, HOUR)
    # the imported recidive jail reads fail2ban.log too, and may ban on its "Ban" lines first
    lines = [Observed(ATTACKER, NOW - 30, (f"fail2ban.actions: NOTICE [sshd] Ban {ATTACKER}",)) for _ in range(2)]
    [watcher_ban] = record_failures(recidive, lines, now=NOW - 10, own_addresses=[], catching_up=False).bans

    assert schedules.run_recidive(now=NOW, own_addresses=[]) == []
    assert list(Ban.objects.filter(jail_name="recidive")) == [watcher_ban]


def test_it_skips_an_address_serving_a_live_recidive_ban() -> None:
    recidive, sshd = make_recidive(), make_jail("sshd")
    live = past_ban(recidive, ATTACKER, 3 * HOUR, state=Ban.State.ACTIVE)
    past_ban(sshd, ATTACKER, 2 * HOUR)  # banned again after: the recidive jail's ports did not cover it
    past_ban(sshd, ATTACKER, HOUR)
    assert schedules.run_recidive(now=NOW, own_addresses=[]) == []
    assert list(Ban.objects.filter(jail_name="recidive")) == [live]


def test_it_does_not_ban_again_an_address_lifted_from_recidive_by_hand() -> None:
    make_recidive()
    sshd = make_jail("sshd")
    past_ban(sshd, ATTACKER, 2 * HOUR)
    past_ban(sshd, ATTACKER, HOUR)
    [ban] = schedules.run_recidive(now=NOW, own_addresses=[])
    Ban.objects.filter(pk=ban.pk).update(state=Ban.State.LIFTED, ended_at=aware(NOW + 30))

    assert schedules.run_recidive(now=NOW + 60, own_addresses=[]) == []  # the same history is forgiven
    past_ban(sshd, ATTACKER, -120)
    past_ban(sshd, ATTACKER, -180)
    assert len(schedules.run_recidive(now=NOW + 240, own_addresses=[])) == 1  # new offences count


def test_it_bans_on_the_host_whose_bans_repeat() -> None:
    make_recidive()
    sshd = make_jail("sshd")
    past_ban(sshd, ATTACKER, 2 * HOUR, host="edge")
    past_ban(sshd, ATTACKER, HOUR, host="local")  # once per host: no repeat offender on either
    past_ban(sshd, OTHER, 2 * HOUR, host="edge")
    past_ban(sshd, OTHER, HOUR, host="edge")
    [ban] = schedules.run_recidive(now=NOW, own_addresses=[])
    assert (ban.network, ban.host) == ("198.51.100.7/32", "edge")


def test_it_never_bans_what_the_recidive_jail_ignores() -> None:
    make_recidive(ignoreip=["203.0.113.0/24"])
    sshd = make_jail("sshd")
    for address in (ATTACKER, "192.0.2.10"):
        past_ban(sshd, address, 2 * HOUR)
        past_ban(sshd, address, HOUR)
    assert schedules.run_recidive(now=NOW, own_addresses=["192.0.2.10"]) == []
    assert set(Ignored.objects.values_list("address", "reason")) == {
        (ATTACKER, "listed in ignoreip as 203.0.113.0/24"), ("192.0.2.10", "an address of this host")}


def test_it_makes_a_second_recidive_ban_longer_with_bantime_increment() -> None:
    recidive = make_recidive(bantime=DAY, findtime=DAY, bantime_increment=True, bantime_factor=1)
    sshd = make_jail("sshd")
    past_ban(recidive, ATTACKER, 3 * DAY)  # served its first recidive ban
    past_ban(sshd, ATTACKER, 2 * HOUR)
    past_ban(sshd, ATTACKER, HOUR)
    [ban] = schedules.run_recidive(now=NOW, own_addresses=[])
    assert (ban.earlier_bans, ban.bantime) == (1, 2 * DAY)


# -- cleanup ------------------------------------------------------------------------------------


def failure_at(jail: Jail, address: str, seconds_ago: float) -> Failure:
    return Failure.objects.create(jail=jail, address=address, time=aware(NOW - seconds_ago), line=f"fail {address}")


def test_it_deletes_failures_and_ended_bans_older_than_the_history(settings: Settings) -> None:
    settings.IPS_HISTORY_DAYS = 10
    sshd = make_jail("sshd", bantime=-1)
    failure_at(sshd, ATTACKER, 11 * DAY)
    kept_failure = failure_at(sshd, ATTACKER, 9 * DAY)
    past_ban(sshd, ATTACKER, 12 * DAY, ended_seconds_ago=11 * DAY)
    lifted_recently = past_ban(sshd, ATTACKER, 12 * DAY, state=Ban.State.LIFTED, ended_seconds_ago=9 * DAY)
    permanent = past_ban(sshd, OTHER, 100 * DAY, state=Ban.State.ACTIVE)

    counts = schedules.cleanup_history(now=NOW)

    assert counts == {"failures": 1, "bans": 1, "ignored": 0, "tallies": 0, "panel_sessions": 0}
    assert list(Failure.objects.all()) == [kept_failure]
    assert set(Ban.objects.all()) == {lifted_recently, permanent}
    assert schedules.cleanup_history(now=NOW) == {"failures": 0, "bans": 0, "ignored": 0, "tallies": 0,
                                                  "panel_sessions": 0}


def test_it_uses_90_days_of_history_by_default(settings: Settings) -> None:
    del settings.IPS_HISTORY_DAYS  # not set yet in config/settings.py, or removed: the default holds
    sshd = make_jail("sshd")
    failure_at(sshd, ATTACKER, 91 * DAY)
    failure_at(sshd, ATTACKER, 89 * DAY)
    assert schedules.cleanup_history(now=NOW)["failures"] == 1


def test_it_keeps_the_bans_that_recidive_and_increment_still_read(settings: Settings) -> None:
    settings.IPS_HISTORY_DAYS = 1
    make_recidive(findtime=10 * DAY)
    sshd = make_jail("sshd")
    past_ban(sshd, ATTACKER, 9 * DAY, ended_seconds_ago=8 * DAY)  # inside recidive's findtime
    past_ban(sshd, OTHER, 12 * DAY, ended_seconds_ago=11 * DAY)
    assert schedules.cleanup_history(now=NOW)["bans"] == 1
    assert Ban.objects.get().network == f"{ATTACKER}/32"


def test_it_deletes_ignored_rows_after_30_days_and_tallies_after_their_jails_findtime() -> None:
    sshd, postfix = make_jail("sshd", findtime=600), make_jail("postfix", findtime=HOUR)
    Ignored.objects.create(jail=sshd, address="192.0.2.1", reason="loopback", time=aware(NOW - 31 * DAY))
    Ignored.objects.create(jail=sshd, address="192.0.2.2", reason="loopback", time=aware(NOW - 29 * DAY))
    for jail, address, seconds_ago in [(sshd, ATTACKER, 600), (sshd, OTHER, 599), (postfix, ATTACKER, 1200)]:
        Tally.objects.create(jail=jail, address=address, first_time=aware(NOW - seconds_ago),
                             last_time=aware(NOW - seconds_ago), count=1)

    counts = schedules.cleanup_history(now=NOW)

    assert (counts["ignored"], counts["tallies"]) == (1, 1)
    assert Ignored.objects.get().address == "192.0.2.2"
    assert set(Tally.objects.values_list("jail__name", "address")) == {("sshd", OTHER), ("postfix", ATTACKER)}


# -- statistics ---------------------------------------------------------------------------------


def stats(resolution: str) -> dict[tuple[str, str], tuple[int, int]]:
    rows = JailStat.objects.filter(resolution=resolution)
    return {(r.jail_name, f"{r.bucket.astimezone(dt.UTC):%d %H:%M}"): (r.failures, r.bans) for r in rows}


def observed(address: str, seconds_ago: float) -> Observed:
    return Observed(host=address, time=NOW - seconds_ago, lines=(f"fail {address}",))


def test_failures_and_bans_are_counted_per_jail_per_minute_and_per_hour_as_they_are_written() -> None:
    sshd, postfix = make_jail("sshd", findtime=3 * HOUR, maxretry=10), make_jail("postfix")
    record_failures(sshd, [observed(ATTACKER, s) for s in (2 * HOUR, 50, 25, 20, 10)],  # 10:00:30, 11:59:40..
                    now=NOW, own_addresses=[], catching_up=True)
    record_failures(postfix, [observed(OTHER, 5)], now=NOW, own_addresses=[], catching_up=True)
    past_ban(sshd, ATTACKER, 20, state=Ban.State.ACTIVE)

    assert stats("minute") == {("sshd", "20 12:00"): (3, 1), ("sshd", "20 11:59"): (1, 0),
                               ("sshd", "20 10:00"): (1, 0), ("postfix", "20 12:00"): (1, 0)}
    assert stats("hour") == {("sshd", "20 12:00"): (3, 1), ("sshd", "20 11:00"): (1, 0),
                             ("sshd", "20 10:00"): (1, 0), ("postfix", "20 12:00"): (1, 0)}


def test_the_counters_add_up_and_the_rollup_leaves_them_alone() -> None:
    sshd = make_jail("sshd", maxretry=10)
    record_failures(sshd, [observed(ATTACKER, 10)], now=NOW, own_addresses=[], catching_up=False)
    schedules.rollup_stats(now=NOW)
    schedules.rollup_stats(now=NOW)
    assert stats("minute") == {("sshd", "20 12:00"): (1, 0)}
    record_failures(sshd, [observed(ATTACKER, 5), observed(ATTACKER, -40)],  # 12:00:25, 12:01:10
                    now=NOW + 60, own_addresses=[], catching_up=True)
    assert stats("minute") == {("sshd", "20 12:00"): (2, 0), ("sshd", "20 12:01"): (1, 0)}
    assert stats("hour") == {("sshd", "20 12:00"): (3, 0)}


def test_failures_read_late_count_in_their_own_buckets() -> None:
    sshd = make_jail("sshd", findtime=HOUR, maxretry=10)
    record_failures(sshd, [observed(ATTACKER, 10)], now=NOW, own_addresses=[], catching_up=False)
    # a watcher catching up on a backlog stores failures up to findtime old
    record_failures(sshd, [observed(ATTACKER, 40 * 60), observed(OTHER, 40 * 60)],  # 11:20:30
                    now=NOW + 60, own_addresses=[], catching_up=True)
    assert stats("minute")[("sshd", "20 11:20")] == (2, 0)
    assert stats("hour")[("sshd", "20 11:00")] == (2, 0)


def test_counting_costs_the_same_however_many_failures_are_stored() -> None:
    """The statistics job used to recount every recent failure each minute; now it only prunes."""
    sshd = make_jail("sshd", maxretry=1_000_000)
    record_failures(sshd, [observed(f"198.51.100.{n % 200}", n % 50) for n in range(5000)],
                    now=NOW, own_addresses=[], catching_up=True)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        schedules.rollup_stats(now=NOW)
    assert not any("bans_failure" in query["sql"] for query in queries.captured_queries)
    assert sum(failures for failures, _ in stats("hour").values()) == 5000


def test_it_prunes_minute_buckets_after_2_days_and_hour_buckets_after_the_history(settings: Settings) -> None:
    settings.IPS_HISTORY_DAYS = 10
    for resolution, seconds_ago in [(schedules.MINUTE, 2 * DAY + 60), (schedules.MINUTE, 2 * DAY - 60),
                                    (schedules.HOUR, 10 * DAY + HOUR), (schedules.HOUR, 10 * DAY - HOUR)]:
        JailStat.objects.create(jail_name="sshd", resolution=resolution.name, failures=1,
                                bucket=resolution.bucket_of(aware(NOW - seconds_ago)))
    schedules.rollup_stats(now=NOW)
    assert sorted(JailStat.objects.values_list("resolution", "bucket")) == [
        ("hour", dt.datetime(2026, 11, 10, 13, 0, tzinfo=dt.UTC)),
        ("minute", dt.datetime(2026, 11, 18, 12, 1, tzinfo=dt.UTC)),
    ]


def test_beat_sends_the_rollup_only_while_a_bucket_is_past_its_horizon(settings: Settings) -> None:
    settings.IPS_HISTORY_DAYS = 10
    JailStat.objects.create(jail_name="sshd", resolution="minute", failures=1,
                            bucket=schedules.MINUTE.bucket_of(aware(NOW - 2 * DAY + 120)))
    assert not schedules.stats_to_prune(now=NOW)  # nothing old: the task is not sent
    assert schedules.stats_to_prune(now=NOW + 180)  # that bucket is now past two days
    schedules.rollup_stats(now=NOW + 180)
    assert not schedules.stats_to_prune(now=NOW + 180)


def test_beat_sends_recidive_only_after_a_new_ban_or_an_edit_of_its_jail() -> None:
    news = schedules.RecidiveNews()
    sshd = make_jail("sshd")
    past_ban(sshd, ATTACKER, HOUR)
    assert not news()  # no recidive jail: nothing could be found
    recidive = make_recidive()
    assert news()  # a jail to run
    assert not news()  # nothing new since
    past_ban(sshd, OTHER, 60)
    assert news() and not news()
    recidive.maxretry = 1
    recidive.save()
    assert news() and not news()  # a lower maxretry may make offenders of old bans
    Jail.objects.filter(pk=recidive.pk).update(enabled=False)
    assert not news()


# -- tasks and their schedules --------------------------------------------------------------------


def test_it_runs_the_scheduled_tasks_in_process() -> None:
    make_recidive()
    sshd = make_jail("sshd")
    now = timezone.now().timestamp()
    for seconds_ago in (120, 60):
        new_ban("sshd", f"{ATTACKER}/32", 600, now=now - seconds_ago, host="local", jail=sshd, origin=Ban.Origin.JAIL)
        Ban.objects.filter(state=Ban.State.PENDING).update(state=Ban.State.EXPIRED)
    assert tasks.run_recidive() == 1
    assert tasks.run_recidive() == 0
    assert tasks.rollup_stats() == 0  # nothing old to prune; the bans were counted as they were made
    assert set(JailStat.objects.values_list("jail_name", "resolution")) == {
        ("sshd", "minute"), ("sshd", "hour"), ("recidive", "minute"), ("recidive", "hour")}
    assert tasks.cleanup_history() == {"failures": 0, "bans": 0, "ignored": 0, "tallies": 0, "panel_sessions": 0}


TASKS = ("run_recidive", "rollup_stats", "cleanup_history")


def test_it_schedules_recidive_statistics_and_cleanup_once() -> None:
    def schedule() -> set[tuple[str, str, int, str]]:
        rows = PeriodicTask.objects.filter(task__in=[f"bans.tasks.{name}" for name in TASKS])
        return {(r.name, r.task, r.interval.every, r.interval.period) for r in rows}

    expected = {("recidive: ban repeat offenders", "bans.tasks.run_recidive", 60, "seconds"),
                ("roll up statistics", "bans.tasks.rollup_stats", 60, "seconds"),
                ("clean up old history", "bans.tasks.cleanup_history", 3600, "seconds")}
    assert schedule() == expected  # created by the migration
    PeriodicTask.objects.filter(name="roll up statistics").update(enabled=False)  # an admin's edit
    importlib.import_module("bans.migrations.0002_default_schedules").create(apps, None)
    assert schedule() == expected
    assert not PeriodicTask.objects.get(name="roll up statistics").enabled


def test_the_switch_to_live_counters_recounts_whole_buckets_since_the_last_rollup() -> None:
    """bans/migrations/0010: what came after the old rollup's last run is counted once, and the
    buckets it recounts are recounted whole (not from 10 minutes before the newest one)."""
    migration = importlib.import_module("bans.migrations.0010_live_statistics")
    sshd = make_jail("sshd")
    at = dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC)
    for minutes in (5, 55, 62, 80):  # 15:05, 15:55, 16:02 (rolled up), 16:20 (not yet)
        Failure.objects.create(jail=sshd, address=ATTACKER, time=at + dt.timedelta(minutes=minutes))
    JailStat.objects.create(jail_name="sshd", resolution="hour", bucket=at, failures=2)
    JailStat.objects.create(jail_name="sshd", resolution="hour", bucket=at + dt.timedelta(hours=1), failures=1)
    migration.recount_recent(apps, None)
    assert stats("hour") == {("sshd", "20 15:00"): (2, 0), ("sshd", "20 16:00"): (2, 0)}
