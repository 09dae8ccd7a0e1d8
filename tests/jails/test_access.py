"""Access rules, checked on EVERY URL pattern of the project's resolver (new pages are covered
without editing this file). Path parameters are filled with dummy values: the checks happen before
any object is looked up (LoginRequiredMiddleware, then jails.access.roles.role_required, then the view).

The rules:
- anonymous: every page redirects to the login page (Django admin's to its own login), except
  the login pages themselves;
- every view of ours carries a role (role_required sets `required_role`), except login/logout;
  Django admin's views are guarded by Django admin (staff only);
- a viewer's POST to any URL but login/logout is refused: 403 from role_required, or 405 when the
  view only answers GET (it changes nothing, whatever the role); Django admin sends a viewer (not
  staff) to its login page. A 2xx is never acceptable, except for the views in READ_ONLY_POSTS:
  viewer pages that take a POST only to compute something (the filter tester sends a log to test);
  each must need only the viewer role and write nothing (checked: no audit entry, no new row).
- a POST without a CSRF token is refused with 403 CSRF on every URL, for every user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.converters import IntConverter, PathConverter, SlugConverter, StringConverter, UUIDConverter
from pytest_django import Settings

from jails.access.roles import Role
from jails.models import AuditEntry, Filter, Jail

pytestmark = pytest.mark.django_db

PUBLIC = {"login", "admin:login", "favicon"}  # the icon: a redirect to a static file, GET only
NO_ROLE_NEEDED = {"login", "logout", "admin:logout", "favicon"}  # logging out is anyone's own business
SAMPLES: dict[type, str] = {IntConverter: "1", StringConverter: "sample", SlugConverter: "sample",
                            PathConverter: "sample/path", UUIDConverter: "12345678-1234-5678-1234-567812345678"}
# Views a viewer may POST to because the POST changes nothing (keep this list short and reviewed).
READ_ONLY_POSTS = {"filter_tester", "filter_tester_for"}
REGEX_SAMPLES = {"app_label": "jails", "url": "nothing-here/"}


@dataclass(frozen=True)
class Page:
    path: str
    name: str  # "namespace:name", or the callback's name when the pattern has none
    callback: Callable[..., Any]
    admin: bool

    def __str__(self) -> str:
        return f"{self.path} ({self.name})"


def walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[Page]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}".strip(":") if entry.namespace else namespace
            yield from walk(entry.url_patterns, prefix + fill(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}".strip(":") if entry.name else entry.callback.__name__
            yield Page("/" + prefix + fill(entry.pattern), name, entry.callback, namespace.startswith("admin"))


def fill(pattern: Any) -> str:
    """A concrete path for a route or regex pattern, with sample values for its parameters."""
    if hasattr(pattern, "converters") and hasattr(pattern, "_route"):
        route: str = pattern._route
        for name, converter in pattern.converters.items():
            route = re.sub(rf"<(?:\w+:)?{name}>", SAMPLES.get(type(converter), "1"), route)
        return route
    regex = pattern.regex.pattern.lstrip("^").rstrip("$").replace("\\Z", "").replace("\\", "")
    regex = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: REGEX_SAMPLES.get(m.group(1), "1"), regex)
    return regex


PAGES = sorted(set(walk(get_resolver().url_patterns)), key=lambda page: page.path)
OURS = [page for page in PAGES if not page.admin]


def test_the_walk_finds_the_panel_and_admin_pages() -> None:
    names = {page.name for page in PAGES}
    assert {"dashboard", "ban_list", "jail_list", "filter_list", "audit_list", "user_list", "user_create",
            "login", "logout", "admin:index"} <= names
    for page in PAGES:  # each sample path reaches the view it was made from
        assert resolve(page.path).func == page.callback, page


@pytest.mark.parametrize("page", OURS, ids=str)
def test_every_view_of_ours_carries_a_role(page: Page) -> None:
    if page.name in NO_ROLE_NEEDED:
        return
    assert isinstance(getattr(page.callback, "required_role", None), int), \
        f"{page} has no jails.access.roles.role_required"


@pytest.fixture(autouse=True)
def fast_hashing(settings: Settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def viewer() -> Client:
    user = User.objects.create_user("vera")
    user.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_anonymous_visitors_are_sent_to_the_login_page(page: Page) -> None:
    if page.name in PUBLIC:
        return
    for method in ("get", "post"):
        response = getattr(Client(), method)(page.path)
        assert response.status_code == 302, f"{method.upper()} {page}: {response.status_code}"
        assert response["Location"].startswith(("/accounts/login/", "/admin/login/")), page


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_a_viewer_cannot_post_to_any_url(page: Page, viewer: Client) -> None:
    if page.name in PUBLIC | NO_ROLE_NEEDED:
        return
    response = viewer.post(page.path, {"name": "x", "address": "203.0.113.9", "role": "admin"})
    if page.admin:
        assert response.status_code in (302, 403, 404, 405), page
        if response.status_code == 302:
            assert response["Location"].startswith("/admin/login/"), page
        return
    if response.status_code == 405:
        assert "POST" not in response["Allow"], f"{page} accepts POST but answered 405"
        return
    if page.name in READ_ONLY_POSTS:
        # (jails.access.roles sets required_role on the view function: no type says so)
        assert page.callback.required_role == Role.VIEWER, page  # type: ignore[attr-defined]
        assert response.status_code in (200, 400, 404), page
        assert not AuditEntry.objects.exists() and not Filter.objects.exists() and not Jail.objects.exists()
        return
    assert response.status_code == 403, f"{page}: {response.status_code}"


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_a_cross_site_post_fails_the_csrf_check(page: Page) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", "", "x"))
    response = client.post(page.path, {"username": "root", "password": "x"})
    assert response.status_code == 403, f"{page}: {response.status_code}"
    assert b"CSRF" in response.content


def test_a_viewer_sees_which_role_a_refused_page_needs(viewer: Client) -> None:
    response = viewer.post("/users/new/", {})
    assert response.status_code == 403
    html = response.content.decode()
    assert "This needs the admin role" in html and "Ask an admin" in html


def test_a_user_without_a_role_is_told_to_ask_an_admin() -> None:
    client = Client()
    client.force_login(User.objects.create_user("newbie"))
    response = client.get("/")
    assert response.status_code == 403 and "you have no role yet" in response.content.decode()
