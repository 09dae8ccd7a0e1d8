"""The dashboard's tops (bans.tops): hourly rollups written with the failures, the same answers as
counting the raw failures, the backfill of a history stored before them, and their pruning."""

from __future__ import annotations

import datetime as dt
import importlib
import random

import pytest
from django.apps import apps
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bans import policy, schedules, tops, views
from bans.models import AddressStat, Failure, UserStat
from bans.services import Observed, record_failures
from jails.models import Jail
from tests.factories import make_jail

pytestmark = pytest.mark.django_db

HOUR = 3600.0
# An hour's start, well in the past of any test run's clock: the rollups are compared from here.
START = 1_790_000_000.0 - 1_790_000_000.0 % HOUR


def observed(address: str, when: float, user: str | None = None) -> Observed:
    return Observed(address, when, (f"failed for {user} from {address}",), {"user": user} if user is not None else {})


def record(jail: Jail, failures: list[Observed], now: float) -> None:
    with transaction.atomic():
        record_failures(jail, failures, now=now, own_addresses=[], catching_up=False)


def random_history(rng: random.Random, jails: list[Jail], reads: int = 40) -> float:
    """Reads of failures from a few networks, over about 40 hours, with and without user names;
    returns the time of the last one."""
    addresses = [f"198.51.100.{i}" for i in range(1, 8)] + [f"203.0.113.{i}" for i in range(1, 5)] + [
        "2001:db8::1", "2001:db8::2", "2001:db8:1::5"]
    users = ["root", "admin", "oracle", "x" * 300, ""]
    when = START
    for _ in range(reads):
        jail = rng.choice(jails)
        batch = []
        when += rng.uniform(0, 2 * HOUR)
        for _ in range(rng.randrange(1, 12)):
            when += rng.uniform(0, 5)  # a read's failures within seconds: each keeps its own time
            user = rng.choice([*users, None])
            batch.append(observed(rng.choice(addresses), when, user))
        record(jail, batch, now=when)
    return when


def test_the_live_path_counts_each_failure_into_its_hour_address_network_and_user() -> None:
    sshd = make_jail("sshd", maxretry=100)
    long_name = "u" * 250
    record(sshd, [observed("203.0.113.9", START + 10, "root"), observed("203.0.113.9", START + 20, "root"),
                  observed("2001:db8::7", START + 30, long_name)], now=START + 30)
    record(sshd, [observed("203.0.113.10", START + HOUR + 5)], now=START + HOUR + 5)

    rows = sorted(AddressStat.objects.values_list("jail_name", "hour", "address", "network", "failures"))
    hour = dt.datetime.fromtimestamp(START, tz=dt.UTC)
    assert rows == sorted([
        ("sshd", hour, "203.0.113.9", "203.0.113.0/24", 2),
        ("sshd", hour, "2001:db8::7", "2001:db8::/64", 1),
        ("sshd", hour + dt.timedelta(hours=1), "203.0.113.10", "203.0.113.0/24", 1),
    ])
    assert sorted(UserStat.objects.values_list("user", "failures")) == [("root", 2), ("u" * UserStat.USER_LENGTH, 1)]


def test_a_failure_the_gate_refuses_is_not_in_the_tops() -> None:
    sshd = make_jail("sshd", maxretry=100, ignoreip=["203.0.113.0/24"])
    record(sshd, [observed("203.0.113.9", START + 10, "root")], now=START + 20)

    assert not AddressStat.objects.exists() and not UserStat.objects.exists()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_rollups_give_what_counting_the_raw_failures_gives(seed: int) -> None:
    rng = random.Random(seed)
    jails = [make_jail("sshd", maxretry=1000), make_jail("postfix", maxretry=1000)]
    end = random_history(rng, jails)

    for hours_back in (0, 1, 5, 29, 40):
        since = dt.datetime.fromtimestamp(START + HOUR * (30 - hours_back), tz=dt.UTC)
        assert tops.from_rollups(since)
        assert tops.addresses_from_rollups(since, 1000) == tops.addresses_from_failures(since, 1000)
        assert tops.networks_from_rollups(since, 1000) == tops.networks_from_failures(since, 1000)
        assert tops.users_from_rollups(since, 1000) == tops.users_from_failures(since, 1000)
    assert end > START


