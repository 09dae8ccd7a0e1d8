"""The dashboard's refresh in the browser: one clock. htmx swaps the panels every refresh_seconds and
the charts, drawn by static/js/dashboard.js (no inline script), are redrawn from the figures the fresh
panels bring. No second timer (setInterval) runs, the JSON endpoint is not polled, nothing is
logged as an error; and without JavaScript the page still shows its figures, rendered by the server.

The refresh interval is shortened to a second for the test (bans.views.REFRESH_SECONDS is read per
request, and the live server runs in this process).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from bans import bulk, views
from bans.models import Ban, Failure
from jails.models import Filter, Jail
from tests.browser.conftest import log_in_as, shot

SOURCE = "[Definition]\nfailregex = ^fail <HOST>$\n"

# Before any script of the page runs: every setInterval call is counted (the dashboard must set none).
COUNT_INTERVALS = """
window.__intervals = [];
const setIntervalOfTheBrowser = window.setInterval;
window.setInterval = function (callback, delay) {
  window.__intervals.push(String(delay));
  return setIntervalOfTheBrowser.apply(this, arguments);
};
"""

CHART_TOTALS = """(id) => {
  const chart = Chart.getChart(document.getElementById(id));
  if (!chart) return null;
  const totals = {};
  for (const dataset of chart.data.datasets) totals[dataset.label] = dataset.data.reduce((a, b) => a + b, 0);
  return {labels: chart.data.labels, totals: totals};
}"""


@pytest.fixture
def quick_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "REFRESH_SECONDS", 1)


@pytest.fixture
def watched(page: Page, transactional_db: None, quick_refresh: None) -> dict[str, list[str]]:
    """A viewer on a dashboard with JavaScript, every request, console error and page error noted (but
    the browser's own look for a /favicon.ico, which the panel has not)."""
    seen: dict[str, list[str]] = {"requests": [], "errors": []}
    page.add_init_script(COUNT_INTERVALS)
    page.on("request", lambda request: seen["requests"].append(request.url))
    page.on("console", lambda message: seen["errors"].append(f"{message.text} {message.location.get('url')}")
            if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico") else None)
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    log_in_as(page, "viewer", "viewer")
    return seen


def make_jail(name: str) -> Jail:
    flt = Filter.objects.get_or_create(name="test-filter", defaults={"source": SOURCE})[0]
    return Jail.objects.create(name=name, filter=flt, enabled=True, maxretry=3, findtime=600, bantime=3600)


def fail(jail: Jail, address: str, count: int) -> None:
    """`count` failures a minute ago, stored and counted in the charts' statistics and tops as the watchers do."""
    when = timezone.now() - dt.timedelta(minutes=1)
    for _ in range(count):
        Failure.objects.create(jail=jail, address=address, time=when, line=f"fail {address}", fields={})
    bulk.add_to_stats(jail.name, [when.timestamp()] * count)
    bulk.add_to_tops(jail.name, [(when.timestamp(), address, None)] * count)


def ban(jail: Jail, network: str) -> None:
    when = timezone.now() - dt.timedelta(minutes=1)
    Ban.objects.create(jail=jail, jail_name=jail.name, network=network, family=4, bantime=3600,
                       started_at=when, state=Ban.State.ACTIVE)
    bulk.add_to_stats(jail.name, ban_times=[when.timestamp()])


def chart(page: Page, canvas_id: str) -> dict[str, Any]:
    found = page.evaluate(CHART_TOTALS, canvas_id)
    assert found is not None, f"no Chart.js chart on #{canvas_id}"
    return dict(found)


def panel_swaps(requests: list[str]) -> int:
    return sum(1 for url in requests if url.endswith("/?period=day"))


def test_the_htmx_swap_alone_refreshes_the_charts(page: Page, watched: dict[str, list[str]]) -> None:
    sshd, nginx = make_jail("sshd"), make_jail("nginx")
    fail(sshd, "203.0.113.9", 2)

    page.goto("/")
    # the chart code is the static file; the only inline script is the figures' JSON, which runs nothing
    expect(page.locator('script[src$="/static/js/dashboard.js"]')).to_have_count(1)
    inline = page.locator("script:not([src])")
    expect(inline).to_have_count(1)
    expect(inline).to_have_attribute("type", "application/json")
    expect(inline).to_have_attribute("id", "dashboard-figures")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('chart-banned'))")
    assert chart(page, "chart-failures")["totals"] == {"sshd": 2}  # a jail with nothing counted has no bars
    assert chart(page, "chart-bans")["totals"] == {"sshd": 0}
    assert chart(page, "chart-banned")["labels"] == []
    expect(page.locator("#total-failures")).to_have_text("2")
    expect(page.locator("#total-bans")).to_have_text("0")

    fail(nginx, "198.51.100.7", 3)
    ban(nginx, "198.51.100.7/32")
    swaps = panel_swaps(watched["requests"])
    # the next swap of the panels brings the new figures, and the charts show them
    expect(page.locator("#panel-latest-bans")).to_contain_text("198.51.100.7")
    page.wait_for_function("() => Chart.getChart(document.getElementById('chart-bans'))"
                           ".data.datasets.some((d) => d.data.some((n) => n > 0))")
    assert panel_swaps(watched["requests"]) > swaps
    assert chart(page, "chart-failures")["totals"] == {"sshd": 2, "nginx": 3}
    assert chart(page, "chart-bans")["totals"] == {"sshd": 0, "nginx": 1}
    banned = chart(page, "chart-banned")
    assert banned["labels"] == ["nginx"] and banned["totals"] == {"banned now": 1}
    expect(page.locator("#total-failures")).to_have_text("5")
    expect(page.locator("#total-bans")).to_have_text("1")
    # the charts are the same objects, updated (not drawn anew over the old ones)
    assert page.evaluate("() => Object.keys(Chart.instances).length") == 3
    shot(page, "dashboard-refreshed")

    # one clock: in 4 s the panels are fetched at most about once a second (a second clock would make
    # it twice; a busy machine may make it less), and the JSON never
    swaps = panel_swaps(watched["requests"])
    page.wait_for_timeout(4000)
    assert 1 <= panel_swaps(watched["requests"]) - swaps <= 5
    assert page.evaluate("() => window.__intervals") == []
    assert not [url for url in watched["requests"] if "/dashboard/data/" in url]
    assert watched["errors"] == []


def test_the_charts_appear_when_the_first_figures_arrive(page: Page, watched: dict[str, list[str]]) -> None:
    sshd = make_jail("sshd")
    page.goto("/")
    expect(page.locator("#period-empty")).to_be_visible()
    # the attribute, not the look: .chart-grid's display: grid outranks [hidden] (panel.css), as before
    expect(page.locator("#chart-area[hidden]")).to_have_count(1)
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('chart-failures'))")

    fail(sshd, "203.0.113.9", 4)
    expect(page.locator("#chart-area:not([hidden])")).to_be_visible()
    expect(page.locator("#period-empty")).to_be_hidden()
    expect(page.locator("#total-failures")).to_have_text("4")
    assert chart(page, "chart-failures")["totals"] == {"sshd": 4}
    assert page.evaluate("() => window.__intervals") == []
    assert watched["errors"] == []


def test_without_javascript_the_figures_are_rendered_by_the_server(
        nojs_page: Page, transactional_db: None, quick_refresh: None) -> None:
    page = nojs_page
    sshd = make_jail("sshd")
    fail(sshd, "203.0.113.9", 4)
    ban(sshd, "203.0.113.9/32")
    log_in_as(page, "viewer", "viewer")
    page.goto("/")
    expect(page.locator("#total-failures")).to_have_text("4")
    expect(page.locator("#total-bans")).to_have_text("1")
    page.locator("#figures-table summary").click()
    expect(page.locator("#figures-table tbody")).to_contain_text("4 / 1")
    expect(page.locator("#panel-banned")).to_contain_text("sshd")
    expect(page.locator("#panel-top-addresses")).to_contain_text("203.0.113.9")
    expect(page.locator("#panel-latest-bans")).to_contain_text("203.0.113.9")
    shot(page, "nojs-dashboard")
