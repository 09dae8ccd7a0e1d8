"""The filter tester's result list in a real browser, at a desktop's and a phone's width: only the
matched / missed / ignored lines on a click, pages of 200 lines past that, and "Test this draft"
from a filter's edit page opening the tester in a new tab with the unsaved text."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from jails.models import Filter
from tests.browser.conftest import log_in_as, shot

WIDTHS = [1440, 390]
FAILREGEX = r"^login failed from <HOST>$"


@pytest.fixture
def filters(transactional_db: None) -> None:
    call_command("installfilters", verbosity=0)


def no_sideways_scroll(page: Page, width: int) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{overflow} px wider than a {width} px screen"


@pytest.mark.parametrize("width", WIDTHS)
def test_it_lists_one_result_and_pages_a_long_paste(page: Page, filters: None, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    log_in_as(page, "vera", "viewer")
    page.goto("/filters/test/")
    page.locator("label[for=id_source_3]").click()  # raw regexes
    page.locator("#id_failregex").fill(FAILREGEX)
    page.locator("#id_ignoreregex").fill(r"192\.0\.2\.250\b")
    lines = [f"login failed from 192.0.2.{n % 250 + 1}" if n % 3 else f"noise {n}" for n in range(500)]
    page.locator("#tester-log").fill("\n".join(lines))
    expect(page.locator("#tester-summary .count-lines")).to_have_text("500")
    expect(page.locator("#tester-lines tbody tr")).to_have_count(200)
    expect(page.locator("#tester-shown")).to_contain_text("page 1 of 3")
    no_sideways_scroll(page, width)

    page.locator("#tester-show label", has_text="missed").click()
    expect(page.locator("#tester-shown")).to_contain_text("167 missed lines")
    expect(page.locator("#tester-lines tbody tr.line-missed")).to_have_count(167)
    expect(page.locator("#tester-lines tbody tr:not(.line-missed)")).to_have_count(0)
    expect(page.locator("#tester-lines .ignored-reason").first).to_contain_text("no failregex matched")
    shot(page, f"tester-missed-only-{width}")

    page.locator("#tester-show label", has_text="all lines").click()
    expect(page.locator("#tester-shown")).to_contain_text("page 1 of 3")
    page.locator(".tester-pager").last.get_by_role("button", name="3").click()
    expect(page.locator("#tester-shown")).to_contain_text("page 3 of 3")
    expect(page.locator("#tester-lines tbody tr")).to_have_count(100)
    expect(page.locator("#line-401")).to_be_visible()
    expect(page.locator("#tester-summary .count-lines")).to_have_text("500")  # still every line counted
    no_sideways_scroll(page, width)
    shot(page, f"tester-page-3-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_test_this_draft_opens_the_tester_with_the_unsaved_filter(page: Page, filters: None, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    log_in_as(page, "root", "superuser")
    page.goto("/filters/sshd/edit/")
    page.locator("#id_source").fill("[Definition]\nfailregex = ^draft login failed from <HOST>$\n")

    with page.context.expect_page() as opened:
        page.locator("#filter-test-draft").click()
    tester = opened.value
    tester.set_viewport_size({"width": width, "height": 900})
    expect(tester).to_have_url(re.compile(r"/filters/sshd/test/$"))
    expect(tester.locator("#tester-draft")).to_contain_text("the unsaved filter sshd")
    expect(tester.locator("#id_filter_source")).to_have_value(re.compile(r"draft login failed"))
    tester.locator("#tester-log").fill("draft login failed from 192.0.2.7\nsomething else")
    expect(tester.locator("#tester-summary .count-matched")).to_have_text("1")
    no_sideways_scroll(tester, width)
    shot(tester, f"tester-draft-{width}")

    expect(page.locator("#id_source")).to_have_value(re.compile(r"draft login failed"))  # the edit stays open
    assert "draft" not in Filter.objects.get(name="sshd").source
