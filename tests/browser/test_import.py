"""Importing a fail2ban configuration in the browser: a pasted jail.local and an uploaded filter.d
file, previewed (nothing written yet), then applied; the jails appear in the list. A re-upload of
the seed configuration previews only what changed, old -> new, on a desktop and on a phone."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import FilePayload, Page, expect

from jails import importer
from jails.models import AuditEntry, Filter, Jail
from tests.browser.conftest import shot
from tests.jails.builders import stock_tree_with_seed

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


def seed_archive(root: Path) -> FilePayload:
    """The tree as `tar czf fail2ban.tgz -C /etc fail2ban` makes it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(root, arcname="fail2ban")
    return {"name": "fail2ban.tgz", "mimeType": "application/gzip", "buffer": buffer.getvalue()}


@pytest.mark.parametrize("width", [1440, 390])
def test_a_reupload_previews_only_the_real_changes_with_old_and_new(admin_page: Page, tmp_path: Path,
                                                                    width: int) -> None:
    root = stock_tree_with_seed(tmp_path)
    importer.import_tree(root)  # what the admin imported last time
    jail_local = root / "jail.local"
    jail_local.write_text(jail_local.read_text().replace("[sshd]\nenabled = true\n",
                                                         "[sshd]\nenabled = true\nbantime = 2h\n"))
    envscan = root / "filter.d" / "apache-envscan.conf"  # one long regex line: it must not widen a phone
    envscan.write_text(envscan.read_text().replace(r"|.*\.git|", r"|.*\.git|.*\.svn|"))
    page = admin_page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/import/")
    page.locator("#id_archive").set_input_files(files=[seed_archive(root)])
    page.locator("#import-preview-button").click()

    preview = page.locator("#import-preview")
    expect(preview).to_be_visible()
    expect(preview.locator("#import-changes > li")).to_have_count(2)  # not the 117 unchanged ones
    expect(page.locator("#import-unchanged")).to_contain_text("(117)")
    sshd = page.locator("#import-diff-jail-sshd")
    expect(preview.locator("li.change-updated[data-kind=jail][data-name=sshd]")).to_be_visible()
    expect(sshd.locator(".diff-field")).to_have_count(1)
    expect(sshd.locator("[data-field=bantime] dt")).to_have_text("bantime")
    expect(sshd.locator("[data-field=bantime] .diff-old pre")).to_have_text("1h")
    expect(sshd.locator("[data-field=bantime] .diff-new pre")).to_have_text("2h")
    source = page.locator("#import-diff-filter-apache-envscan [data-field=source] .diff-new pre")
    expect(source).to_contain_text(r".*\.svn|")
    page.locator("#import-diff-filter-apache-envscan").scroll_into_view_if_needed()
    shot(page, f"import-reupload-preview-{width}")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a {width} px screen"
    if width == 390:  # the long regex line scrolls inside its own box instead
        assert source.evaluate("(box) => box.scrollWidth > box.clientWidth")
    assert Jail.objects.get(name="sshd").bantime == 3600  # a preview writes nothing

    page.locator("#import-apply").click()
    expect(page).to_have_url("/jails/")
    expect(page.locator(".messages")).to_contain_text("filters 0 created, 1 updated; jails 0 created, 1 updated")
    assert Jail.objects.get(name="sshd").bantime == 7200
    entry = AuditEntry.objects.get(action="config.import")
    assert entry.before is not None and entry.before["jail sshd"] == {"bantime": "1h"}
