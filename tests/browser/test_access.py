"""Roles in the browser: a viewer reads the bans and jails but is offered no button that changes
anything, and the pages behind those buttons answer with the 403 page, which says why."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from playwright.sync_api import Page, expect

from bans.models import Ban
from tests.browser.conftest import log_in_as, shot
from tests.factories import make_jail


def test_a_viewer_sees_no_ban_buttons_and_gets_the_403_page(page: Page, transactional_db: None) -> None:
    jail = make_jail("sshd")
    ban = Ban.objects.create(jail=jail, jail_name="sshd", network="203.0.113.50/32", family=4, bantime=600,
                             started_at=timezone.now() - dt.timedelta(minutes=1), state=Ban.State.ACTIVE)
    log_in_as(page, "vera", "viewer")

    page.goto("/bans/")
    expect(page.locator(f"tr#ban-{ban.pk}")).to_contain_text("203.0.113.50")
    expect(page.locator("#ban-new")).to_have_count(0)
    expect(page.locator("button.unban")).to_have_count(0)
    expect(page.locator("a.lift-all")).to_have_count(0)
    shot(page, "access-viewer-bans")

    page.goto(f"/bans/{ban.pk}/")
    expect(page.locator("h1")).to_contain_text("203.0.113.50")
    expect(page.locator("#unban-button")).to_have_count(0)
    expect(page.locator("#make-permanent-button")).to_have_count(0)
    shot(page, "access-viewer-ban-detail")

    page.goto("/jails/")
    expect(page.locator("tr.jail-row[data-jail='sshd']")).to_be_visible()
    expect(page.locator("#jail-create-link")).to_have_count(0)
    expect(page.locator("form.jail-toggle")).to_have_count(0)
    expect(page.locator("a.edit-link")).to_have_count(0)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Import")).to_have_count(0)
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)
    shot(page, "access-viewer-jails")

    response = page.goto("/bans/new/")
    assert response is not None and response.status == 403
    expect(page.locator("#denied-title")).to_have_text("Not allowed")
    expect(page.locator("main")).to_contain_text("vera")
    expect(page.locator("main .pill")).to_have_text("viewer")
    expect(page.locator("#denied-reason")).to_have_text("This needs the operator role.")
    expect(page.get_by_role("link", name="Back to the dashboard")).to_be_visible()
    shot(page, "access-403-ban-new")

    response = page.goto("/jails/sshd/edit/")
    assert response is not None and response.status == 403
    expect(page.locator("#denied-title")).to_have_text("Not allowed")
    shot(page, "access-403-jail-edit")
    assert Ban.objects.get(pk=ban.pk).state == Ban.State.ACTIVE


def test_an_operator_may_ban_but_not_edit_jails(page: Page, transactional_db: None) -> None:
    make_jail("sshd")
    log_in_as(page, "otto", "operator")
    page.goto("/bans/")
    expect(page.locator("#ban-new")).to_be_visible()
    page.goto("/jails/")
    expect(page.locator("#jail-create-link")).to_have_count(0)
    response = page.goto("/jails/new/")
    assert response is not None and response.status == 403
    expect(page.locator("main .pill")).to_have_text("operator")
    shot(page, "access-403-operator-jail-new")
