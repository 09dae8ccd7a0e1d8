"""The pages that change things still work with JavaScript off (no htmx): the jail form, the filter
tester and the ban form are plain form POSTs that come back with their results."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from bans.models import Ban
from jails.models import Jail
from tests.browser.conftest import log_in_as, shot

SSHD_LINES = """\
Nov 22 03:04:05 web1 sshd[1234]: Invalid user admin from 192.0.2.7 port 4242
Nov 22 03:05:01 web1 sshd[1240]: Accepted publickey for deploy from 198.51.100.4 port 5050 ssh2
"""


@pytest.fixture
def filters(transactional_db: None) -> None:
    call_command("installfilters", verbosity=0)


def test_the_jail_form_the_tester_and_the_ban_form_work_without_javascript(filters: None, nojs_page: Page) -> None:
    page = nojs_page
    log_in_as(page, "admin", "superuser")
    assert page.evaluate("typeof window.htmx") == "undefined"  # the page's scripts did not run

    # the jail form: an error, then saved
    page.goto("/jails/new/")
    page.locator("#id_name").fill("nojs")
    page.locator("#id_filter").select_option("sshd")
    page.locator("#id_logpath").fill("/var/log/auth.log")
    page.locator("#id_findtime").fill("10x")
    page.locator("#id_bantime").fill("1h")
    page.locator("#jail-save").click()
    expect(page.locator("#id_findtime-error")).to_contain_text("is not a duration")
    shot(page, "nojs-jail-invalid")
    page.locator("#id_findtime").fill("10m")
    page.locator("#jail-save").click()
    expect(page).to_have_url("/jails/nojs/")
    expect(page.locator("#option-findtime")).to_have_text("10m")
    shot(page, "nojs-jail-created")
    assert Jail.objects.filter(name="nojs").exists()

    # the tester: nothing happens while typing; "Test" posts the form and the page shows the results
    page.goto("/filters/test/")
    page.locator("#id_filter").select_option("sshd")
    page.locator("#tester-log").fill(SSHD_LINES)
    expect(page.locator("#tester-summary")).to_have_count(0)
    page.locator("#tester-run").click()
    expect(page.locator("#tester-summary .count-lines")).to_have_text("2")
    expect(page.locator("#tester-summary .count-matched")).to_have_text("1")
    expect(page.locator("#tester-summary .count-missed")).to_have_text("1")
    expect(page.locator("#line-1 mark.host")).to_have_text("192.0.2.7")
    expect(page.locator("#line-2")).to_have_class("line line-missed")
    expect(page.locator("#tester-log")).to_have_value(SSHD_LINES)  # the lines stay for the next try
    shot(page, "nojs-tester")

    # the ban form
    page.goto("/bans/new/")
    page.locator("#id_address").fill("203.0.113.51")
    page.locator("#id_jail").select_option("nojs")
    page.locator("#ban-submit").click()
    ban = Ban.objects.get(network="203.0.113.51/32")
    expect(page).to_have_url(f"/bans/{ban.pk}/")
    expect(page.locator("#unban-button")).to_be_visible()
    page.locator("#unban-button").click()
    expect(page.locator(".messages")).to_contain_text("Lifting the ban of 203.0.113.51/32")
    shot(page, "nojs-ban-lifting")
    assert Ban.objects.get(pk=ban.pk).state == Ban.State.LIFTING
