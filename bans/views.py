"""Pages of the bans app: the dashboard (here), bans (views_bans), replay (views_replay).

The dashboard's charts read the per-minute and per-hour JailStat counters, which are added to as
failures and bans are written (bans.bulk.add_to_stats), so the newest minute shows at once and a
chart never recounts raw rows. The page refreshes its panels with htmx
and its charts from `dashboard_data` (JSON) every 30 seconds; without JavaScript it is a plain page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from bans import schedules, tops
from bans.forms import DashboardRangeForm
from bans.models import Ban, Failure, JailStat
from jails.access.roles import Role, role_required
from jails.htmx import HtmxHttpRequest, render_page_or_partial
from jails.models import Jail

LATEST_BANS = 10
REFRESH_SECONDS = 30


@dataclass(frozen=True)
class Period:
    """A chart's time span: `buckets` bars of `step`, counted from rollups of `resolution`."""

    name: str
    label: str
    resolution: schedules.Resolution
    step: dt.timedelta
    buckets: int
    label_format: str

    def start(self, now: dt.datetime) -> dt.datetime:
        """The first bucket's start: the last bucket holds `now`."""
        return self.floor(now) - self.step * (self.buckets - 1)

    def floor(self, moment: dt.datetime) -> dt.datetime:
        moment = self.resolution.bucket_of(moment)
        return moment.replace(hour=0) if self.step >= dt.timedelta(days=1) else moment


PERIODS = {
    period.name: period
    for period in (
        Period("hour", "last hour", schedules.MINUTE, dt.timedelta(minutes=1), 60, "%H:%M"),
        Period("day", "last day", schedules.HOUR, dt.timedelta(hours=1), 24, "%H:00"),
        Period("week", "last week", schedules.HOUR, dt.timedelta(hours=1), 24 * 7, "%a %H:00"),
        Period("month", "last month", schedules.HOUR, dt.timedelta(days=1), 30, "%d %b"),
    )
}
DEFAULT_PERIOD = "day"
CUSTOM = "custom"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# A custom range is drawn in minutes up to this long (minute buckets are kept two days), in hours up
# to MAX_HOURLY, in days beyond.
MAX_MINUTELY = dt.timedelta(hours=3)
MAX_HOURLY = dt.timedelta(days=8)


@dataclass(frozen=True)
class Range(Period):
    """A custom time range (the dashboard's from/to): fixed start, whatever `now` is."""

    first: dt.datetime = EPOCH

    def start(self, now: dt.datetime) -> dt.datetime:
        return self.first


