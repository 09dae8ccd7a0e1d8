"""The dashboard: charts' figures from rollups plus recent rows, top offenders, latest bans, empty state."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import Settings

from bans import views
from bans.models import Ban, Failure, FirewallHost, JailStat
from jails.models import Jail
from tests.factories import make_jail, stored_ban, stored_failure

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer() -> Client:
    user = User.objects.create_user("watcher", password="x")
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def sshd() -> Jail:
    return make_jail("sshd")


def fail(jail: Jail, address: str, minutes_ago: float, user: str | None = None) -> Failure:
    when = timezone.now() - dt.timedelta(minutes=minutes_ago)
    return stored_failure(jail, address, when, **({"user": user} if user else {}))


def ban(jail: Jail, network: str, minutes_ago: float = 1, **values: Any) -> Ban:
    return stored_ban(jail, network, timezone.now() - dt.timedelta(minutes=minutes_ago), **values)


# --- empty states ----------------------------------------------------------------------------------


def test_a_fresh_install_explains_how_to_begin(viewer: Client) -> None:
    response = viewer.get(reverse("dashboard"))

    assert response.status_code == 200
    assert b'id="dashboard-empty"' in response.content
    assert reverse("jail_list").encode() in response.content and b"importconf" in response.content
    assert b"<canvas" not in response.content


def test_an_admin_gets_the_import_link(client: Client) -> None:
    client.force_login(User.objects.create_superuser("root", "root@example.org", "x"))

    response = client.get(reverse("dashboard"))

    assert reverse("import_config").encode() in response.content


def test_a_quiet_period_says_so_instead_of_blank_charts(viewer: Client, sshd: Jail) -> None:
    fail(sshd, "203.0.113.9", minutes_ago=60 * 5)  # outside the last hour

    response = viewer.get(reverse("dashboard"), {"period": "hour"})

    assert b'id="period-empty"' in response.content
    assert b'id="period-empty" hidden' not in response.content
    assert b'id="dashboard-empty"' not in response.content


# --- the figures -----------------------------------------------------------------------------------


def test_it_charts_the_counters_up_to_the_current_bucket(viewer: Client, sshd: Jail) -> None:
    now = timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    # three hours ago: 5 failures and 1 ban, whose raw rows are gone (pruned); the counters stay
    JailStat.objects.create(jail_name="sshd", resolution="hour", bucket=hour - dt.timedelta(hours=3),
                            failures=5, bans=1)
    # this very minute: counted as they are written
    for _ in range(2):
        fail(sshd, "203.0.113.9", minutes_ago=0)
    ban(sshd, "203.0.113.9/32", minutes_ago=0)

    data = viewer.get(reverse("dashboard_data"), {"period": "day"}).json()

    assert data["period"] == "day" and len(data["labels"]) == 24
    jail = data["jails"][0]
    assert jail["name"] == "sshd"
    assert jail["failures"][-4] == 5 and jail["bans"][-4] == 1
    assert jail["failures"][-1] == 2 and jail["bans"][-1] == 1
    assert data["totals"] == {"failures": 7, "bans": 2}
    assert data["banned"] == [{"jail": "sshd", "count": 1}]


@pytest.mark.parametrize(("period", "buckets"), [("hour", 60), ("day", 24), ("week", 168), ("month", 30)])
def test_every_period_has_its_buckets(viewer: Client, sshd: Jail, period: str, buckets: int) -> None:
    fail(sshd, "203.0.113.9", minutes_ago=0)

    data = viewer.get(reverse("dashboard_data"), {"period": period}).json()

    assert len(data["labels"]) == buckets and data["jails"][0]["failures"][-1] == 1


def test_it_shows_top_addresses_networks_users_and_latest_bans(viewer: Client, sshd: Jail) -> None:
    for _ in range(3):
        fail(sshd, "203.0.113.9", 1, user="root")
    fail(sshd, "203.0.113.10", 1, user="admin")
    fail(sshd, "2001:db8::1", 1, user="root")
    fail(sshd, "2001:db8::2", 1)
    ban(sshd, "203.0.113.9/32")

    response = viewer.get(reverse("dashboard"))

    assert response.context["top_addresses"][0] == {"address": "203.0.113.9", "count": 3, "jails": 1}
    assert response.context["top_networks"][:2] == [
        {"network": "203.0.113.0/24", "count": 4, "addresses": 2},
        {"network": "2001:db8::/64", "count": 2, "addresses": 2},
    ]
    assert response.context["top_users"] == [{"user": "root", "count": 4}, {"user": "admin", "count": 1}]
    assert [b.network for b in response.context["latest_bans"]] == ["203.0.113.9/32"]
    assert response.context["banned"] == [{"jail": "sshd", "count": 1}]


def test_it_escapes_what_attackers_wrote(viewer: Client, sshd: Jail) -> None:
    fail(sshd, "203.0.113.9", 1, user="<img src=x onerror=alert(1)>")

    response = viewer.get(reverse("dashboard"))

    assert b"<img src=x" not in response.content and b"&lt;img src=x" in response.content


# --- charts, refresh, banner -----------------------------------------------------------------------


def test_it_draws_charts_from_the_embedded_figures_and_polls_for_more(viewer: Client, sshd: Jail) -> None:
    fail(sshd, "203.0.113.9", 1)

    response = viewer.get(reverse("dashboard"))

    assert b'id="chart-failures"' in response.content and b'id="chart-bans"' in response.content
    assert b'id="dashboard-figures"' in response.content and b"vendor/chartjs/chart.umd.min.js" in response.content
    assert b'hx-trigger="every 30s"' in response.content


def test_without_chartjs_it_shows_tables_and_says_to_run_setup(viewer: Client, sshd: Jail, settings: Settings,
                                                               tmp_path: Path) -> None:
    settings.CHARTJS_DIST = tmp_path / "missing"
    fail(sshd, "203.0.113.9", 1)

    response = viewer.get(reverse("dashboard"))

    assert b'id="charts-missing"' in response.content and b"scripts/setup.sh" in response.content
    assert b"<canvas" not in response.content and b"chart.umd.min.js" not in response.content
    assert b'<details id="figures-table" open>' in response.content


def test_htmx_refreshes_only_the_panels(viewer: Client, sshd: Jail) -> None:
    fail(sshd, "203.0.113.9", 1)

    response = viewer.get(reverse("dashboard"), {"period": "week"}, HTTP_HX_REQUEST="true")

    assert response.content.lstrip().startswith(b'<div id="dashboard-panels"')
    assert b"<html" not in response.content and b"period=week" in response.content


def test_it_warns_when_the_firewall_is_not_being_changed(viewer: Client, sshd: Jail, settings: Settings) -> None:
    FirewallHost.objects.create(name=settings.IPS_HOST_NAME, state=FirewallHost.State.UNAVAILABLE,
                                reason="no CAP_NET_ADMIN", last_seen_at=timezone.now())

    response = viewer.get(reverse("dashboard"))

    assert b'id="firewall-warning"' in response.content and b"no CAP_NET_ADMIN" in response.content


def test_no_warning_while_the_firewall_worker_reports_success(viewer: Client, sshd: Jail, settings: Settings) -> None:
    FirewallHost.objects.create(name=settings.IPS_HOST_NAME, state=FirewallHost.State.OK, last_seen_at=timezone.now())

    response = viewer.get(reverse("dashboard"))

    assert b'id="firewall-warning"' not in response.content


def test_the_dashboard_needs_a_role(client: Client) -> None:
    client.force_login(User.objects.create_user("nobody", password="x"))

    assert client.get(reverse("dashboard")).status_code == 403
    assert client.get(reverse("dashboard_data")).status_code == 403


def test_an_unknown_period_is_the_default_one(viewer: Client, sshd: Jail) -> None:
    data = viewer.get(reverse("dashboard_data"), {"period": "century"}).json()

    assert data["period"] == views.DEFAULT_PERIOD


# --- custom range, colours, drill-down -------------------------------------------------------------


def local_minute(moment: dt.datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize(("hours", "step", "buckets"), [(2, dt.timedelta(minutes=1), 120),
                                                         (48, dt.timedelta(hours=1), 48),
                                                         (24 * 20, dt.timedelta(days=1), 20)])
def test_a_custom_range_is_drawn_in_minutes_hours_or_days_by_its_length(
        viewer: Client, sshd: Jail, hours: int, step: dt.timedelta, buckets: int) -> None:
    until = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=5)
    since = until - dt.timedelta(hours=hours)
    fail(sshd, "203.0.113.9", minutes_ago=30)

    response = viewer.get(reverse("dashboard"), {"period": "custom", "since": local_minute(since),
                                                 "until": local_minute(until)})

    period = response.context["period"]
    assert period.name == "custom" and period.step == step
    assert buckets <= period.buckets <= buckets + 1  # a day range starts at the day's start
    figures = response.context["figures"]
    assert len(figures["labels"]) == period.buckets and len(figures["edges"]) == period.buckets + 1
    assert figures["totals"]["failures"] == 1
    assert response.context["top_addresses"][0]["address"] == "203.0.113.9"
    assert b'id="dashboard-range-label"' in response.content
    assert b"period=custom" in response.content  # the refresh keeps the range


def test_the_tops_of_a_range_leave_out_what_came_after_it(viewer: Client, sshd: Jail) -> None:
    now = timezone.now()
    fail(sshd, "203.0.113.9", minutes_ago=60 * 30)
    fail(sshd, "198.51.100.1", minutes_ago=5)
    since, until = now - dt.timedelta(hours=48), now - dt.timedelta(hours=2)

    response = viewer.get(reverse("dashboard"), {"period": "custom", "since": local_minute(since),
                                                 "until": local_minute(until)})

    assert [row["address"] for row in response.context["top_addresses"]] == ["203.0.113.9"]


@pytest.mark.parametrize("query", [
    {"since": "2026-12-07T10:00"},  # one end only
    {"since": "2026-12-07T10:00", "until": "2026-12-01T10:00"},  # backwards
    {"since": "2020-01-01T00:00", "until": "2026-01-01T00:00"},  # longer than the history
    {"since": "soon", "until": "later"},
])
def test_a_bad_range_says_why_and_shows_the_default_period(viewer: Client, sshd: Jail, query: dict[str, str]) -> None:
    response = viewer.get(reverse("dashboard"), {"period": "custom", **query})

    assert response.status_code == 200
    assert response.context["period"].name == views.DEFAULT_PERIOD
    assert b'id="dashboard-range-errors"' in response.content


def test_twenty_jails_get_twenty_different_colours(viewer: Client) -> None:
    jails = [make_jail(f"jail-{index:02}") for index in range(20)]
    for jail in jails:
        fail(jail, "203.0.113.9", minutes_ago=1)

    data = viewer.get(reverse("dashboard_data")).json()

    colours = [jail["colour"] for jail in data["jails"]]
    assert len(colours) == 20 == len(set(colours))
    again = viewer.get(reverse("dashboard_data"), {"period": "week"}).json()
    assert [jail["colour"] for jail in again["jails"]] == colours  # a jail keeps its colour


def test_the_figures_table_links_each_count_to_what_it_counts(viewer: Client, sshd: Jail) -> None:
    fail(sshd, "203.0.113.9", minutes_ago=1)
    ban(sshd, "203.0.113.9/32")

    response = viewer.get(reverse("dashboard"), {"period": "hour"})
    row = response.context["rows"][-1]

    assert row["cells"] == [{"jail": "sshd", "failures": 1, "bans": 1}]
    since, until = quote(row["since"], safe="/"), quote(row["until"], safe="/")
    failures_link = f"/failures/?jail=sshd&amp;since={since}&amp;until={until}"
    assert failures_link.encode() in response.content
    followed = viewer.get("/failures/", {"jail": "sshd", "since": row["since"], "until": row["until"]})
    assert [f.address for f in followed.context["page"].failures] == ["203.0.113.9"]


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_a_bar_in_the_hour_that_happens_twice_opens_its_own_failures(viewer: Client, sshd: Jail, settings: Settings,
                                                                     zone: str) -> None:
    settings.TIME_ZONE = zone
    # 2026-11-01 01:00-02:00 happens twice in New York (the clocks go back at 02:00 EDT)
    first_pass = dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.UTC)  # 01:30 EDT
    second_pass = dt.datetime(2026, 11, 1, 6, 30, tzinfo=dt.UTC)  # 01:30 EST
    stored_failure(sshd, "203.0.113.9", first_pass)
    stored_failure(sshd, "198.51.100.7", second_pass)

    response = viewer.get(reverse("dashboard"), {"period": "custom", "since": "2026-11-01T04:00+00:00",
                                                 "until": "2026-11-01T08:00+00:00"})
    rows = response.context["rows"]
    opened = [viewer.get("/failures/", {"jail": "sshd", "since": row["since"], "until": row["until"]})
              for row in rows]

    assert [[f.address for f in page.context["page"].failures] for page in opened] == [["203.0.113.9"],
                                                                                       ["198.51.100.7"]]
    assert all(not page.context["form"].errors for page in opened)


def test_the_refresh_keeps_the_range_as_asked(viewer: Client, sshd: Jail) -> None:
    fail(sshd, "203.0.113.9", minutes_ago=60)
    since = (timezone.now() - dt.timedelta(days=8)).replace(minute=30)
    until = since + dt.timedelta(days=8)
    query = {"period": "custom", "since": local_minute(since), "until": local_minute(until)}

    first = viewer.get(reverse("dashboard"), query)
    again = viewer.get(reverse("dashboard") + "?" + first.context["refresh_query"])

    assert first.context["period"].step == again.context["period"].step == dt.timedelta(hours=1)
    assert first.context["period"].buckets == again.context["period"].buckets


@pytest.mark.parametrize("when", ["9999-12-31T23:59", "0001-01-01T00:00", "2101-01-01T00:00"])
def test_a_range_at_the_ends_of_time_is_refused_not_a_crash(viewer: Client, sshd: Jail, when: str) -> None:
    response = viewer.get(reverse("dashboard"), {"period": "custom", "since": "2026-01-01T00:00", "until": when})

    assert response.status_code == 200 and b'id="dashboard-range-errors"' in response.content
