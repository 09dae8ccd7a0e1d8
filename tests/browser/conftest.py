"""Browser tests: Playwright drives Debian's chromium (/usr/bin/chromium, nothing downloaded)
against pytest-django's live server, on the test database.

Every page a test visits is saved as a screenshot under var/screenshots/ (`shot`), so a run can be
looked at afterwards. The tests are marked `browser`; they run in the README's test command.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

# Playwright's sync API runs an event loop in this thread; the live server and the test's own ORM
# calls are still plain synchronous Django, which refuses to run next to a loop unless told.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "correct-horse-battery-9"
# Generous waits: the machine running the suite may be busy (two cores, other test runs). Pages
# and actions wait up to this long (new_context), and so do expect()'s assertions.
TIMEOUT_MS = 10_000
expect.set_options(timeout=TIMEOUT_MS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh --dev installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield browser
        browser.close()


def new_context(browser: Browser, live_server: LiveServer, java_script_enabled: bool | None = None) -> BrowserContext:
    # (None is Playwright's default: it leaves the option out)
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=str(live_server),
                                  java_script_enabled=java_script_enabled)
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
def page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    context = new_context(browser, live_server)
    yield context.new_page()
    context.close()


@pytest.fixture
def nojs_page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    """A browser with JavaScript off: htmx does nothing, forms are plain POSTs."""
    context = new_context(browser, live_server, java_script_enabled=False)
    yield context.new_page()
    context.close()


@pytest.fixture(autouse=True)
def firewall_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No firewall worker runs in browser tests: the panel's requests to one (sent to Redis once a
    ban or an unban commits) are kept here instead, so a test run never queues work for a real
    worker of this machine. Bans therefore stay in the state the panel gave them (pending, lifting)."""
    from bans import services

    sent: list[str] = []
    monkeypatch.setattr(services.FirewallSyncRequest, "__call__", lambda self: sent.append(self.host))
    return sent


def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as var/screenshots/NAME.png (a name per visited page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^a-z0-9_-]+', '-', name.lower())}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def make_user(username: str, role: str | None) -> User:
    """A user with the given role group (viewer/operator/admin); "superuser" makes a superuser."""
    if role == "superuser":
        return User.objects.create_superuser(username, f"{username}@example.org", PASSWORD)
    user = User.objects.create_user(username, f"{username}@example.org", PASSWORD)
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def log_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def log_in_as(page: Page, username: str, role: str | None) -> User:
    user = make_user(username, role)
    log_in(page, username)
    return user


@pytest.fixture
def admin_page(page: Page, transactional_db: None) -> Page:
    log_in_as(page, "admin", "superuser")
    return page
