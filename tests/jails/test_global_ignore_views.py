"""The global ignore list's page at /jails/ignore/ (every role reads it, operators change it, with htmx
or plain POSTs), its links from the jails pages, and Django admin's form (through jails.changes)."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bans.models import Ban
from jails import changes, ignores, validators
from jails.access.audit import Actor
from jails.forms import JailForm
from jails.models import AuditEntry, GlobalIgnore, Jail
from tests.factories import make_jail

pytestmark = pytest.mark.django_db

PAGE = "/jails/ignore/"
ADD = "/jails/ignore/add/"
REMOVE = "/jails/ignore/remove/"
HTMX = {"HX-Request": "true"}


def listed(*entries: str) -> None:
    changes.add_global_ignored(list(entries), Actor.system())


def stored() -> list[str]:
    return ignores.global_entries()


def live_ban(jail: Jail, network: str) -> Ban:
    return Ban.objects.create(jail=jail, jail_name=jail.name, network=network, family=6 if ":" in network else 4,
                              bantime=3600, state=Ban.State.ACTIVE, expires_at=timezone.now() + dt.timedelta(hours=1))


# --- the page ---------------------------------------------------------------------------------------


def test_a_jail_may_not_be_named_like_the_global_lists_page() -> None:
    form = JailForm(data={"name": "ignore"})

    assert not form.is_valid()
    assert form.errors["name"] == ["'ignore' is reserved by the panel's pages; choose another name."]


def test_a_viewer_reads_the_list_without_change_buttons(viewer: Client) -> None:
    listed("192.0.2.0/24", "admin.example.org")

    response = viewer.get(PAGE)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-entry="192.0.2.0/24"' in html and 'data-entry="admin.example.org"' in html
    assert "never looked up" in html  # a host name protects nothing: the page says so
    assert 'id="global-ignore-add-form"' not in html and "ignore-remove" not in html
    assert 'id="global-ignore-read-only"' in html


def test_a_viewer_may_not_change_the_list(viewer: Client) -> None:
    listed("192.0.2.0/24")

    added = viewer.post(ADD, {"entry": "203.0.113.7"})
    removed = viewer.post(REMOVE, {"entry": "192.0.2.0/24"})

    assert added.status_code == 403 and removed.status_code == 403
    assert stored() == ["192.0.2.0/24"]
    assert AuditEntry.objects.count() == 1  # the fixture's own


def test_an_operator_adds_entries_without_javascript(operator: Client) -> None:
    response = operator.post(ADD, {"entry": "203.0.113.7, ::ffff:198.51.100.0/120"})

    assert response.status_code == 302 and response["Location"].startswith(PAGE)
    assert stored() == ["203.0.113.7", "198.51.100.0/24"]  # IPv4-mapped written as the IPv4 it is
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.username, entry.via) == ("global.ignoreip", "operator-user", "panel")
    page = operator.get(response["Location"]).content.decode()
    assert "Added 203.0.113.7, 198.51.100.0/24 to the global ignore list: every jail ignores them" in page
    assert 'data-entry="203.0.113.7"' in page


def test_an_operator_adds_an_entry_with_htmx_and_gets_the_editor_back(operator: Client) -> None:
    response = operator.post(ADD, {"entry": "203.0.113.7"}, headers=HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="global-ignore-editor">')
    assert 'id="global-ignore-status"' in html and "Added 203.0.113.7" in html
    assert "HX-Request" in response["Vary"]


def test_an_entry_already_listed_is_said_so(operator: Client) -> None:
    listed("203.0.113.0/24")

    html = operator.post(ADD, {"entry": "203.0.113.0/24"}, headers=HTMX).content.decode()

    assert "Already listed: 203.0.113.0/24." in html
    assert AuditEntry.objects.count() == 1


@pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
def test_a_wrong_entry_is_refused_with_the_validators_message(operator: Client, headers: dict[str, str]) -> None:
    response = operator.post(ADD, {"entry": "192.0.2.300"}, headers=headers)

    assert response.status_code == (200 if headers else 400)
    html = response.content.decode()
    assert 'id="id_entry-error"' in html
    assert ("&#x27;192.0.2.300&#x27; is neither an address (192.0.2.1), a network (192.0.2.0/24) nor a host "
            "name.") in html
    assert stored() == [] and not AuditEntry.objects.exists()


def test_an_empty_entry_asks_for_one(operator: Client) -> None:
    blank = operator.post(ADD, {"entry": "  "}, headers=HTMX).content.decode()
    separators = operator.post(ADD, {"entry": ", ,"}, headers=HTMX).content.decode()

    assert "This field is required." in blank and "This field is required." in separators
    assert stored() == []


def test_an_operator_removes_an_entry(operator: Client) -> None:
    listed("192.0.2.0/24", "203.0.113.7")

    response = operator.post(REMOVE, {"entry": "192.0.2.0/24"})
    gone = operator.post(REMOVE, {"entry": "192.0.2.0/24"}, headers=HTMX)

    assert response.status_code == 302 and response["Location"] == PAGE
    assert stored() == ["203.0.113.7"]
    assert "is not in the global ignore list (any more): nothing to remove" in gone.content.decode()
    assert AuditEntry.objects.filter(action="global.ignoreip").count() == 2  # the fixture's add, one removal


def test_an_entry_covering_bans_in_force_names_them_in_every_jail(operator: Client) -> None:
    sshd, web = make_jail("sshd"), make_jail("web")
    live_ban(sshd, "203.0.113.9/32")
    live_ban(web, "203.0.113.0/28")
    live_ban(web, "198.51.100.1/32")  # not covered

    response = operator.post(ADD, {"entry": "203.0.113.0/24"}, follow=True)

    html = response.content.decode()
    assert 'class="message warning ignore-covered"' in html and "(2 bans in force)" in html
    assert "203.0.113.9/32</a> <span class=\"muted\">in sshd" in html
    assert "203.0.113.0/28</a> <span class=\"muted\">in web" in html
    assert "198.51.100.1/32" not in html
    assert "Not unbanned automatically" in html


def test_the_jails_list_and_each_jails_ignore_page_link_to_it(viewer: Client) -> None:
    make_jail("sshd", ignoreip=["198.51.100.7"])
    listed("192.0.2.0/24")

    jails_page = viewer.get(reverse("jail_list")).content.decode()
    jail_page = viewer.get(reverse("jail_ignore", args=["sshd"])).content.decode()

    assert f'href="{PAGE}" id="global-ignore-link"' in jails_page
    assert f'href="{PAGE}" id="global-ignore-link"' in jail_page
    # the jail's page shows what it inherits, read-only
    assert 'id="ignore-global-entries"' in jail_page and 'data-entry="192.0.2.0/24"' in jail_page


# --- Django admin -----------------------------------------------------------------------------------


@pytest.fixture
def admin() -> Client:
    """Django admin's pages are for staff: a superuser, as tests/jails/test_audit_doors.py logs in."""
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "x"))
    return client


