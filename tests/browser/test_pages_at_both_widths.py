"""Pages in a real browser at a desktop's and a phone's width: the panel's own 404 page fits the
screen and offers the ways back, no request for the icon fails, and on a phone every link of the
main nav is in view; the bans list downloads its search."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from bans.models import Ban
from tests.browser.conftest import log_in_as, shot
from tests.factories import make_jail


@pytest.mark.parametrize("width", [1440, 390])
def test_a_missing_page_fits_the_screen_and_offers_the_ways_back(page: Page, transactional_db: None,
                                                                 width: int) -> None:
    failed: list[str] = []
    # a request the browser itself abandoned as the page moved on (the login form's redirect) is no
    # failure of the panel: seen once in CI as favicon.svg "net::ERR_ABORTED"
    page.on("requestfailed", lambda request: None if request.failure == "net::ERR_ABORTED"
            else failed.append(f"{request.url}: {request.failure}"))
    page.on("response", lambda response: failed.append(response.url) if "favicon" in response.url
            and response.status >= 400 else None)
    page.set_viewport_size({"width": width, "height": 800})
    log_in_as(page, "vera", "viewer")
    response = page.goto("/jails/no-such-jail/")
    assert response is not None and response.status == 404
    expect(page.locator("#missing-title")).to_have_text("Not found")
    expect(page.get_by_role("link", name="Jails").last).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{overflow} px wider than a {width} px screen"
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon == "/static/favicon.svg" and page.request.get(icon).ok
    assert not failed, failed
    shot(page, f"error-404-{width}")


def test_on_a_phone_the_nav_folds_into_a_menu_that_shows_every_link(page: Page, transactional_db: None) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    log_in_as(page, "root", "superuser")  # the most links: Import, Users and Django admin too
    page.goto("/")
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    toggle = page.locator("#nav-toggle")
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(links.first).to_be_hidden()
    shot(page, "nav-phone-folded")

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    assert links.count() == 9  # Dashboard, Jails, Filters, Bans, Hosts, Import, Audit, Users, Django admin
    for index in range(links.count()):
        expect(links.nth(index)).to_be_visible()
        box = links.nth(index).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (links.nth(index).text_content(),
                                                                                       box)
    shot(page, "nav-phone-open")
    page.keyboard.press("Escape")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    links.first.wait_for(state="hidden")

    page.set_viewport_size({"width": 1440, "height": 900})  # a wide screen never folds
    expect(toggle).to_be_hidden()
    expect(links.first).to_be_visible()


def test_without_javascript_the_phone_nav_stays_open(nojs_page: Page, transactional_db: None) -> None:
    nojs_page.set_viewport_size({"width": 390, "height": 844})
    log_in_as(nojs_page, "root", "superuser")
    nojs_page.goto("/")
    links = nojs_page.get_by_role("navigation", name="Main").get_by_role("link")
    assert links.count() == 9  # Dashboard, Jails, Filters, Bans, Hosts, Import, Audit, Users, Django admin
    for index in range(links.count()):
        expect(links.nth(index)).to_be_visible()
    expect(nojs_page.locator("#nav-toggle")).to_be_hidden()


@pytest.mark.parametrize("width", [1440, 390])
def test_the_bans_list_downloads_its_search_as_csv(page: Page, transactional_db: None, width: int) -> None:
    jail = make_jail("sshd")
    for last in (7, 8):
        Ban.objects.create(jail=jail, jail_name="sshd", network=f"203.0.113.{last}/32", family=4, bantime=600,
                           started_at=timezone.now() - dt.timedelta(minutes=last), state=Ban.State.ACTIVE)
    page.set_viewport_size({"width": width, "height": 800})
    log_in_as(page, "vera", "viewer")
    page.goto("/bans/?q=203.0.113.7")
    expect(page.locator("#ban-count")).to_have_text("1 ban")
    with page.expect_download() as download_info:
        page.locator("#ban-export-csv").click()
    download = download_info.value
    assert download.suggested_filename.startswith("bans-") and download.suggested_filename.endswith(".csv")
    path = download.path()
    rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    assert rows[0][0] == "network" and [row[0] for row in rows[1:]] == ["203.0.113.7/32"]  # the search, not all
