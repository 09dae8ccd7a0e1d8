"""The dashboard in the browser: its charts drawn by Chart.js from failures and bans recorded through
the application's own services and rolled up by the statistics schedule; and a fresh install's
explanation of how to begin."""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from playwright.sync_api import Page, expect

from bans import services
from bans.models import Ban, JailStat
from jails.models import Jail
from tests.browser.conftest import shot
from tests.factories import make_jail

SSHD_LINE = "Dec  3 10:00:00 web1 sshd[77]: Failed password for {user} from {address} port 22 ssh2"

# What a chart holds, read from Chart.js itself: the chart bound to the canvas, its datasets, and
# whether anything was painted (a pixel that is not transparent).
CHART_OF = """(id) => {
  const canvas = document.getElementById(id);
  const chart = Chart.getChart(canvas);
  if (!chart) return null;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = false;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] !== 0) { painted = true; break; } }
  return {labels: chart.data.labels, painted: painted, width: canvas.width, height: canvas.height,
          datasets: chart.data.datasets.map((d) => ({label: d.label, data: d.data}))};
}"""


def record(jail: Jail, failures: dict[str, list[str]]) -> services.Decision:
    """Failures as a log watcher hands them over ({address: [user names tried]}), a minute ago."""
    now = time.time()
    observed = [
        services.Observed(host=address, time=now - 60 + n, fields={"user": user},
                          lines=(SSHD_LINE.format(user=user, address=address),))
        for address, users in failures.items() for n, user in enumerate(users)
    ]
    with transaction.atomic():
        return services.record_failures(jail, observed, now=now, own_addresses=[], catching_up=False)


def chart(page: Page, canvas_id: str) -> dict[str, Any]:
    found = page.evaluate(CHART_OF, canvas_id)
    assert found is not None, f"no Chart.js chart on #{canvas_id}"
    return dict(found)


def totals(figure: dict[str, Any]) -> dict[str, int]:
    return {dataset["label"]: sum(dataset["data"]) for dataset in figure["datasets"]}


def test_it_draws_the_charts_from_recorded_failures_and_bans(admin_page: Page) -> None:
    page = admin_page
    # sshd bans at 3 failures within findtime: 203.0.113.9 fails 4 times and is banned
    tried = {"203.0.113.9": ["root", "admin", "root", "oracle"], "198.51.100.7": ["pi", "root"]}
    decision = record(make_jail("sshd"), tried)
    assert decision.counted == 6 and [ban.network for ban in decision.bans] == ["203.0.113.9/32"]
    # counted as they were written (bans.bulk.add_to_stats): no rollup needed first
    assert JailStat.objects.filter(jail_name="sshd", failures__gt=0).exists()

    page.goto("/")
    expect(page.locator("#dashboard-empty")).to_have_count(0)
    expect(page.locator("#chart-area")).to_be_visible()
    expect(page.locator("#period-empty")).to_be_hidden()
    expect(page.locator("#total-failures")).to_have_text("6")
    expect(page.locator("#total-bans")).to_have_text("1")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('chart-banned'))")
    failures = chart(page, "chart-failures")
    assert totals(failures) == {"sshd": 6}
    assert len(failures["labels"]) == 24  # the last day, by the hour
    assert failures["painted"] and failures["width"] > 100 and failures["height"] > 100
    assert totals(chart(page, "chart-bans")) == {"sshd": 1}
    banned = chart(page, "chart-banned")
    assert banned["labels"] == ["sshd"] and banned["datasets"][0]["data"] == [1]

    panels = page.locator("#dashboard-panels")
    expect(panels.locator("#panel-top-addresses tbody tr").first).to_contain_text("203.0.113.9")
    expect(panels.locator("#panel-top-addresses tbody tr").first).to_contain_text("4")
    expect(panels.locator("#panel-top-networks")).to_contain_text("203.0.113.0/24")
    expect(panels.locator("#panel-top-users tbody tr").first).to_contain_text("root")
    expect(panels.locator("#panel-top-users tbody tr").first).to_contain_text("3")
    expect(panels.locator("#panel-banned")).to_contain_text("sshd")
    expect(panels.locator("#panel-latest-bans")).to_contain_text("203.0.113.9")
    expect(panels.locator("#panel-latest-bans .badge.state-pending")).to_be_visible()
    shot(page, "dashboard-charts-day")

    page.locator("#dashboard-periods a[data-period=hour]").click()
    expect(page).to_have_url("/?period=hour")
    expect(page.locator("#dashboard-periods a[data-period=hour]")).to_have_attribute("aria-current", "true")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('chart-failures'))")
    failures = chart(page, "chart-failures")
    assert totals(failures) == {"sshd": 6}
    assert len(failures["labels"]) == 60  # the last hour, by the minute
    shot(page, "dashboard-charts-hour")
    assert Ban.objects.count() == 1


def test_it_explains_how_to_begin_on_a_fresh_install(admin_page: Page) -> None:
    page = admin_page
    page.goto("/")
    empty = page.locator("#dashboard-empty")
    expect(empty).to_contain_text("Nothing is being watched yet")
    expect(empty.get_by_role("link", name="Enable a jail")).to_have_attribute("href", "/jails/")
    expect(empty.get_by_role("link", name="Import your fail2ban configuration")).to_have_attribute("href", "/import/")
    expect(page.locator("canvas")).to_have_count(0)
    shot(page, "dashboard-fresh-install")