def test_django_admin_changes_the_list_through_the_service(admin: Client) -> None:
    listed("192.0.2.0/24")
    url = reverse("admin:jails_globalignore_change", args=[GlobalIgnore.ONLY])

    form = admin.get(url)
    response = admin.post(url, {"entries": "192.0.2.0/24\n203.0.113.7, ::ffff:198.51.100.7"})

    assert form.status_code == 200 and "192.0.2.0/24" in form.content.decode()
    assert response.status_code == 302
    assert stored() == ["192.0.2.0/24", "203.0.113.7", "198.51.100.7"]
    entry = AuditEntry.objects.latest("pk")
    assert (entry.action, entry.via) == ("global.ignoreip", "admin")
    assert entry.before == ["192.0.2.0/24"] and entry.after == ["192.0.2.0/24", "203.0.113.7", "198.51.100.7"]
    assert AuditEntry.objects.filter(via="admin").count() == 1  # the service's entry, not a second one


def test_django_admin_refuses_a_wrong_entry_and_offers_no_deletion(admin: Client) -> None:
    listed("192.0.2.0/24")
    url = reverse("admin:jails_globalignore_change", args=[GlobalIgnore.ONLY])

    response = admin.post(url, {"entries": "192.0.2.0/24 not_a_host!"})
    deletion = admin.get(reverse("admin:jails_globalignore_delete", args=[GlobalIgnore.ONLY]))

    assert response.status_code == 200 and "is neither an address" in response.content.decode()
    assert stored() == ["192.0.2.0/24"]
    assert deletion.status_code == 403
    assert admin.get(reverse("admin:jails_globalignore_add")).status_code == 403  # the one row exists


def test_django_admin_keeps_an_entry_an_operator_added_while_its_form_was_open(admin: Client,
                                                                              operator: Client) -> None:
    listed("192.0.2.1", "192.0.2.2")
    url = reverse("admin:jails_globalignore_change", args=[GlobalIgnore.ONLY])
    loaded = re.search(r'name="loaded" value="([^"]*)"', admin.get(url).content.decode())
    assert loaded is not None

    operator.post(reverse("global_ignore_add"), {"entry": "198.51.100.7"})  # meanwhile, on the panel
    admin.post(url, {"entries": "192.0.2.1\n203.0.113.5", "loaded": html.unescape(loaded.group(1))})

    # the form removed 192.0.2.2 and added 203.0.113.5; the operator's entry stays
    assert stored() == ["192.0.2.1", "198.51.100.7", "203.0.113.5"]


def test_an_operator_is_told_a_host_name_protects_nothing(operator: Client) -> None:
    response = operator.post(reverse("global_ignore_add"), {"entry": "office.example.org"}, follow=True)

    assert b"host names are never looked up here, so they protect nothing" in response.content


@pytest.mark.parametrize("entry", ["0.0.0.0/0", "10.0.0.0/7", "::/0", "2001::/15"])
def test_a_network_that_would_stop_nearly_every_ban_is_refused(operator: Client, entry: str) -> None:
    response = operator.post(reverse("global_ignore_add"), {"entry": entry})

    assert response.status_code == 400 and b"would stop nearly every ban" in response.content
    assert stored() == []


def test_a_list_holds_at_most_its_limit(operator: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validators, "MAX_IGNORE_ENTRIES", 3)
    listed("192.0.2.1", "192.0.2.2")

    response = operator.post(reverse("global_ignore_add"), {"entry": "192.0.2.3 192.0.2.4"})

    assert response.status_code == 400 and b"holds at most 3" in response.content
    assert stored() == ["192.0.2.1", "192.0.2.2"]