def custom_range(since: dt.datetime, until: dt.datetime, now: dt.datetime) -> Range:
    """The buckets that cover [since, until): minutes, hours or days by its length (see MAX_*)."""
    span = until - since
    minute_horizon = now - schedules.stats_kept(schedules.MINUTE)
    if span <= MAX_MINUTELY and since >= minute_horizon:
        resolution, step, label_format = schedules.MINUTE, dt.timedelta(minutes=1), "%d %b %H:%M"
    elif span <= MAX_HOURLY:
        resolution, step, label_format = schedules.HOUR, dt.timedelta(hours=1), "%a %d %H:00"
    else:
        resolution, step, label_format = schedules.HOUR, dt.timedelta(days=1), "%d %b %Y"
    probe = Period(CUSTOM, "", resolution, step, 1, label_format)
    first = probe.floor(since)
    buckets = max(1, -(-(until - first) // step))  # ceiling: the last bucket holds until's moment
    label = (f"{timezone.localtime(first):%Y-%m-%d %H:%M} to "
             f"{timezone.localtime(first + step * buckets):%Y-%m-%d %H:%M}")
    return Range(CUSTOM, label, resolution, step, buckets, label_format, first=first)


def period_of(request: HttpRequest, now: dt.datetime | None = None) -> Period:
    """The period asked for: a named one, or a custom range (?period=custom&since=&until=) that
    DashboardRangeForm accepts; anything else gives the default."""
    name = request.GET.get("period", "")
    if name == CUSTOM:
        form = DashboardRangeForm(request.GET)
        if form.is_valid():
            return custom_range(form.cleaned_data["since"], form.cleaned_data["until"], now or timezone.now())
    return PERIODS.get(name, PERIODS[DEFAULT_PERIOD])


def chartjs_installed() -> bool:
    """Chart.js is served only when scripts/setup.sh installed it (settings.CHARTJS_DIST)."""
    return bool((settings.CHARTJS_DIST / "chart.umd.min.js").is_file())


# --- the figures -----------------------------------------------------------------------------------


def series(period: Period, now: dt.datetime) -> dict[str, Any]:
    """Failures and bans per jail per bucket: {"labels": [...], "jails": [{"name", "failures", "bans"}]}.

    From JailStat alone: its buckets are counted as failures and bans are written (bans.bulk), so
    the newest bucket is as current as the rows themselves."""
    start = period.start(now)
    merged: dict[tuple[str, dt.datetime], tuple[int, int]] = {
        (jail_name, bucket): (failures, bans)
        for jail_name, bucket, failures, bans in JailStat.objects.filter(
            resolution=period.resolution.name, bucket__gte=start, bucket__lt=start + period.step * period.buckets,
        ).values_list("jail_name", "bucket", "failures", "bans")
    }
    counts: dict[str, list[list[int]]] = {}
    for (jail_name, bucket), (failures, bans) in merged.items():
        index = int((bucket - start) / period.step)
        if 0 <= index < period.buckets:
            row = counts.setdefault(jail_name, [[0] * period.buckets, [0] * period.buckets])
            row[0][index] += failures
            row[1][index] += bans
    moments = [timezone.localtime(start + period.step * i) for i in range(period.buckets + 1)]
    labels = [moment.strftime(period.label_format) for moment in moments[:-1]]
    colours = jail_colours(counts)
    jails = [{"name": name, "colour": colours[name], "failures": row[0], "bans": row[1]}
             for name, row in sorted(counts.items())]
    totals = {"failures": sum(sum(row[0]) for row in counts.values()),
              "bans": sum(sum(row[1]) for row in counts.values())}
    # each bar's time range, as the failures and bans lists take it (a click on a bar goes there)
    # with their offset: on the night the clocks go back, an hour's local times happen twice
    edges = [moment.isoformat(timespec="minutes") for moment in moments]
    return {"period": period.name, "labels": labels, "jails": jails, "totals": totals, "edges": edges,
            "failures_url": reverse("failure_list"), "bans_url": reverse("ban_list")}


def jail_colours(shown: Iterable[str]) -> dict[str, str]:
    """A colour per jail that no other jail has: hues a golden angle apart, in three lightnesses,
    taken in the order of every jail's name (so a jail keeps its colour from one period to the next)."""
    names = sorted(set(Jail.objects.values_list("name", flat=True)) | set(shown))
    return {name: colour(index) for index, name in enumerate(names)}


def colour(index: int) -> str:
    hue = (index * 137.508) % 360
    lightness = (42, 58, 32)[(index // 3) % 3]
    return f"hsl({hue:.1f} 65% {lightness}%)"


def banned_per_jail() -> list[dict[str, Any]]:
    rows = (Ban.objects.originals().in_force().values("jail_name")
            .annotate(count=Count("pk")).order_by("-count", "jail_name"))
    return [{"jail": row["jail_name"], "count": row["count"]} for row in rows]


def is_fresh_install() -> bool:
    """Nothing watched and nothing ever recorded: the dashboard explains how to begin instead."""
    return not (Jail.objects.filter(enabled=True).exists() or Failure.objects.exists() or Ban.objects.exists())


def dashboard_context(period: Period, now: dt.datetime, range_form: DashboardRangeForm | None = None) -> dict[str, Any]:
    since = period.start(now)
    until = since + period.step * period.buckets if isinstance(period, Range) else None
    figures = series(period, now)
    figures["banned"] = banned = banned_per_jail()
    return {
        "period": period,
        "periods": PERIODS.values(),
        "range_form": range_form or DashboardRangeForm(initial={
            "since": timezone.localtime(since), "until": timezone.localtime(until or now)}),
        # the range as asked (its rounded edges would be a longer range, maybe drawn in other bars)
        "refresh_query": urlencode({"period": period.name} if not isinstance(period, Range) or range_form is None
                                   else {"period": CUSTOM, "since": range_form.data.get("since", ""),
                                         "until": range_form.data.get("until", "")}),
        "figures": figures,
        "rows": table_rows(figures),
        "banned": banned,
        "top_addresses": tops.top_addresses(since, until=until),
        "top_networks": tops.top_networks(since, until=until),
        "top_users": tops.top_users(since, until=until),
        "latest_bans": Ban.objects.originals().order_by("-started_at", "-pk")[:LATEST_BANS],
        "fresh": is_fresh_install(),
        "enabled_jails": Jail.objects.filter(enabled=True).count(),
        "refresh_seconds": REFRESH_SECONDS,
        "chartjs": chartjs_installed(),
    }


def table_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's figures as table rows (buckets with something in them), for readers without charts."""
    rows = []
    edges = figures["edges"]
    for index, label in enumerate(figures["labels"]):
        cells = [{"jail": jail["name"], "failures": jail["failures"][index], "bans": jail["bans"][index]}
                 for jail in figures["jails"]]
        if any(cell["failures"] or cell["bans"] for cell in cells):
            rows.append({"label": label, "cells": cells, "since": edges[index], "until": edges[index + 1]})
    return rows


# --- the views -------------------------------------------------------------------------------------


@require_GET
@role_required(Role.VIEWER)
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    now = timezone.now()
    range_form = DashboardRangeForm(request.GET) if request.GET.get("period") == CUSTOM else None
    context = dashboard_context(period_of(request, now), now, range_form)
    return render_page_or_partial(request, "bans/dashboard.html", "dashboard-panels", context)


@require_GET
@role_required(Role.VIEWER)
def dashboard_data(request: HttpRequest) -> JsonResponse:
    """The charts' figures as JSON, for scripts and tools (the dashboard page itself carries them in its
    refreshed panels, static/js/dashboard.js)."""
    now = timezone.now()
    data = series(period_of(request, now), now)
    data["banned"] = banned_per_jail()
    return JsonResponse(data)
