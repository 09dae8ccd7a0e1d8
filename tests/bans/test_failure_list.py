"""The failures page (where the dashboard's bars lead): filters, keyset pages, escaping, access."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bans import selectors
from bans.models import Failure
from tests.factories import make_jail, stored_failure

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(second=0, microsecond=0)


def local_minute(moment: dt.datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


def test_it_needs_a_login(client: Client) -> None:
    assert client.get(reverse("failure_list")).status_code == 302


def test_a_bar_s_link_shows_that_jail_s_failures_in_that_time(viewer: Client) -> None:
    sshd, web = make_jail("sshd"), make_jail("web")
    stored_failure(sshd, "203.0.113.9", NOW - dt.timedelta(minutes=90), line="too early")
    inside = stored_failure(sshd, "203.0.113.9", NOW - dt.timedelta(minutes=30), line="inside", user="root")
    stored_failure(web, "203.0.113.9", NOW - dt.timedelta(minutes=30), line="another jail")
    stored_failure(sshd, "203.0.113.9", NOW, line="at the end: not inside")

    response = viewer.get(reverse("failure_list"), {"jail": "sshd", "since": local_minute(NOW - dt.timedelta(hours=1)),
                                                   "until": local_minute(NOW)})

    assert response.status_code == 200
    assert [f.pk for f in response.context["page"].failures] == [inside.pk]
    assert b"root" in response.content


def test_an_address_finds_its_failures_in_every_jail(viewer: Client) -> None:
    sshd, web = make_jail("sshd"), make_jail("web")
    stored_failure(sshd, "203.0.113.9", NOW)
    stored_failure(web, "203.0.113.9", NOW - dt.timedelta(seconds=1))
    stored_failure(web, "203.0.113.10", NOW)

    page = viewer.get(reverse("failure_list"), {"q": " 203.0.113.9 "}).context["page"]

    assert sorted(f.jail.name for f in page.failures) == ["sshd", "web"]


@pytest.mark.parametrize(("query", "field"), [({"q": "not an address"}, "q"),
                                               ({"since": "2026-12-07T10:00", "until": "2026-12-07T09:00"}, "until"),
                                               ({"since": "yesterday"}, "since")])
def test_a_bad_search_says_what_is_wrong_and_shows_nothing(viewer: Client, query: dict[str, str], field: str) -> None:
    stored_failure(make_jail("sshd"), "203.0.113.9", NOW)

    response = viewer.get(reverse("failure_list"), query)

    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert response.context["page"].failures == []
    assert b'id="failure-search-errors"' in response.content


def test_pages_follow_each_other_without_gaps_or_repeats_even_on_equal_times() -> None:
    sshd = make_jail("sshd")
    for index in range(130):
        # three failures share each second: the cursor must tell them apart by id
        stored_failure(sshd, f"203.0.113.{index % 200}", NOW - dt.timedelta(seconds=index // 3))
    seen: list[int] = []
    older = ""
    for _ in range(10):
        page = selectors.failure_page(selectors.search_failures({}), older)
        seen += [f.pk for f in page.failures]
        if page.older is None:
            break
        older = page.older

    assert len(seen) == 130 == len(set(seen))
    assert seen == list(Failure.objects.order_by("-time", "-pk").values_list("pk", flat=True))


def test_a_cursor_that_does_not_parse_starts_from_the_newest(viewer: Client) -> None:
    newest = stored_failure(make_jail("sshd"), "203.0.113.9", NOW)

    page = viewer.get(reverse("failure_list"), {"older": "20261207T100000_x'; drop"}).context["page"]

    assert [f.pk for f in page.failures] == [newest.pk]


def test_the_older_link_carries_the_search(viewer: Client) -> None:
    sshd = make_jail("sshd")
    for index in range(selectors.FAILURE_PAGE + 5):
        stored_failure(sshd, "203.0.113.9", NOW - dt.timedelta(seconds=index))

    first = viewer.get(reverse("failure_list"), {"jail": "sshd"})
    older = first.context["page"].older
    second = viewer.get(reverse("failure_list"), {"jail": "sshd", "older": older})

    assert b'id="failures-older"' in first.content and b"jail=sshd" in first.content
    assert len(second.context["page"].failures) == 5 and second.context["page"].older is None
    assert b'id="failures-newest"' in second.content


def test_what_an_attacker_wrote_is_shown_as_text(viewer: Client) -> None:
    stored_failure(make_jail("sshd"), "203.0.113.9", NOW, line="<script>alert(1)</script>\x1b[31m",
                   user="<img src=x onerror=alert(1)>")

    content = viewer.get(reverse("failure_list")).content

    assert b"<script>alert(1)" not in content and b"<img src=x" not in content
    assert b"&lt;script&gt;" in content and b"\x1b" not in content


def test_an_empty_page_says_where_failures_come_from(viewer: Client) -> None:
    content = viewer.get(reverse("failure_list")).content

    assert b'id="failure-empty"' in content
