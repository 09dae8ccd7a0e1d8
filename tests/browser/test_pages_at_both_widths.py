"""Pages in a real browser at a desktop's and a phone's width: the panel's own 404 page fits the
screen and offers the ways back, no request for the icon fails, and on a phone every link of the
main nav is in view."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in_as, shot


@pytest.mark.parametrize("width", [1440, 390])
def test_a_missing_page_fits_the_screen_and_offers_the_ways_back(page: Page, transactional_db: None,
                                                                 width: int) -> None:
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
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


def test_on_a_phone_every_link_of_the_nav_is_in_view(page: Page, transactional_db: None) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    log_in_as(page, "root", "superuser")  # the most links: Import, Users and Django admin too
    page.goto("/")
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    assert links.count() == 8
    for index in range(links.count()):
        box = links.nth(index).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (links.nth(index).text_content(),
                                                                                       box)
    shot(page, "nav-phone")
