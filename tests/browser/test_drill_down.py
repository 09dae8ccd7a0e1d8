"""Issue 12's new behaviours in a real browser, each at a desktop's and a phone's width: a click on
a chart's bar opens the failures (or bans) behind it, twenty jails get twenty colours with the
legend below the plot, a custom time range, and the bans list sorted by a column, ticked and
unbanned in one go. Failures are recorded through the application's own service."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import Page, expect

from bans import services
from bans.models import Ban
from jails.models import AuditEntry, Jail
from tests.browser.conftest import log_in_as, shot
from tests.factories import make_jail

WIDTHS = [1440, 390]
LINE = "sshd[77]: Failed password for {user} from {address} port 22 ssh2"

# The page position of a jail's part of a bar, from Chart.js itself (the element's centre).
BAR_POSITION = """([id, dataset, index]) => {
  const canvas = document.getElementById(id);
  const chart = Chart.getChart(canvas);
  const element = chart.getDatasetMeta(dataset).data[index];
  const box = canvas.getBoundingClientRect();
  return {x: box.left + element.x, y: box.top + (element.y + element.base) / 2};
}"""


def record(jail: Jail, addresses: dict[str, int], seconds_ago: float = 30) -> None:
    now = time.time()
    observed = [services.Observed(host=address, time=now - seconds_ago + n * 0.001, fields={"user": "root"},
                                  lines=(LINE.format(user="root", address=address),))
                for address, count in addresses.items() for n in range(count)]
    with transaction.atomic():
        services.record_failures(jail, observed, now=now, own_addresses=[], catching_up=False)


def no_sideways_scroll(page: Page, width: int) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{overflow} px wider than a {width} px screen"


def wait_for_chart(page: Page, canvas_id: str) -> None:
    page.wait_for_function(f"() => window.Chart && Chart.getChart(document.getElementById('{canvas_id}'))")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_click_on_a_jails_part_of_a_bar_opens_its_failures(page: Page, transactional_db: None, width: int) -> None:
    sshd, postfix = make_jail("sshd", maxretry=50), make_jail("postfix", maxretry=50)
    record(sshd, {"203.0.113.9": 3})
    record(postfix, {"198.51.100.7": 4})
    page.set_viewport_size({"width": width, "height": 900})
    log_in_as(page, "vera", "viewer")
    page.goto("/?period=hour")
    wait_for_chart(page, "chart-failures")
    datasets = page.evaluate("() => Chart.getChart(document.getElementById('chart-failures')).data.datasets"
                             ".map((d) => ({label: d.label, data: d.data}))")
    series = next(index for index, dataset in enumerate(datasets) if dataset["label"] == "postfix")
    # the minute the failures fell in (the last bar, or the one before when a minute began meanwhile)
    bar = max(index for index, count in enumerate(datasets[series]["data"]) if count)
    shot(page, f"dashboard-hour-{width}")
    no_sideways_scroll(page, width)

    position = page.evaluate(BAR_POSITION, ["chart-failures", series, bar])
    page.mouse.click(position["x"], position["y"])

    expect(page).to_have_url(re.compile(r"/failures/\?.*jail=postfix"))
    rows = page.locator("#failure-table .failure-row")
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("198.51.100.7")
    expect(page.locator("#failure-table")).not_to_contain_text("203.0.113.9")
    expect(page.locator("#id_jail")).to_have_value("postfix")
    no_sideways_scroll(page, width)
    shot(page, f"failures-from-a-bar-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_twenty_jails_get_twenty_colours_and_the_legend_sits_below(page: Page, transactional_db: None,
                                                                  width: int) -> None:
    for index in range(20):
        record(make_jail(f"jail-{index:02}", maxretry=50), {f"203.0.113.{index + 1}": index + 1})
    page.set_viewport_size({"width": width, "height": 900})
    log_in_as(page, "vera", "viewer")
    page.goto("/")
    wait_for_chart(page, "chart-failures")

    found = page.evaluate("""() => {
      const chart = Chart.getChart(document.getElementById('chart-failures'));
      return {colours: chart.data.datasets.map((d) => d.backgroundColor),
              position: chart.options.plugins.legend.position,
              legend: chart.legend.top, plot: chart.chartArea.bottom, height: chart.height};
    }""")

    assert len(found["colours"]) == 20 == len(set(found["colours"]))
    assert found["position"] == "bottom" and found["legend"] >= found["plot"]
    assert found["plot"] > found["height"] / 3, "the legend took most of the chart"
    no_sideways_scroll(page, width)
    shot(page, f"dashboard-20-jails-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_custom_range_shows_its_bars_and_keeps_it_on_refresh(page: Page, transactional_db: None, width: int) -> None:
    record(make_jail("sshd", maxretry=50), {"203.0.113.9": 2})
    page.set_viewport_size({"width": width, "height": 900})
    log_in_as(page, "vera", "viewer")
    page.goto("/")
    now = timezone.localtime(timezone.now())
    page.locator("#id_since").fill((now - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    page.locator("#id_until").fill((now + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"))
    page.locator("#dashboard-range-show").click()

    expect(page).to_have_url(re.compile(r"period=custom"))
    expect(page.locator("#dashboard-range-label")).to_contain_text("bars of 1m")
    expect(page.locator("#dashboard-range")).to_have_attribute("aria-current", "true")
    expect(page.locator("#total-failures")).to_have_text("2")
    expect(page.locator("#dashboard-panels")).to_have_attribute("hx-get", re.compile(r"period=custom"))
    no_sideways_scroll(page, width)
    shot(page, f"dashboard-custom-range-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_an_operator_sorts_the_bans_ticks_two_and_unbans_them(page: Page, transactional_db: None,
                                                             firewall_requests: list[str], width: int) -> None:
    sshd, web = make_jail("sshd"), make_jail("web")
    now = timezone.now()
    for index, jail in enumerate([web, sshd, sshd]):
        Ban.objects.create(jail=jail, jail_name=jail.name, network=f"203.0.113.{index + 1}/32", family=4,
                           bantime=3600, started_at=now - dt.timedelta(minutes=index + 1),
                           expires_at=now + dt.timedelta(hours=1), state=Ban.State.ACTIVE)
    page.set_viewport_size({"width": width, "height": 900})
    log_in_as(page, "otto", "operator")
    page.goto("/bans/")

    page.locator("a.sort[data-sort=jail]").click()
    expect(page.locator("a.sort[data-sort=jail]").locator("xpath=..")).to_have_attribute("aria-sort", "ascending")
    expect(page.locator("#ban-table tbody tr").first).to_contain_text("sshd")
    page.locator("#ban-table tbody tr", has_text="sshd").locator("input.select-ban").first.check()
    page.locator("#ban-table tbody tr", has_text="web").locator("input.select-ban").check()
    shot(page, f"bans-sorted-ticked-{width}")
    page.locator("#bulk-unban-submit").click()

    expect(page.locator(".messages")).to_contain_text("Lifting 2 bans.")
    expect(page).to_have_url(re.compile(r"sort=jail"))  # back to the list as it was
    assert Ban.objects.filter(state=Ban.State.LIFTING).count() == 2
    assert AuditEntry.objects.filter(action="ban.lift").count() == 2
    no_sideways_scroll(page, width)
    shot(page, f"bans-unbanned-selected-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_bans_list_shows_one_row_per_address_on_request(page: Page, transactional_db: None, width: int) -> None:
    sshd, web = make_jail("sshd"), make_jail("web")
    now = timezone.now()
    for jail, minutes in ((sshd, 30), (web, 10)):
        Ban.objects.create(jail=jail, jail_name=jail.name, network="203.0.113.9/32", family=4, bantime=3600,
                           started_at=now - dt.timedelta(minutes=minutes), expires_at=now + dt.timedelta(hours=1),
                           state=Ban.State.ACTIVE)
    Ban.objects.create(jail=sshd, jail_name="sshd", network="198.51.100.7/32", family=4, bantime=3600,
                       started_at=now - dt.timedelta(minutes=50), state=Ban.State.EXPIRED)
    page.set_viewport_size({"width": width, "height": 900})
    log_in_as(page, "vera", "viewer")
    page.goto("/bans/")

    page.locator("#id_group").select_option("address")
    groups = page.locator("#ban-groups tbody tr")
    expect(groups).to_have_count(2)
    expect(groups.first).to_contain_text("203.0.113.9")
    expect(groups.first.locator("td.num").first).to_have_text("2")
    no_sideways_scroll(page, width)
    shot(page, f"bans-grouped-{width}")

    groups.first.get_by_role("link").click()
    expect(page.locator("#ban-table tbody tr")).to_have_count(2)
