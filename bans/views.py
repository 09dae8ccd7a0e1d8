"""Pages of the bans app: the dashboard (here), bans (views_bans), replay (views_replay).

The dashboard's charts read the per-minute and per-hour JailStat counters, which are added to as
failures and bans are written (bans.bulk.add_to_stats), so the newest minute shows at once and a
chart never recounts raw rows. The page refreshes its panels with htmx
and its charts from `dashboard_data` (JSON) every 30 seconds; without JavaScript it is a plain page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from bans import schedules, tops
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


def period_of(request: HttpRequest) -> Period:
    return PERIODS.get(request.GET.get("period", ""), PERIODS[DEFAULT_PERIOD])


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
            resolution=period.resolution.name, bucket__gte=start,
        ).values_list("jail_name", "bucket", "failures", "bans")
    }
    counts: dict[str, list[list[int]]] = {}
    for (jail_name, bucket), (failures, bans) in merged.items():
        index = int((bucket - start) / period.step)
        if 0 <= index < period.buckets:
            row = counts.setdefault(jail_name, [[0] * period.buckets, [0] * period.buckets])
            row[0][index] += failures
            row[1][index] += bans
    labels = [timezone.localtime(start + period.step * i).strftime(period.label_format)
              for i in range(period.buckets)]
    jails = [{"name": name, "failures": row[0], "bans": row[1]} for name, row in sorted(counts.items())]
    totals = {"failures": sum(sum(row[0]) for row in counts.values()),
              "bans": sum(sum(row[1]) for row in counts.values())}
    return {"period": period.name, "labels": labels, "jails": jails, "totals": totals}


def banned_per_jail() -> list[dict[str, Any]]:
    rows = (Ban.objects.in_force().values("jail_name")
            .annotate(count=Count("pk")).order_by("-count", "jail_name"))
    return [{"jail": row["jail_name"], "count": row["count"]} for row in rows]


def is_fresh_install() -> bool:
    """Nothing watched and nothing ever recorded: the dashboard explains how to begin instead."""
    return not (Jail.objects.filter(enabled=True).exists() or Failure.objects.exists() or Ban.objects.exists())


def dashboard_context(period: Period, now: dt.datetime) -> dict[str, Any]:
    since = period.start(now)
    figures = series(period, now)
    figures["banned"] = banned = banned_per_jail()
    return {
        "period": period,
        "periods": PERIODS.values(),
        "figures": figures,
        "rows": table_rows(figures),
        "banned": banned,
        "top_addresses": tops.top_addresses(since),
        "top_networks": tops.top_networks(since),
        "top_users": tops.top_users(since),
        "latest_bans": Ban.objects.order_by("-started_at", "-pk")[:LATEST_BANS],
        "fresh": is_fresh_install(),
        "enabled_jails": Jail.objects.filter(enabled=True).count(),
        "refresh_seconds": REFRESH_SECONDS,
        "chartjs": chartjs_installed(),
    }


def table_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's figures as table rows (buckets with something in them), for readers without charts."""
    rows = []
    for index, label in enumerate(figures["labels"]):
        cells = [(jail["failures"][index], jail["bans"][index]) for jail in figures["jails"]]
        if any(f or b for f, b in cells):
            rows.append({"label": label, "cells": cells})
    return rows


# --- the views -------------------------------------------------------------------------------------


@require_GET
@role_required(Role.VIEWER)
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    context = dashboard_context(period_of(request), timezone.now())
    return render_page_or_partial(request, "bans/dashboard.html", "dashboard-panels", context)


@require_GET
@role_required(Role.VIEWER)
def dashboard_data(request: HttpRequest) -> JsonResponse:
    """The charts' figures as JSON, for scripts and tools (the dashboard page itself carries them in its
    refreshed panels, static/js/dashboard.js)."""
    now = timezone.now()
    data = series(period_of(request), now)
    data["banned"] = banned_per_jail()
    return JsonResponse(data)
