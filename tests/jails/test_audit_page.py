"""The audit page: newest first, paginated, filterable, each entry's before/after as a field diff,
values escaped (control characters and HTML)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from jails.access import audit
from jails.access.views import AUDIT_PAGE_SIZE
from jails.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer_client() -> Client:
    user = User.objects.create_user("vera")
    user.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(user)
    return client


def entry(action: str = "jail.edit", **fields: object) -> AuditEntry:
    values = {"username": "alice", "object_type": "jail", "object_repr": "sshd", "via": "panel",
              "address": "192.0.2.5", "before": {"maxretry": 5}, "after": {"maxretry": 3}, **fields}
    return AuditEntry.objects.create(action=action, **values)


def page(client: Client, **params: str) -> str:
    response = client.get("/audit/", params)
    assert response.status_code == 200
    return response.content.decode()


def test_it_lists_entries_newest_first_with_who_when_where(viewer_client: Client) -> None:
    older = entry("jail.create", object_repr="older-one")
    AuditEntry.objects.filter(pk=older.pk).update(at=timezone.now() - dt.timedelta(hours=1))
    entry("jail.edit", object_repr="newer-one")
    html = page(viewer_client)
    assert html.index("newer-one") < html.index("older-one")
    assert "alice" in html and "192.0.2.5" in html and "jail.edit" in html


def test_it_shows_the_changed_fields_in_an_expandable_diff(viewer_client: Client) -> None:
    entry(before={"maxretry": 5, "bantime": 600}, after={"maxretry": 3, "bantime": 600})
    html = page(viewer_client)
    assert "<details class=\"diff\">" in html and "1 field" in html
    assert "<th scope=\"row\">maxretry</th>" in html and "bantime" not in html


def test_it_shows_everything_a_deletion_removed(viewer_client: Client) -> None:
    entry("jail.delete", before={"name": "sshd", "maxretry": 5}, after=None)
    html = page(viewer_client)
    assert "2 fields" in html and "<th scope=\"row\">name</th>" in html


def test_it_renders_control_characters_and_html_escaped(viewer_client: Client) -> None:
    audit.record(None, "filter.edit", object_type="filter", object_repr="evil\x1b[31m<b>x</b>",
                 before={"description": "plain"}, after={"description": "red \x1b[31m<script>alert(1)</script>"})
    html = page(viewer_client)
    assert "\x1b" not in html
    assert "\\x1b[31m" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<b>x</b>" not in html


def test_it_escapes_control_characters_even_if_stored_raw(viewer_client: Client) -> None:
    entry(object_repr="raw\x07bell", after={"maxretry": "\x1b[2J"})
    html = page(viewer_client)
    assert "\x07" not in html and "\x1b" not in html and "\\x07" in html and "\\x1b[2J" in html


def test_it_filters_by_user_action_type_via_and_text(viewer_client: Client) -> None:
    entry("jail.edit", username="alice", object_repr="alpha-jail")
    entry("ban.create", username="bob", object_type="ban", object_repr="203.0.113.9/32", after={"reason": "scanner"})
    entry("filter.edit", username="carol", object_type="filter", object_repr="gamma-filter", via="admin")
    assert "alpha-jail" not in page(viewer_client, user="bob")
    assert "203.0.113.9/32" in page(viewer_client, user="bob")
    html = page(viewer_client, action="filter.edit")
    assert "gamma-filter" in html and "alpha-jail" not in html
    html = page(viewer_client, object_type="ban")
    assert "203.0.113.9/32" in html and "gamma-filter" not in html
    html = page(viewer_client, via="admin")
    assert "gamma-filter" in html and "alpha-jail" not in html
    html = page(viewer_client, q="scanner")  # found in the values after
    assert "203.0.113.9/32" in html and "alpha-jail" not in html


def test_it_filters_by_date_range(viewer_client: Client) -> None:
    old = entry(object_repr="last-month")
    AuditEntry.objects.filter(pk=old.pk).update(at=timezone.now() - dt.timedelta(days=30))
    entry(object_repr="today-entry")
    today = timezone.localdate()
    html = page(viewer_client, since=str(today - dt.timedelta(days=1)), until=str(today))
    assert "today-entry" in html and "last-month" not in html
    html = page(viewer_client, until=str(today - dt.timedelta(days=2)))
    assert "last-month" in html and "today-entry" not in html


def test_it_says_so_when_the_range_is_backwards(viewer_client: Client) -> None:
    html = page(viewer_client, since="2026-05-02", until="2026-05-01")
    assert "The end date is before the start date." in html


def test_it_paginates_and_keeps_the_filters_in_the_page_links(viewer_client: Client) -> None:
    AuditEntry.objects.bulk_create([AuditEntry(action="ban.create", object_type="ban", object_repr=f"n{i}")
                                    for i in range(AUDIT_PAGE_SIZE + 3)])
    html = page(viewer_client, action="ban.create")
    assert f"{AUDIT_PAGE_SIZE + 3} entries" in html and "Page 1 of 2" in html
    assert "action=ban.create&amp;page=2" in html
    assert "Page 2 of 2" in page(viewer_client, action="ban.create", page="2")


def test_it_answers_htmx_with_the_results_only(viewer_client: Client) -> None:
    entry()
    html = viewer_client.get("/audit/", {"user": "alice"}, headers={"HX-Request": "true"}).content.decode()
    assert html.lstrip().startswith('<div id="audit-results">') and "<html" not in html


def test_it_shows_an_empty_state(viewer_client: Client) -> None:
    assert "Nothing has been changed yet" in page(viewer_client)