def test_the_dashboard_reads_the_rollups_from_an_hour_and_the_failures_within_one() -> None:
    now = timezone.now().replace(minute=30)  # the last hour then starts at :31 (at :59 it starts on the hour)

    assert not tops.from_rollups(views.PERIODS["hour"].start(now))
    assert tops.from_rollups(views.PERIODS["hour"].start(now.replace(minute=59)))
    for name in ("day", "week", "month"):
        assert tops.from_rollups(views.PERIODS[name].start(now)), name


def test_the_month_dashboard_shows_the_rollups(admin: Client) -> None:
    sshd = make_jail("sshd", maxretry=100)
    now = timezone.now().timestamp()
    record(sshd, [observed("203.0.113.9", now - 86400 * 3, "root")] * 3 + [observed("198.51.100.7", now - 60)],
           now=now)

    response = admin.get(reverse("dashboard"), {"period": "month"})

    assert response.context["top_addresses"] == [{"address": "203.0.113.9", "count": 3, "jails": 1},
                                                 {"address": "198.51.100.7", "count": 1, "jails": 1}]
    assert response.context["top_users"] == [{"user": "root", "count": 3}]


def test_the_backfill_counts_a_history_stored_before_the_rollups_as_the_live_path_does() -> None:
    rng = random.Random(7)
    jails = [make_jail("sshd", maxretry=1000), make_jail("postfix", maxretry=1000)]
    random_history(rng, jails)
    live_addresses = sorted(AddressStat.objects.values_list("jail_name", "hour", "address", "network", "failures"))
    live_users = sorted(UserStat.objects.values_list("jail_name", "hour", "user", "failures"))
    AddressStat.objects.all().delete()
    UserStat.objects.all().delete()

    migration = importlib.import_module("bans.migrations.0015_count_dashboard_tops")
    migration.count_tops(apps, None)

    backfilled = sorted(AddressStat.objects.values_list("jail_name", "hour", "address", "network", "failures"))
    assert backfilled == live_addresses
    assert sorted(UserStat.objects.values_list("jail_name", "hour", "user", "failures")) == live_users
    assert Failure.objects.count() == sum(row[-1] for row in live_addresses)
    migration.count_tops(apps, None)  # again, over rows already there (a watcher ran meanwhile): the same
    assert sorted(AddressStat.objects.values_list("jail_name", "hour", "address", "network", "failures")) == (
        live_addresses)


def test_the_rollups_are_kept_as_long_as_the_hour_buckets() -> None:
    sshd = make_jail("sshd", maxretry=100)
    record(sshd, [observed("203.0.113.9", START + 10, "root")], now=START + 10)
    record(sshd, [observed("203.0.113.9", START + 86400 * 5, "root")], now=START + 86400 * 5)

    schedules.rollup_stats(now=START + 86400 * 5 + schedules.stats_kept(schedules.HOUR).total_seconds() - 86400)

    assert list(AddressStat.objects.values_list("failures", flat=True)) == [1]
    assert list(UserStat.objects.values_list("failures", flat=True)) == [1]


@pytest.mark.parametrize(("address", "network"), [
    ("203.0.113.9", "203.0.113.0/24"), ("10.1.2.3", "10.1.2.0/24"), ("2001:db8::1", "2001:db8::/64"),
    ("2001:db8:aaaa:bbbb:cccc::1", "2001:db8:aaaa:bbbb::/64"),
])
def test_an_attackers_network_is_its_24_or_64(address: str, network: str) -> None:
    assert policy.attacker_network(address) == network


def test_a_time_a_hair_before_the_hour_is_filed_where_it_is_stored() -> None:
    sshd = make_jail("sshd", maxretry=100)
    when = START + HOUR - 4e-7  # an epoch date template keeps every digit; the database keeps microseconds
    record(sshd, [observed("203.0.113.9", when)], now=when)

    stored = Failure.objects.get().time
    assert list(AddressStat.objects.values_list("hour", flat=True)) == [stored.replace(minute=0, second=0,
                                                                                       microsecond=0)]
