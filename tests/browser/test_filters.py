"""Filters in the browser: the list of the built-in library, searching it, a filter's page, its
tester link, and an edit the engine refuses (nothing saved)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from jails.models import Filter
from tests.browser.conftest import shot


@pytest.fixture
def filters(transactional_db: None) -> None:
    call_command("installfilters", verbosity=0)


def test_it_lists_searches_and_shows_a_filter(filters: None, admin_page: Page) -> None:
    page = admin_page
    page.goto("/filters/")
    table = page.locator("#filter-table")
    for name in ("sshd", "postfix", "recidive", "panel"):
        expect(table.locator(f"tr.filter-row[data-filter='{name}']")).to_be_visible()
    names = table.locator("tr.filter-row").evaluate_all("rows => rows.map((row) => row.dataset.filter)")
    assert names == sorted(names)  # by name, on every database
    # the panel's own jail uses the "panel" filter
    expect(table.locator("tr.filter-row[data-filter='panel'] td.num").nth(1)).to_have_text("1")
    shot(page, "filters-list")

    page.locator("#filter-search").fill("ssh")
    page.locator("#filter-search").press("Enter")
    expect(page).to_have_url("/filters/?q=ssh")
    expect(table.locator("tr.filter-row[data-filter='sshd']")).to_be_visible()
    expect(table.locator("tr.filter-row[data-filter='postfix']")).to_have_count(0)
    shot(page, "filters-search")

    table.locator("tr.filter-row[data-filter='sshd'] td").first.get_by_role("link", name="sshd").click()
    expect(page).to_have_url("/filters/sshd/")
    expect(page.locator("h1")).to_have_text("Filter sshd")
    derived = page.locator("#filter-derived")
    count = len(Filter.objects.get(name="sshd").failregex)
    expect(derived.locator("h3", has_text="failregex")).to_have_text(f"failregex ({count})")
    expect(derived).to_contain_text("Invalid user")
    expect(page.locator("#filter-jails")).to_contain_text("No jail uses this filter.")
    expect(page.locator("#filter-source")).to_contain_text("[Definition]")
    shot(page, "filters-detail-sshd")

    page.locator("#filter-test-link").click()
    expect(page).to_have_url("/filters/sshd/test/")
    expect(page.locator("#id_filter")).to_have_value("sshd")
    shot(page, "filters-tester-for-sshd")


def test_it_refuses_a_filter_edit_the_engine_cannot_read(filters: None, admin_page: Page) -> None:
    page = admin_page
    before = Filter.objects.get(name="sshd").source
    page.goto("/filters/sshd/")
    page.locator("#filter-edit-link").click()
    expect(page).to_have_url("/filters/sshd/edit/")
    expect(page.locator("#id_source")).to_have_value(before)
    shot(page, "filters-edit")

    page.locator("#id_source").fill("[Definition]\nfailregex = ^Failed for (unclosed <HOST>$\n")
    page.locator("#filter-save").click()
    expect(page.locator("#form-errors")).to_contain_text("Nothing was saved")
    expect(page.locator("#id_source-error")).to_be_visible()
    shot(page, "filters-edit-refused")
    assert Filter.objects.get(name="sshd").source == before
