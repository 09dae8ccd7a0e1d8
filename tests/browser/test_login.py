"""Logging in through the real login form, and the wrong password's message."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, make_user, shot


def test_it_sends_an_anonymous_visitor_to_the_login_page(page: Page, transactional_db: None) -> None:
    page.goto("/bans/")
    expect(page).to_have_url("/accounts/login/?next=/bans/")
    shot(page, "login")


def test_it_refuses_a_wrong_password_with_a_message(page: Page, transactional_db: None) -> None:
    make_user("admin", "superuser")
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("form")).to_contain_text("correct username and password")
    shot(page, "login-refused")


def test_it_logs_in_to_the_dashboard(page: Page, transactional_db: None) -> None:
    make_user("admin", "superuser")
    log_in(page, "admin")
    expect(page).to_have_url("/")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Jails")
    shot(page, "dashboard-after-login")
