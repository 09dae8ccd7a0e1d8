"""The global ignore list in a real browser, at a desktop's and a phone's width: an operator reaches it
from the jails list, adds an entry (htmx swaps the editor in place) that covers a ban in force and is
told so, a wrong entry is refused with the validator's message; a viewer reads the list without a way to
change it. Neither page scrolls sideways."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer

from bans.models import Ban
from jails import ignores
from tests.browser.conftest import log_in_as, new_context, shot
from tests.factories import make_jail

OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


def fits(page: Page, width: int) -> None:
    overflow = page.evaluate(OVERFLOW)
    assert overflow <= 0, f"{overflow} px wider than a {width} px screen"


@pytest.mark.parametrize("width", [1440, 390])
def test_an_operator_adds_an_entry_and_a_viewer_reads_it(page: Page, browser: Browser, live_server: LiveServer,
                                                         transactional_db: None, width: int) -> None:
    jail = make_jail("sshd")
    Ban.objects.create(jail=jail, jail_name="sshd", network="203.0.113.9/32", family=4, bantime=3600,
                       state=Ban.State.ACTIVE, expires_at=timezone.now() + dt.timedelta(hours=1))
    page.set_viewport_size({"width": width, "height": 860})
    log_in_as(page, "olga", "operator")

    page.goto("/jails/")
    page.locator("#global-ignore-link").click()
    expect(page).to_have_url("/jails/ignore/")
    expect(page.locator("#global-ignore-empty")).to_be_visible()
    fits(page, width)

    page.locator("#id_entry").fill("not a host!")
    page.locator("#global-ignore-add").click()
    expect(page.locator("#id_entry-error")).to_contain_text("is neither an address")

    page.locator("#id_entry").fill("203.0.113.0/24")
    page.locator("#global-ignore-add").click()
    expect(page.locator("#global-ignore-status")).to_contain_text("Added 203.0.113.0/24 to the global ignore list")
    expect(page.locator("#global-ignore-entries li[data-entry='203.0.113.0/24']")).to_be_visible()
    covered = page.locator(".ignore-covered[data-entry='203.0.113.0/24']")
    expect(covered).to_contain_text("covers addresses banned now (1 ban in force)")
    expect(covered.locator("a.covered-ban")).to_have_text("203.0.113.9/32")
    expect(page).to_have_url("/jails/ignore/")  # swapped in place, no page load
    assert ignores.global_entries() == ["203.0.113.0/24"]
    fits(page, width)
    shot(page, f"global-ignore-operator-{width}")

    viewer_context = new_context(browser, live_server)
    try:
        viewer = viewer_context.new_page()
        viewer.set_viewport_size({"width": width, "height": 860})
        log_in_as(viewer, "vera", "viewer")
        viewer.goto("/jails/sshd/ignore/")
        expect(viewer.locator("#ignore-global-entries li[data-entry='203.0.113.0/24']")).to_be_visible()
        viewer.locator("#global-ignore-edit").click()
        expect(viewer).to_have_url("/jails/ignore/")
        expect(viewer.locator("#global-ignore-entries li[data-entry='203.0.113.0/24']")).to_be_visible()
        expect(viewer.locator("#global-ignore-read-only")).to_be_visible()
        expect(viewer.locator("#global-ignore-add-form")).to_have_count(0)
        expect(viewer.locator(".ignore-remove")).to_have_count(0)
        fits(viewer, width)
        shot(viewer, f"global-ignore-viewer-{width}")
    finally:
        viewer_context.close()
