"""A jail's ignore list page: every role reads it, operators add and remove entries (audited)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bans.models import Ban
from jails.models import AuditEntry, Jail
from tests.factories import LOGIN_FAILED_SOURCE, make_filter, make_jail

pytestmark = pytest.mark.django_db



@pytest.fixture
def jail() -> Jail:
    return make_jail("app", flt=make_filter("app", LOGIN_FAILED_SOURCE), logpath=["/var/log/app.log"],
                     ignoreip=["192.0.2.0/24", "admin.example.org"])


def url(name: str = "app") -> str:
    return reverse("jail_ignore", args=[name])


def ban(network: str, jail: Jail, state: str = Ban.State.ACTIVE) -> Ban:
    return Ban.objects.create(jail=jail, jail_name=jail.name, network=network, family=6 if ":" in network else 4,
                              bantime=3600, state=state, expires_at=timezone.now() + dt.timedelta(hours=1))


def test_it_shows_the_list_and_ignoreself_to_a_viewer_without_change_buttons(viewer: Client, jail: Jail) -> None:
    response = viewer.get(url())

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-entry="192.0.2.0/24"' in html and 'data-entry="admin.example.org"' in html
    assert 'id="ignoreself-value">yes<' in html
    assert 'id="ignore-add-form"' not in html and "ignore-remove" not in html
    assert "within seconds" in html


def test_a_viewer_may_not_change_the_list(viewer: Client, jail: Jail) -> None:
    added = viewer.post(url(), {"action": "add", "entry": "203.0.113.7"})
    removed = viewer.post(url(), {"action": "remove", "entry": "192.0.2.0/24"})

    assert added.status_code == 403 and removed.status_code == 403
    jail.refresh_from_db()
    assert jail.ignoreip == ["192.0.2.0/24", "admin.example.org"]
    assert not AuditEntry.objects.exists()


def test_an_operator_adds_an_entry_and_it_is_audited(operator: Client, jail: Jail) -> None:
    stamp = jail.updated_at

    response = operator.post(url(), {"action": "add", "entry": "203.0.113.7"})

    assert response.status_code == 302 and response["Location"].startswith(url())
    jail.refresh_from_db()
    assert jail.ignoreip == ["192.0.2.0/24", "admin.example.org", "203.0.113.7"]
    assert jail.updated_at > stamp  # how the log followers notice the change
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.object_repr, entry.username) == ("jail.ignoreip", "app", "operator-user")
    assert entry.before == ["192.0.2.0/24", "admin.example.org"]
    assert entry.after == ["192.0.2.0/24", "admin.example.org", "203.0.113.7"]
    page = operator.get(response["Location"]).content.decode()
    assert "Added 203.0.113.7" in page and "within seconds" in page


def test_an_operator_removes_an_entry_and_it_is_audited(operator: Client, jail: Jail) -> None:
    response = operator.post(url(), {"action": "remove", "entry": "admin.example.org"})

    assert response.status_code == 302 and response["Location"] == url()
    jail.refresh_from_db()
    assert jail.ignoreip == ["192.0.2.0/24"]
    entry = AuditEntry.objects.get()
    assert entry.action == "jail.ignoreip" and entry.after == ["192.0.2.0/24"]


def test_removing_an_entry_that_is_gone_changes_nothing(operator: Client, jail: Jail) -> None:
    operator.post(url(), {"action": "remove", "entry": "203.0.113.7"})

    jail.refresh_from_db()
    assert jail.ignoreip == ["192.0.2.0/24", "admin.example.org"]
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("entry", ["not an address!", "10.1", "192.0.2.300", "-bad-.example", ""])
def test_it_refuses_an_invalid_entry_with_the_reason(operator: Client, jail: Jail, entry: str) -> None:
    response = operator.post(url(), {"action": "add", "entry": entry})

    assert response.status_code == 400
    assert 'id="id_entry-error"' in response.content.decode()
    jail.refresh_from_db()
    assert jail.ignoreip == ["192.0.2.0/24", "admin.example.org"]
    assert not AuditEntry.objects.exists()


def test_it_validates_and_writes_entries_as_the_jail_form_does(operator: Client, jail: Jail) -> None:
    # the lockout guard compares IPv4 with IPv4: a mapped entry is written as the IPv4 it is
    operator.post(url(), {"action": "add", "entry": "::ffff:198.51.100.7, ::ffff:10.0.0.0/104 2001:db8::/32 host.lan"})

    jail.refresh_from_db()
    assert jail.ignoreip[2:] == ["198.51.100.7", "10.0.0.0/8", "2001:db8::/32", "host.lan"]


def test_it_does_not_list_an_entry_twice(operator: Client, jail: Jail) -> None:
    response = operator.post(url(), {"action": "add", "entry": "192.0.2.0/24"}, follow=True)

    jail.refresh_from_db()
    assert jail.ignoreip == ["192.0.2.0/24", "admin.example.org"]
    assert "Already listed: 192.0.2.0/24" in response.content.decode()
    assert not AuditEntry.objects.exists()


def test_htmx_gets_only_the_editor_back(operator: Client, jail: Jail) -> None:
    response = operator.post(url(), {"action": "add", "entry": "203.0.113.7"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="ignore-editor">') and "<html" not in html
    assert 'data-entry="203.0.113.7"' in html and 'id="ignore-status"' in html
    assert AuditEntry.objects.get().action == "jail.ignoreip"


def test_htmx_gets_an_invalid_entry_back_in_the_editor(operator: Client, jail: Jail) -> None:
    response = operator.post(url(), {"action": "add", "entry": "nope!"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200  # htmx swaps only successful answers
    assert 'id="id_entry-error"' in response.content.decode()
    assert not AuditEntry.objects.exists()


def test_htmx_removes_an_entry(operator: Client, jail: Jail) -> None:
    response = operator.post(url(), {"action": "remove", "entry": "192.0.2.0/24"}, HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert 'data-entry="192.0.2.0/24"' not in html and "Removed 192.0.2.0/24" in html


def test_adding_an_entry_that_covers_a_banned_address_points_to_the_ban(operator: Client, jail: Jail) -> None:
    covered = ban("203.0.113.9/32", jail)
    ban("203.0.113.10/32", jail, state=Ban.State.EXPIRED)  # not in force: not named
    other_jail = Jail.objects.create(name="web", filter=jail.filter, logpath=["/var/log/web.log"])
    ban("203.0.113.11/32", other_jail)  # another jail's ban: this entry does not touch it

    response = operator.post(url(), {"action": "add", "entry": "203.0.113.0/24"}, follow=True)

    html = response.content.decode()
    assert reverse("ban_detail", args=[covered.pk]) in html
    assert "covers addresses banned now in app (1 ban in force)" in html and "Not unbanned automatically" in html
    assert "203.0.113.10/32" not in html and "203.0.113.11/32" not in html
    covered.refresh_from_db()
    assert covered.state == Ban.State.ACTIVE  # never unbanned by the page


def test_htmx_also_names_the_covered_bans(operator: Client, jail: Jail) -> None:
    covered = ban("2001:db8::1/128", jail)

    response = operator.post(url(), {"action": "add", "entry": "2001:db8::/32"}, HTTP_HX_REQUEST="true")

    assert reverse("ban_detail", args=[covered.pk]) in response.content.decode()


def test_the_jail_pages_link_to_the_ignore_list(viewer: Client, operator: Client, jail: Jail) -> None:
    assert f'href="{url()}"' in viewer.get(reverse("jail_detail", args=["app"])).content.decode()
    assert 'class="ignore-link"' in operator.get(reverse("jail_list")).content.decode()
    assert 'class="ignore-link"' not in viewer.get(reverse("jail_list")).content.decode()


def test_an_unknown_jail_is_not_found(operator: Client) -> None:
    assert operator.get(url("nope")).status_code == 404
    assert operator.post(url("nope"), {"action": "add", "entry": "203.0.113.7"}).status_code == 404


def test_an_unknown_action_is_refused(operator: Client, jail: Jail) -> None:
    assert operator.post(url(), {"action": "clear"}).status_code == 400
