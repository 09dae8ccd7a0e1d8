"""The filter pages: list, a filter's page, edit (derived fields refreshed, broken text refused), import a .conf."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from jails import services
from jails.models import AuditEntry, Filter

pytestmark = pytest.mark.django_db

COMMON = "[DEFAULT]\n__prefix = \\S+ app\\[\\d+\\]:\n"
SOURCE = "[INCLUDES]\nbefore = app-common.conf\n\n[Definition]\nfailregex = ^%(__prefix)s login failed from <HOST>$\n"
NEW_SOURCE = SOURCE + "            ^%(__prefix)s bad token from <HOST>$\n"


def stored(name: str, source: str) -> Filter:
    return Filter.objects.create(name=name, source=source, **services.derive_stored_fields(name, source))


@pytest.fixture
def app_filter() -> Filter:
    stored("app-common", COMMON)
    return stored("app", SOURCE)


def test_it_lists_filters_and_searches(viewer: Client, app_filter: Filter) -> None:
    html = viewer.get(reverse("filter_list")).content.decode()
    assert 'id="filter-table"' in html and 'data-filter="app"' in html and 'data-filter="app-common"' in html
    html = viewer.get(reverse("filter_list"), {"q": "common"}).content.decode()
    assert 'data-filter="app-common"' in html and 'data-filter="app"' not in html


def test_it_shows_what_the_engine_reads(viewer: Client, app_filter: Filter) -> None:
    response = viewer.get(reverse("filter_detail", args=["app"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "login failed from &lt;HOST&gt;" in html
    assert 'id="filter-edit-link"' not in html  # a viewer cannot edit


def test_it_flags_an_unsafe_stored_regex(viewer: Client) -> None:
    stored("greedy", "[Definition]\nfailregex = ^.* from <HOST>\n")
    html = viewer.get(reverse("filter_detail", args=["greedy"])).content.decode()
    assert 'id="regex-warnings"' in html and "greedy catch-all" in html


def test_it_refuses_changes_to_a_viewer(viewer: Client, app_filter: Filter) -> None:
    assert viewer.get(reverse("filter_edit", args=["app"])).status_code == 403
    response = viewer.post(reverse("filter_edit", args=["app"]), {"name": "app", "source": NEW_SOURCE})
    assert response.status_code == 403
    assert viewer.post(reverse("filter_import"), {"name": "x", "conf_text": SOURCE}).status_code == 403
    assert viewer.post(reverse("filter_create"), {"name": "x", "source": SOURCE}).status_code == 403
    app_filter.refresh_from_db()
    assert app_filter.source == SOURCE


def test_it_saves_an_edit_refreshes_the_derived_fields_and_audits(admin: Client, app_filter: Filter) -> None:
    response = admin.post(reverse("filter_edit", args=["app"]),
                          {"name": "app", "description": "mine", "source": NEW_SOURCE, "source_local": ""})
    assert response.status_code == 302
    app_filter.refresh_from_db()
    assert len(app_filter.failregex) == 2 and "bad token" in app_filter.failregex[1]
    entry = AuditEntry.objects.get(action="filter.edit")
    assert entry.before is not None and entry.after is not None
    assert entry.before["source"] == SOURCE and entry.after["source"] == NEW_SOURCE


def test_it_refuses_a_bad_regex_with_file_and_line_and_saves_nothing(admin: Client, app_filter: Filter) -> None:
    broken = "[Definition]\nfailregex = ^ok <HOST>$\n            ^(unclosed <HOST>\n"
    response = admin.post(reverse("filter_edit", args=["app"]), {"name": "app", "source": broken})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_source-error"' in html and "does not compile" in html and "app.conf:3" in html
    app_filter.refresh_from_db()
    assert app_filter.source == SOURCE and not AuditEntry.objects.exists()


def test_it_refuses_a_filter_without_a_host_tag(admin: Client) -> None:
    response = admin.post(reverse("filter_create"), {"name": "nohost", "source": "[Definition]\nfailregex = ^x$\n"})
    assert response.status_code == 400 and "host tag" in response.content.decode()
    assert not Filter.objects.filter(name="nohost").exists()


def test_it_creates_a_filter(admin: Client, app_filter: Filter) -> None:
    source = "[INCLUDES]\nbefore = app-common.conf\n[Definition]\nfailregex = ^%(__prefix)s denied <HOST>$\n"
    response = admin.post(reverse("filter_create"), {"name": "app2", "source": source})
    assert response.status_code == 302
    created = Filter.objects.get(name="app2")
    assert created.origin == Filter.Origin.CUSTOM and created.failregex
    assert AuditEntry.objects.get().action == "filter.create"


def test_it_imports_a_pasted_conf_under_a_name(admin: Client, app_filter: Filter) -> None:
    response = admin.post(reverse("filter_import"), {"name": "pasted", "conf_text": NEW_SOURCE})
    assert response.status_code == 302
    flt = Filter.objects.get(name="pasted")
    assert flt.origin == Filter.Origin.IMPORTED and len(flt.failregex) == 2
    assert AuditEntry.objects.get().action == "filter.import"


def test_it_imports_an_uploaded_conf_named_after_the_file(admin: Client, app_filter: Filter) -> None:
    upload = SimpleUploadedFile("upload-me.conf", SOURCE.encode())
    local = SimpleUploadedFile("upload-me.local", b"[Definition]\nignoreregex = ^.*friendly.*$\n")
    response = admin.post(reverse("filter_import"), {"conf_file": upload, "local_file": local})
    assert response.status_code == 302
    flt = Filter.objects.get(name="upload-me")
    assert flt.source_local and flt.ignoreregex == ["^.*friendly.*$"]


def test_it_refuses_to_overwrite_without_asking(admin: Client, app_filter: Filter) -> None:
    response = admin.post(reverse("filter_import"), {"name": "app", "conf_text": NEW_SOURCE})
    assert response.status_code == 400 and "tick" in response.content.decode()
    response = admin.post(reverse("filter_import"), {"name": "app", "conf_text": NEW_SOURCE, "replace": "on"})
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="filter.import")
    assert entry.before is not None
    assert entry.before["source"] == SOURCE


def test_it_shows_import_errors_with_file_and_line(admin: Client) -> None:
    broken = "[Definition]\nfailregex = (<HOST>\n"
    response = admin.post(reverse("filter_import"), {"name": "broken", "conf_text": broken})
    assert response.status_code == 400
    html = response.content.decode()
    assert "broken.conf:2" in html and not Filter.objects.filter(name="broken").exists()


def test_it_refuses_a_file_that_is_not_utf8(admin: Client) -> None:
    upload = SimpleUploadedFile("latin.conf", "[Definition]\nfailregex = é <HOST>\n".encode("latin-1"))
    response = admin.post(reverse("filter_import"), {"conf_file": upload})
    assert response.status_code == 400 and "Not UTF-8" in response.content.decode()


# --- regexes that can backtrack catastrophically: refused unless the admin overrides (audited) ------

EVIL = "[Definition]\nfailregex = ^(a+)+$ <HOST>\n"
OVERRIDE = {"accept_backtracking": "on"}


def test_it_refuses_a_regex_that_can_backtrack_catastrophically(admin: Client) -> None:
    response = admin.post(reverse("filter_create"), {"name": "evil", "source": EVIL})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_source-error"' in html and "backtrack catastrophically" in html
    assert "^(a+)+$ &lt;HOST&gt;" in html and "nested quantifier" in html and "(a+)+" in html
    assert 'name="accept_backtracking"' in html  # the override is offered once needed, not before
    assert not Filter.objects.filter(name="evil").exists() and not AuditEntry.objects.exists()
    assert 'name="accept_backtracking"' not in admin.get(reverse("filter_create")).content.decode()


def test_it_saves_it_with_the_override_and_audits_who_accepted_which_regex(admin: Client) -> None:
    response = admin.post(reverse("filter_create"), {"name": "evil", "source": EVIL, **OVERRIDE})
    assert response.status_code == 302
    assert Filter.objects.get(name="evil").failregex == ["^(a+)+$ <HOST>"]
    entry = AuditEntry.objects.get(action="filter.accept_backtracking")
    assert (entry.username, entry.object_repr) == ("admin-user", "evil")
    assert entry.after is not None
    assert entry.after["regexes"] == [{"filter": "evil", "regex": "failregex 1", "pattern": "^(a+)+$ <HOST>",
                                       "shape": "(a+)+", "kind": "nested quantifier"}]
    assert "exponential time" in entry.after["override"]
    html = admin.get(reverse("filter_detail", args=["evil"])).content.decode()
    assert "regex-dangerous" in html and "catastrophic backtracking" in html


def test_an_edit_bringing_in_a_dangerous_regex_needs_the_override(admin: Client, app_filter: Filter) -> None:
    evil = SOURCE + "            ^%(__prefix)s (?:\\d+\\d+)+ from <HOST>$\n"
    response = admin.post(reverse("filter_edit", args=["app"]), {"name": "app", "source": evil})
    assert response.status_code == 400 and "overlapping adjacent quantifiers" in response.content.decode()
    app_filter.refresh_from_db()
    assert app_filter.source == SOURCE
    response = admin.post(reverse("filter_edit", args=["app"]), {"name": "app", "source": evil, **OVERRIDE})
    assert response.status_code == 302
    assert {e.action for e in AuditEntry.objects.all()} == {"filter.edit", "filter.accept_backtracking"}


def test_a_safe_filter_never_needs_the_override(admin: Client, app_filter: Filter) -> None:
    response = admin.post(reverse("filter_edit", args=["app"]), {"name": "app", "source": NEW_SOURCE})
    assert response.status_code == 302
    assert not AuditEntry.objects.filter(action="filter.accept_backtracking").exists()


def test_an_include_that_would_make_its_filters_dangerous_needs_the_override(admin: Client,
                                                                             app_filter: Filter) -> None:
    evil_common = "[DEFAULT]\n__prefix = (?:\\w+\\s?)+ app\\[\\d+\\]:\n"
    response = admin.post(reverse("filter_edit", args=["app-common"]), {"name": "app-common", "source": evil_common})
    assert response.status_code == 400 and "app: failregex 1" in response.content.decode()
    response = admin.post(reverse("filter_edit", args=["app-common"]),
                          {"name": "app-common", "source": evil_common, **OVERRIDE})
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="filter.accept_backtracking")
    assert entry.after is not None
    assert entry.object_repr == "app-common" and entry.after["regexes"][0]["filter"] == "app"


def test_the_filter_import_page_asks_for_the_override_too(admin: Client) -> None:
    response = admin.post(reverse("filter_import"), {"name": "evil", "conf_text": EVIL})
    assert response.status_code == 400 and "backtrack catastrophically" in response.content.decode()
    response = admin.post(reverse("filter_import"), {"name": "evil", "conf_text": EVIL, **OVERRIDE})
    assert response.status_code == 302
    assert AuditEntry.objects.filter(action="filter.accept_backtracking", object_repr="evil").exists()


def test_the_override_changes_nothing_for_a_viewer(viewer: Client) -> None:
    assert viewer.post(reverse("filter_create"), {"name": "evil", "source": EVIL, **OVERRIDE}).status_code == 403
    assert viewer.post(reverse("filter_import"), {"name": "evil", "conf_text": EVIL, **OVERRIDE}).status_code == 403
    assert not Filter.objects.filter(name="evil").exists() and not AuditEntry.objects.exists()
