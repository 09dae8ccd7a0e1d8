"""The filter pages: list, a filter's page, edit (derived fields refreshed, broken text refused), import a .conf."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from jails import services
from jails.models import AuditEntry, Filter
from tests.clients import client_for

pytestmark = pytest.mark.django_db

COMMON = "[DEFAULT]\n__prefix = \\S+ app\\[\\d+\\]:\n"
SOURCE = "[INCLUDES]\nbefore = app-common.conf\n\n[Definition]\nfailregex = ^%(__prefix)s login failed from <HOST>$\n"
NEW_SOURCE = SOURCE + "            ^%(__prefix)s bad token from <HOST>$\n"


@pytest.fixture
def viewer() -> Client:
    return client_for("viewer")


@pytest.fixture
def admin() -> Client:
    return client_for("admin")


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
