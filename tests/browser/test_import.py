"""Importing a fail2ban configuration in the browser: a pasted jail.local and an uploaded filter.d
file, previewed (nothing written yet), then applied; the jails appear in the list."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.sync_api import FilePayload, Page, expect

from jails.models import Filter, Jail
from tests.browser.conftest import shot

JAIL_LOCAL = """\
[myapp]
enabled = true
filter = myapp
logpath = /var/log/myapp.log
maxretry = 4
findtime = 15m
bantime = 2h
port = http,https

[sshd]
enabled = true
port = ssh
logpath = /var/log/auth.log
action = nftables-multiport[name=sshd, port=ssh]
         sendmail-whois[name=sshd, dest=root]

[dovecot]
enabled = false
logpath = /var/log/mail.log
"""
MYAPP_FILTER = b"""\
[Definition]
failregex = ^<HOST> - login failed for user \\S+$
ignoreregex =
"""


@pytest.fixture
def filters(transactional_db: None) -> None:
    call_command("installfilters", verbosity=0)


def test_it_previews_then_applies_an_upload(filters: None, admin_page: Page) -> None:
    page = admin_page
    page.goto("/import/")
    shot(page, "import-empty")
    page.locator("#id_jail_local").fill(JAIL_LOCAL)
    upload: FilePayload = {"name": "myapp.conf", "mimeType": "text/plain", "buffer": MYAPP_FILTER}
    page.locator("#id_filter_files").set_input_files(files=[upload])
    page.locator("#import-preview-button").click()

    preview = page.locator("#import-preview")
    expect(preview).to_be_visible()
    expect(preview).to_contain_text("filter.d/myapp.conf")
    counts = page.locator("#import-counts")
    expect(counts.locator("tr", has_text="filters").locator("td").first).to_have_text("1")
    expect(counts.locator("tr", has_text="jails").locator("td").first).to_have_text("2")
    expect(preview.locator("li.change-created[data-kind=jail][data-name=myapp]")).to_be_visible()
    expect(preview.locator("li.change-created[data-kind=jail][data-name=sshd]")).to_be_visible()
    expect(preview.locator("li.change-created[data-kind=filter][data-name=myapp]")).to_be_visible()
    expect(preview.locator(".import-skipped")).to_contain_text("dovecot")  # disabled in jail.local
    expect(preview.locator(".import-notes")).to_contain_text("action sendmail-whois is not run")
    shot(page, "import-preview")
    assert not Jail.objects.filter(name__in=["myapp", "sshd"]).exists()  # a preview writes nothing
    assert not Filter.objects.filter(name="myapp").exists()

    page.locator("#import-apply").click()
    expect(page).to_have_url("/jails/")
    expect(page.locator(".messages")).to_contain_text("filters 1 created, 0 updated; jails 2 created")
    expect(page.locator("tr.jail-row[data-jail=myapp]")).to_have_class("jail-row is-enabled")
    expect(page.locator("tr.jail-row[data-jail=sshd]")).to_be_visible()
    expect(page.locator("tr.jail-row[data-jail=dovecot]")).to_have_count(0)
    shot(page, "import-applied-jails")
    myapp = Jail.objects.get(name="myapp")
    assert (myapp.maxretry, myapp.findtime, myapp.bantime, myapp.filter.name) == (4, 900, 7200, "myapp")
