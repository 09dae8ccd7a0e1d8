"""The filter tester in the browser: sshd lines pasted under the built-in sshd filter give their
results as you type (htmx, no button pressed): the blamed host highlighted, the summary's counts,
and the line the filter missed."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from tests.browser.conftest import shot

SSHD_LINES = [
    "Nov 22 03:04:05 web1 sshd[1234]: Invalid user admin from 192.0.2.7 port 4242",
    "Nov 22 03:04:07 web1 sshd[1234]: Failed password for invalid user admin from 192.0.2.7 port 4242 ssh2",
    "Nov 22 03:05:01 web1 sshd[1240]: Accepted publickey for deploy from 198.51.100.4 port 5050 ssh2",
]
TYPED_LINE = "Nov 22 03:06:12 web1 sshd[1301]: Failed password for root from 203.0.113.77 port 6000 ssh2"


@pytest.fixture
def filters(transactional_db: None) -> None:
    call_command("installfilters", verbosity=0)


def summary_counts(page: Page, lines: int, matched: int, missed: int) -> None:
    summary = page.locator("#tester-summary")
    expect(summary.locator(".count-lines")).to_have_text(str(lines))
    expect(summary.locator(".count-matched")).to_have_text(str(matched))
    expect(summary.locator(".count-missed")).to_have_text(str(missed))
    expect(summary.locator(".count-ignored")).to_have_text("0")


def test_it_tests_pasted_sshd_lines_live_as_you_type(filters: None, admin_page: Page) -> None:
    page = admin_page
    page.goto("/filters/")
    page.locator("#tester-link").click()
    expect(page).to_have_url("/filters/test/")
    expect(page.locator("#id_source_0")).to_be_checked()  # a stored filter
    shot(page, "tester-empty")

    # A mark in the page's window: a full page load would wipe it, htmx's swaps keep it.
    page.evaluate("window.stillTheSamePage = true")
    page.locator("#id_filter").select_option("sshd")
    page.locator("#tester-log").fill("\n".join(SSHD_LINES))

    summary_counts(page, lines=3, matched=2, missed=1)
    first = page.locator("#line-1")
    expect(first).to_have_class(re.compile(r"\bline-matched\b"))
    expect(first.locator("code.log-line mark.host")).to_have_text("192.0.2.7")
    expect(first.locator(".host-value")).to_have_text("192.0.2.7")
    expect(first.locator(".regex-index")).to_have_text("failregex 2")
    expect(first.locator("time")).to_contain_text("03:04:05")
    expect(page.locator("#line-2 code.log-line mark.host")).to_have_text("192.0.2.7")
    expect(page.locator("#line-2 .regex-index")).to_have_text("failregex 1")
    missed = page.locator("#line-3")
    expect(missed).to_have_class(re.compile(r"\bline-missed\b"))
    expect(missed.locator("mark.host")).to_have_count(0)
    expect(missed.locator(".host-value")).to_have_count(0)
    shot(page, "tester-pasted")

    # typing one more line, key by key, updates the results without pressing "Test"
    page.locator("#tester-log").press("End")
    page.keyboard.press("Control+End")
    page.locator("#tester-log").press_sequentially("\n" + TYPED_LINE)
    summary_counts(page, lines=4, matched=3, missed=1)
    expect(page.locator("#line-4 code.log-line mark.host")).to_have_text("203.0.113.77")
    expect(page.locator("#line-4 .captured")).to_contain_text("root")  # the user name sshd's filter captures
    assert page.evaluate("window.stillTheSamePage") is True
    expect(page).to_have_url("/filters/test/")
    shot(page, "tester-typed")


def test_on_a_phone_the_lines_keep_their_shape_and_scroll_sideways(filters: None, admin_page: Page) -> None:
    page = admin_page
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/filters/test/")
    page.locator("#id_filter").select_option("sshd")
    page.locator("#tester-log").fill("\n".join(SSHD_LINES * 4))  # 12 lines
    expect(page.locator("#tester-summary .count-lines")).to_have_text("12")
    text = page.locator("#line-1 code.log-line").bounding_box()
    assert text is not None and text["height"] < 30 and text["width"] > 390, text  # one line, not fragments
    page_overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert page_overflow <= 0, f"the page itself is {page_overflow} px too wide"
    wrap_scrolls = page.evaluate("(() => { const w = document.querySelector('.tester-lines-wrap');"
                                 " return w.scrollWidth > w.clientWidth; })()")
    assert wrap_scrolls  # the table scrolls inside its frame
    table = page.locator("#tester-lines").bounding_box()
    assert table is not None and table["height"] / 12 < 150, table  # was ~1,000 px a line at this width
    shot(page, "tester-phone")

