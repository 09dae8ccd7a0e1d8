"""Bans by hand in the browser: the admin's own address is refused with the reason, then another
address is banned in a jail and unbanned from the list.

No firewall worker runs here: a new ban waits as "pending" under the page's warning that no worker
has reported. The test then does the worker's job itself, with the in-memory backend the bans
tests use instead of nftables (bans.firewall.recording.RecordingBackend), to see the ban become active and,
after the unban, lifted.
"""

from __future__ import annotations

import ipaddress
import re

from playwright.sync_api import Page, expect
from pytest_django.fixtures import Settings

from bans import sync
from bans.firewall.recording import RecordingBackend
from bans.models import Ban
from bans.status import StatusBackend
from tests.browser.conftest import shot
from tests.factories import make_jail

ADDRESS = "203.0.113.50"


def act_as_the_firewall_worker(backend: RecordingBackend) -> None:
    """What the firewall worker's sync_firewall task does, against the in-memory firewall."""
    report = sync.apply_pending("local", StatusBackend(backend, "local"))
    assert report.error is None


def test_it_refuses_the_admins_own_address_then_bans_and_unbans_another(
        admin_page: Page, firewall_requests: list[str]) -> None:
    page = admin_page
    make_jail("sshd")
    page.goto("/bans/")
    expect(page.locator("#ban-empty")).to_be_visible()
    shot(page, "bans-list-empty")

    page.locator("#ban-new").click()
    expect(page).to_have_url("/bans/new/")
    # the live server sees the browser coming from loopback, and the form says so
    expect(page.locator("#client-address")).to_have_text("127.0.0.1")
    shot(page, "bans-new")

    page.locator("#id_address").fill("127.0.0.1")
    page.locator("#id_jail").select_option("sshd")
    page.locator("#ban-submit").click()
    # 127.0.0.1 is the browser's address here and also this host's: the guard names the latter
    expect(page.locator("#ban-form-errors")).to_contain_text("refused: 127.0.0.1/32 contains 127.0.0.1")
    expect(page.locator("#id_address")).to_have_value("127.0.0.1")
    shot(page, "bans-new-refused-own-address")
    assert not Ban.objects.exists()
    assert firewall_requests == []

    page.locator("#id_address").fill(ADDRESS)
    page.locator("#id_jail").select_option("sshd")
    page.locator("#id_duration").fill("1h")
    page.locator("#id_reason").fill("seen probing in another log")
    page.locator("#ban-submit").click()
    expect(page).to_have_url(re.compile(r"/bans/\d+/$"))  # htmx posts the form, then redirects the page
    ban = Ban.objects.get(network=f"{ADDRESS}/32")
    expect(page).to_have_url(f"/bans/{ban.pk}/")
    expect(page.locator(".messages")).to_contain_text(f"{ADDRESS}/32 banned in sshd")
    expect(page.locator(".badge.state-pending").first).to_have_text("pending")
    # nothing has told the panel a worker is applying bans: it says so rather than pretend
    expect(page.locator("#firewall-warning")).to_contain_text("no firewall worker has reported yet")
    shot(page, "bans-detail-pending")
    assert firewall_requests == ["local"]
    assert (ban.jail_name, ban.bantime, ban.origin) == ("sshd", 3600, Ban.Origin.USER)

    page.goto("/bans/")
    row = page.locator(f"tr#ban-{ban.pk}")
    expect(page.locator("#ban-count")).to_have_text("1 ban")
    expect(row).to_contain_text(ADDRESS)
    expect(row).to_contain_text("sshd")
    expect(row.locator(".badge.state-pending")).to_be_visible()
    shot(page, "bans-list-pending")

    firewall = RecordingBackend()
    act_as_the_firewall_worker(firewall)
    page.reload()
    expect(row.locator(".badge.state-active")).to_have_text("active")
    expect(page.locator("#firewall-warning")).to_have_count(0)
    shot(page, "bans-list-active")

    row.locator(f"button.unban[data-ban='{ban.pk}']").click()
    expect(page).to_have_url("/bans/")  # back to the list it came from
    expect(page.locator(".messages")).to_contain_text(f"Lifting the ban of {ADDRESS}/32 in sshd")
    expect(row.locator(".badge.state-lifting")).to_have_text("lifting")
    expect(row.locator("button.unban")).to_have_count(0)
    shot(page, "bans-list-lifting")
    assert firewall_requests == ["local", "local"]

    act_as_the_firewall_worker(firewall)
    page.goto(f"/bans/{ban.pk}/")
    expect(page.locator(".badge.state-lifted").first).to_have_text("lifted")
    expect(page.locator("#unban-button")).to_have_count(0)
    shot(page, "bans-detail-lifted")
    added = [call for call in firewall.calls if call[0] == "apply"]
    assert len(added) == 2  # the ban added, then removed


def test_it_refuses_a_network_holding_the_admins_address_behind_a_proxy(
        admin_page: Page, settings: Settings, firewall_requests: list[str]) -> None:
    """Behind a trusted reverse proxy the admin's own address is the one the proxy forwards: an
    address of no interface of this host, refused because it is the person's own."""
    page = admin_page
    make_jail("sshd")
    settings.IPS_TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.0/8")]
    page.set_extra_http_headers({"X-Forwarded-For": "198.51.100.23"})  # as the proxy appends it

    page.goto("/bans/new/")
    expect(page.locator("#client-address")).to_have_text("198.51.100.23")
    page.locator("#id_address").fill("198.51.100.0/24")
    page.locator("#id_jail").select_option("sshd")
    page.locator("#ban-submit").click()
    expect(page.locator("#ban-form-errors")).to_have_text(
        "refused: 198.51.100.0/24 contains 198.51.100.23, your own address")
    shot(page, "bans-new-refused-behind-proxy")
    assert not Ban.objects.exists()
    assert firewall_requests == []
