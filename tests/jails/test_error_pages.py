"""The panel's own 404 and 500 pages, and its icon (issue 12: a styled 404, a favicon that no
longer 404s on every page)."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string
from django.test import Client

pytestmark = pytest.mark.django_db


def test_a_missing_page_is_the_panels_own_with_ways_back(viewer: Client) -> None:
    response = viewer.get("/jails/no-such-jail-here/")
    html = response.content.decode()
    assert response.status_code == 404
    assert 'id="missing-title"' in html and "/jails/no-such-jail-here/" in html
    assert 'class="brand"' in html and 'href="/bans/"' in html  # the panel's header and a way back


def test_a_missing_page_for_someone_not_logged_in_offers_the_login(client: Client) -> None:
    response = client.get("/no-such-page/")  # no view, so nothing for the login middleware to guard
    html = response.content.decode()
    assert response.status_code == 404
    assert 'href="/accounts/login/"' in html and 'href="/bans/"' not in html  # the way in, not the panel's


def test_the_500_page_renders_alone_without_a_request() -> None:
    html = render_to_string("500.html")  # as Django's server_error view renders it: no context
    assert "Something went wrong" in html and "audit log" in html
    assert "{%" not in html and "csrf" not in html.lower()


def test_the_icon_is_linked_on_every_page_and_favicon_ico_needs_no_login(viewer: Client, client: Client) -> None:
    assert 'rel="icon" href="/static/favicon.svg"' in viewer.get("/").content.decode()
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/favicon.svg"
    assert client.get("/static/favicon.svg").status_code == 200
