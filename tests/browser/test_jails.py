"""Jails in the browser: create one through the form (a validation error first, then fixed), edit it,
see the new value on its page, disable and enable it from the list (htmx) and from its page."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from jails.models import Jail
from tests.browser.conftest import shot


@pytest.fixture
def filters(transactional_db: None) -> None:
    """The built-in filter library (sshd...), as scripts/run.sh installs it."""
    call_command("installfilters", verbosity=0)


def fill_new_jail(page: Page, *, maxretry: str, findtime: str) -> None:
    page.locator("#id_name").fill("ssh-browser")
    page.locator("#id_filter").select_option(label="sshd")
    page.locator("#id_logpath").fill("/var/log/auth.log")
    page.locator("#id_maxretry").fill(maxretry)
    page.locator("#id_findtime").fill(findtime)
    page.locator("#id_bantime").fill("1h")


def test_it_creates_a_jail_after_a_validation_error_then_edits_and_toggles_it(filters: None, admin_page: Page) -> None:
    page = admin_page
    page.goto("/jails/")
    shot(page, "jails-list-before")
    page.locator("#jail-create-link").click()
    expect(page).to_have_url("/jails/new/")
    expect(page.locator("#jail-form")).to_be_visible()
    shot(page, "jails-new")

    # wrong first: no failure count, and a duration fail2ban cannot read
    fill_new_jail(page, maxretry="0", findtime="ten minutes")
    page.locator("#jail-save").click()
    expect(page.locator("#form-errors")).to_contain_text("Nothing was saved")
    expect(page.locator("#form-errors li")).to_have_count(2)
    expect(page.locator("#form-errors")).to_be_focused()  # at the top, where the eye and the keyboard are
    page.locator("#form-errors a[href='#id_findtime']").click()
    expect(page.locator("#id_findtime")).to_be_in_viewport()
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "jails-new-errors")
    expect(page.locator("#id_findtime-error")).to_contain_text("is not a duration")
    expect(page.locator("#id_maxretry-error")).to_be_visible()
    # what was typed is kept for correcting
    expect(page.locator("#id_name")).to_have_value("ssh-browser")
    expect(page.locator("#id_findtime")).to_have_value("ten minutes")
    shot(page, "jails-new-invalid")
    assert not Jail.objects.filter(name="ssh-browser").exists()

    page.locator("#id_maxretry").fill("3")
    page.locator("#id_findtime").fill("10m")
    page.locator("#jail-save").click()
    expect(page).to_have_url("/jails/ssh-browser/")
    expect(page.locator(".messages")).to_contain_text("Jail ssh-browser created")
    expect(page.locator("#option-maxretry")).to_have_text("3")
    expect(page.locator("#option-findtime")).to_have_text("10m")
    expect(page.locator("#option-bantime")).to_have_text("1h")
    expect(page.locator("#jail-state")).to_have_text("disabled")
    shot(page, "jails-detail-created")

    page.locator("#jail-edit-link").click()
    expect(page).to_have_url("/jails/ssh-browser/edit/")
    expect(page.locator("#id_name")).to_be_disabled()  # renaming is not offered
    expect(page.locator("#id_bantime")).to_have_value("1h")
    shot(page, "jails-edit")
    page.locator("#id_bantime").fill("2h")
    page.locator("#jail-save").click()
    expect(page).to_have_url("/jails/ssh-browser/")
    expect(page.locator("#option-bantime")).to_have_text("2h")
    shot(page, "jails-detail-edited")
    assert Jail.objects.get(name="ssh-browser").bantime == 7200

    # enable from its own page (plain form POST, back to the page)
    page.locator("#jail-toggle-form button").click()
    expect(page.locator("#jail-state")).to_have_text("enabled")
    shot(page, "jails-detail-enabled")

    # disable from the list: htmx swaps the row in place
    page.goto("/jails/")
    row = page.locator("tr.jail-row[data-jail='ssh-browser']")
    expect(row).to_have_class(re.compile(r"\bis-enabled\b"))
    row.locator("button.toggle-button").click()
    expect(row).to_have_class(re.compile(r"\bis-disabled\b"))
    expect(row.locator(".jail-state")).to_have_text("disabled")
    expect(row.locator("button.toggle-button")).to_have_text("Enable")
    expect(row.locator("[role=status]")).to_contain_text("applies within seconds")
    expect(page).to_have_url("/jails/")  # swapped in place, no page load
    shot(page, "jails-list-toggled")
    assert Jail.objects.get(name="ssh-browser").enabled is False

    row.locator("button.toggle-button").click()
    expect(row.locator(".jail-state")).to_have_text("enabled")
    assert Jail.objects.get(name="ssh-browser").enabled is True
