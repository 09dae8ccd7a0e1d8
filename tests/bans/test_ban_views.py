"""The bans pages: search, one ban, bans by hand with the lockout guard, unban, permanent, lift all."""

from __future__ import annotations

import csv
import datetime as dt
import io
import ipaddress
import json
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoCaptureOnCommitCallbacks, Settings

from bans import selectors, views_bans
from bans.models import Ban, Failure
from jails.models import AuditEntry, Jail
from tests.conftest import HOST_ADDRESS
from tests.factories import make_jail

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host")]

CLIENT_ADDRESS = "198.51.100.50"


def user_with(role: str) -> User:
    user = User.objects.create_user(f"{role}-user", password="x")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def client_for(role: str) -> Client:
    client = Client(REMOTE_ADDR=CLIENT_ADDRESS)
    client.force_login(user_with(role))
    return client


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks) -> DjangoCaptureOnCommitCallbacks:
    """What would run once the view's transaction commits (the tests' transaction never does)."""
    return django_capture_on_commit_callbacks


@pytest.fixture
def sshd() -> Jail:
    return make_jail("sshd", ignoreip=["10.0.0.0/8"])


def ban(network: str, jail: Jail | None = None, **values: Any) -> Ban:
    fields: dict[str, Any] = {"jail": jail, "jail_name": jail.name if jail else "blocklist", "network": network,
                              "family": 6 if ":" in network else 4, "bantime": 3600, "state": Ban.State.ACTIVE,
                              "expires_at": timezone.now() + dt.timedelta(hours=1)}
    fields.update(values)
    return Ban.objects.create(**fields)


# --- the list --------------------------------------------------------------------------------------


def test_it_lists_bans_to_a_viewer(viewer: Client, sshd: Jail) -> None:
    ban("203.0.113.9/32", sshd)

    response = viewer.get(reverse("ban_list"))

    assert response.status_code == 200
    assert b"203.0.113.9" in response.content and b'class="badge badge-ok state-active"' in response.content
    assert b'class="unban' not in response.content  # a viewer gets no buttons


def test_the_list_counts_the_bans_in_force_per_jail_with_a_lift_all_for_operators(
        viewer: Client, operator: Client, sshd: Jail) -> None:
    ban("203.0.113.9/32", sshd)
    ban("203.0.113.10/32", sshd)
    html = operator.get(reverse("ban_list")).content.decode()
    assert 'id="lift-all-section"' in html and "sshd: 2" in html and 'class="lift-all" data-jail="sshd"' in html
    html = viewer.get(reverse("ban_list")).content.decode()
    assert "sshd: 2" in html and 'class="lift-all"' not in html


def test_it_finds_an_address_and_the_networks_holding_it(viewer: Client, sshd: Jail) -> None:
    ban("203.0.113.9/32", sshd)
    ban("203.0.113.0/24", sshd)
    ban("198.51.100.7/32", sshd)

    response = viewer.get(reverse("ban_list"), {"q": "203.0.113.9"})

    found = {b.network for b in response.context["page"].object_list}
    assert found == {"203.0.113.9/32", "203.0.113.0/24"}


def test_it_finds_the_bans_inside_a_network(viewer: Client, sshd: Jail) -> None:
    for network in ("203.0.113.9/32", "203.0.113.128/25", "203.0.112.1/32", "2001:db8::1/128", "2001:db9::1/128"):
        ban(network, sshd)

    inside_v4 = viewer.get(reverse("ban_list"), {"q": "203.0.113.0/24"}).context["page"].object_list
    inside_v6 = viewer.get(reverse("ban_list"), {"q": "2001:db8::/32"}).context["page"].object_list

    assert {b.network for b in inside_v4} == {"203.0.113.9/32", "203.0.113.128/25"}
    assert {b.network for b in inside_v6} == {"2001:db8::1/128"}


def bulk_bans(jail: Jail, count: int, first_octet: int = 10) -> None:
    """`count` ended bans with distinct addresses, the newest with the highest number."""
    start = timezone.now() - dt.timedelta(days=1)
    Ban.objects.bulk_create([
        Ban(jail=jail, jail_name=jail.name, network=f"{first_octet}.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}/32",
            family=4, bantime=600, state=Ban.State.EXPIRED, started_at=start + dt.timedelta(seconds=n))
        for n in range(count)
    ], batch_size=500)


def test_a_search_for_a_huge_network_is_capped_and_paged(viewer: Client, sshd: Jail) -> None:
    # 0.0.0.0/0 used to load every ban and filter by an IN list of all their ids (SQLite refuses
    # more than 32,766 variables); now at most MAX_NETWORK_MATCHES are kept, and pages fetch 50 ids
    cap = selectors.MAX_NETWORK_MATCHES
    bulk_bans(sshd, cap + 30)
    variables: list[int] = []

    def count_variables(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        variables.append(len(params or ()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_variables):
        first = viewer.get(reverse("ban_list"), {"q": "0.0.0.0/0"})
    last = viewer.get(reverse("ban_list"), {"q": "0.0.0.0/0", "page": "last"})

    page = first.context["page"]
    assert page.paginator.count == cap and len(page.object_list) == views_bans.PAGE_SIZE
    assert page.object_list[0].network == f"10.0.{(cap + 29) // 256}.{(cap + 29) % 256}/32"  # newest first
    assert f"Showing the first {cap:,} matches" in first.content.decode()
    assert 'id="ban-capped"' in first.content.decode()
    assert len(last.context["page"].object_list) == (cap % views_bans.PAGE_SIZE or views_bans.PAGE_SIZE)
    assert variables and max(variables) <= 2 * views_bans.PAGE_SIZE  # no query names every match


def test_a_search_stops_after_scanning_its_limit(viewer: Client, sshd: Jail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selectors, "MAX_NETWORK_SCAN", 40)
    bulk_bans(sshd, 60, first_octet=11)  # none inside 10.0.0.0/8, all sharing no text with it
    bulk_bans(sshd, 5, first_octet=10)

    found = selectors.bans_inside(Ban.objects.all(), ipaddress.ip_network("0.0.0.0/1"))
    response = viewer.get(reverse("ban_list"), {"q": "0.0.0.0/1"})

    assert len(found.pks) == 40 and "newest 40 bans were searched" in found.capped_note
    assert 'id="ban-capped"' in response.content.decode()


def test_a_search_under_the_caps_says_nothing_about_them(viewer: Client, sshd: Jail) -> None:
    bulk_bans(sshd, 60)

    response = viewer.get(reverse("ban_list"), {"q": "10.0.0.0/8"})

    assert response.context["page"].paginator.count == 60
    assert 'id="ban-capped"' not in response.content.decode()


def test_it_filters_by_jail_state_and_origin(viewer: Client, sshd: Jail) -> None:
    web = make_jail("web")
    ban("203.0.113.1/32", sshd)
    ban("203.0.113.2/32", sshd, state=Ban.State.EXPIRED)
    ban("203.0.113.3/32", web, origin=Ban.Origin.USER)
    ban("203.0.113.4/32", sshd, state=Ban.State.PENDING)

    def found(**query: str) -> set[str]:
        return {b.network.removesuffix("/32") for b in viewer.get(reverse("ban_list"), query).context["page"]}

    assert found(jail="web") == {"203.0.113.3"}
    assert found(state="live") == {"203.0.113.1", "203.0.113.3", "203.0.113.4"}
    assert found(state="ended") == {"203.0.113.2"}
    assert found(state="pending") == {"203.0.113.4"}
    assert found(origin="manual") == {"203.0.113.3"}
    assert found(origin="automatic", state="live") == {"203.0.113.1", "203.0.113.4"}


def test_it_says_so_when_the_search_is_not_an_address(viewer: Client) -> None:
    response = viewer.get(reverse("ban_list"), {"q": "not-an-ip"})

    assert b'id="ban-search-errors"' in response.content


def test_it_pages_the_list(viewer: Client, sshd: Jail) -> None:
    for n in range(views_bans.PAGE_SIZE + 3):
        ban(f"203.0.113.{n}/32", sshd)

    first = viewer.get(reverse("ban_list"), {"jail": "sshd"})
    second = viewer.get(reverse("ban_list"), {"jail": "sshd", "page": "2"})

    assert len(first.context["page"].object_list) == views_bans.PAGE_SIZE
    assert len(second.context["page"].object_list) == 3
    assert b"jail=sshd&amp;page=2" in first.content


def test_it_answers_htmx_with_the_results_only(viewer: Client, sshd: Jail) -> None:
    ban("203.0.113.9/32", sshd)

    response = viewer.get(reverse("ban_list"), {"q": "203.0.113.9"}, HTTP_HX_REQUEST="true")

    assert response.content.lstrip().startswith(b'<div id="ban-results">')
    assert b"<html" not in response.content and b"203.0.113.9" in response.content


def test_a_boosted_link_and_a_history_restore_get_the_whole_page(viewer: Client, sshd: Jail) -> None:
    """jails.htmx.render_page_or_partial: htmx wants a page for a boosted link and when it restores
    history after a cache miss; the answer varies with HX-Request, so no cache mixes the two."""
    ban("203.0.113.9/32", sshd)
    url = reverse("ban_list")

    partial = viewer.get(url, {"q": "203.0.113.9"}, HTTP_HX_REQUEST="true")
    boosted = viewer.get(url, HTTP_HX_REQUEST="true", HTTP_HX_BOOSTED="true")
    restored = viewer.get(url, {"q": "203.0.113.9"}, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")

    assert b"<html" not in partial.content
    assert b"<html" in boosted.content and b"<html" in restored.content and b"203.0.113.9" in restored.content
    for response in (partial, boosted, restored, viewer.get(url)):
        assert "HX-Request" in response["Vary"]


def test_it_warns_when_the_firewall_is_not_being_changed(viewer: Client) -> None:
    response = viewer.get(reverse("ban_list"))  # no firewall worker has reported

    assert b'id="firewall-warning"' in response.content
    assert b"NOT being changed" in response.content


# --- one ban ---------------------------------------------------------------------------------------


def test_it_shows_a_ban_with_its_evidence_and_the_address_history(viewer: Client, sshd: Jail) -> None:
    web = make_jail("web")
    shown = ban("203.0.113.9/32", sshd, evidence=["Nov 1 sshd: Failed password for <script>x</script>"])
    ban("203.0.113.9/32", web, state=Ban.State.EXPIRED)
    ban("203.0.113.0/24", None, bantime=-1, expires_at=None)
    Failure.objects.create(jail=web, address="203.0.113.9", time=timezone.now(), line="GET /wp-login.php")

    response = viewer.get(reverse("ban_detail", args=[shown.pk]))

    assert response.status_code == 200
    assert b"&lt;script&gt;x&lt;/script&gt;" in response.content and b"<script>x" not in response.content
    others = {(b.jail_name, b.network) for b in response.context["other_bans"]}
    assert others == {("web", "203.0.113.9/32"), ("blocklist", "203.0.113.0/24")}
    assert b"GET /wp-login.php" in response.content
    assert b'id="unban-button"' not in response.content  # viewer


def test_it_offers_the_actions_to_an_operator(operator: Client, sshd: Jail) -> None:
    shown = ban("203.0.113.9/32", sshd)

    response = operator.get(reverse("ban_detail", args=[shown.pk]))

    assert b'id="unban-button"' in response.content and b'id="make-permanent-button"' in response.content


# --- permissions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ban_create", "ban_unban", "ban_make_permanent", "jail_lift_all",
                                  "ban_unban_selected"])
def test_a_viewer_cannot_change_bans(viewer: Client, sshd: Jail, name: str) -> None:
    target = ban("203.0.113.9/32", sshd)
    args = {"ban_create": [], "jail_lift_all": ["sshd"], "ban_unban_selected": []}.get(name, [target.pk])

    response = viewer.post(reverse(name, args=args), {"address": "203.0.113.10", "jail": "sshd", "confirm": "on",
                                                      "ban": [target.pk]})

    assert response.status_code == 403
    assert Ban.objects.count() == 1 and Ban.objects.get().state == Ban.State.ACTIVE
    assert not AuditEntry.objects.exists()


def test_nobody_without_a_role_sees_the_bans() -> None:
    client = Client()
    client.force_login(User.objects.create_user("nobody", password="x"))

    assert client.get(reverse("ban_list")).status_code == 403
    assert Client().get(reverse("ban_list")).status_code == 302  # to the login page


# --- bans by hand ----------------------------------------------------------------------------------


def test_an_operator_bans_an_address_by_hand(
        operator: Client, sshd: Jail, on_commit: DjangoCaptureOnCommitCallbacks) -> None:
    with on_commit() as callbacks:
        response = operator.post(reverse("ban_create"), {"address": "203.0.113.9", "jail": "sshd",
                                                         "duration": "2h", "reason": "scanner"})

    created = Ban.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("ban_detail", args=[created.pk])
    assert (created.network, created.jail_name, created.bantime) == ("203.0.113.9/32", "sshd", 7200)
    assert created.origin == Ban.Origin.USER and created.reason == "scanner" and created.state == Ban.State.PENDING
    assert created.created_by is not None and created.created_by.username == "operator-user"
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.object_id, entry.address) == ("ban.create", str(created.pk), CLIENT_ADDRESS)
    assert entry.after is not None
    assert entry.after["network"] == "203.0.113.9/32"
    assert len(callbacks) == 1  # the firewall worker is asked once the transaction commits


def test_an_empty_duration_is_the_jails_bantime_and_permanent_is_permanent(operator: Client, sshd: Jail) -> None:
    operator.post(reverse("ban_create"), {"address": "203.0.113.9", "jail": "sshd", "duration": ""})
    operator.post(reverse("ban_create"), {"address": "203.0.113.10", "jail": "sshd", "duration": "permanent"})

    times = dict(Ban.objects.values_list("network", "bantime"))
    assert times == {"203.0.113.9/32": 3600, "203.0.113.10/32": -1}


def test_the_blocklist_takes_permanent_bans_only(operator: Client, sshd: Jail) -> None:
    refused = operator.post(reverse("ban_create"), {"address": "203.0.113.0/24", "jail": "blocklist",
                                                    "duration": "1h"})
    accepted = operator.post(reverse("ban_create"), {"address": "203.0.113.0/24", "jail": "blocklist"})

    assert b"blocklist (all ports) are permanent" in refused.content
    assert accepted.status_code == 302
    assert Ban.objects.get().jail_name == "blocklist" and Ban.objects.get().bantime == -1


@pytest.mark.parametrize(("address", "why"), [
    (CLIENT_ADDRESS, b"your own address"),
    ("198.51.100.0/24", b"your own address"),
    ("127.0.0.1", b"loopback"),
    ("::1", b"loopback"),
    (HOST_ADDRESS, b"an address of this host"),
    ("10.1.2.3", b"ignoreip"),
    ("10.0.0.0/7", b"ignoreip"),
])
def test_the_lockout_guard_refuses_with_the_reason(operator: Client, sshd: Jail, address: str, why: bytes) -> None:
    response = operator.post(reverse("ban_create"), {"address": address, "jail": "sshd", "duration": "1h"})

    assert response.status_code == 200
    assert b'id="ban-form-errors"' in response.content and why in response.content
    assert not Ban.objects.exists() and not AuditEntry.objects.exists()


def test_it_guards_the_address_behind_a_trusted_proxy(sshd: Jail, settings: Settings) -> None:
    import ipaddress

    settings.IPS_TRUSTED_PROXIES = [ipaddress.ip_network("10.9.9.9/32")]
    client = Client(REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR="203.0.113.77")
    client.force_login(user_with("operator"))

    response = client.post(reverse("ban_create"), {"address": "203.0.113.77", "jail": "sshd"})

    assert b"your own address" in response.content and not Ban.objects.exists()


@pytest.mark.parametrize(("values", "field"), [
    ({"address": "203.0.113.9/16", "jail": "sshd"}, "address"),  # host bits set
    ({"address": "example.org", "jail": "sshd"}, "address"),
    ({"address": "203.0.113.9", "jail": "sshd", "duration": "soon"}, "duration"),
    ({"address": "203.0.113.9", "jail": "nope"}, "jail"),
])
def test_it_explains_what_is_wrong_with_the_form(operator: Client, sshd: Jail, values: dict[str, str],
                                                 field: str) -> None:
    response = operator.post(reverse("ban_create"), values)

    assert response.status_code == 200 and field in response.context["form"].errors
    assert f'id="id_{field}-error"'.encode() in response.content
    assert not Ban.objects.exists()


def test_it_refuses_a_second_ban_of_the_same_address_in_a_jail(operator: Client, sshd: Jail) -> None:
    ban("203.0.113.9/32", sshd)

    response = operator.post(reverse("ban_create"), {"address": "203.0.113.9", "jail": "sshd"})

    assert b"already banned" in response.content and Ban.objects.count() == 1


def test_the_form_is_prefilled_from_the_query(operator: Client, sshd: Jail) -> None:
    response = operator.get(reverse("ban_create"), {"address": "203.0.113.9", "jail": "sshd"})

    assert b'value="203.0.113.9"' in response.content and CLIENT_ADDRESS.encode() in response.content


# --- unban, permanent, lift all --------------------------------------------------------------------


def test_an_operator_unbans(operator: Client, sshd: Jail, on_commit: DjangoCaptureOnCommitCallbacks) -> None:
    target = ban("203.0.113.9/32", sshd)
    elsewhere = ban("203.0.113.9/32", make_jail("web"))

    with on_commit() as callbacks:
        response = operator.post(reverse("ban_unban", args=[target.pk]))

    target.refresh_from_db()
    elsewhere.refresh_from_db()
    assert response.status_code == 302
    assert target.state == Ban.State.LIFTING and target.ended_by is not None
    assert elsewhere.state == Ban.State.ACTIVE  # only this ban, not the address everywhere
    entry = AuditEntry.objects.get()
    assert entry.before is not None and entry.after is not None
    assert entry.action == "ban.lift" and entry.before["state"] == "active" and entry.after["state"] == "lifting"
    assert len(callbacks) == 1


def test_unban_goes_back_to_the_list_it_came_from(operator: Client, sshd: Jail) -> None:
    target = ban("203.0.113.9/32", sshd)

    back = operator.post(reverse("ban_unban", args=[target.pk]), {"next": "/bans/?jail=sshd"})
    away = operator.post(reverse("ban_unban", args=[target.pk]), {"next": "https://evil.example/"})

    assert back["Location"] == "/bans/?jail=sshd"
    assert away["Location"] == reverse("ban_detail", args=[target.pk])


def test_an_operator_lifts_the_bans_ticked_in_the_list_each_audited(
        operator: Client, sshd: Jail, on_commit: DjangoCaptureOnCommitCallbacks) -> None:
    first, second, untouched = ban("203.0.113.9/32", sshd), ban("203.0.113.10/32", sshd), ban("203.0.113.11/32", sshd)
    ended = ban("203.0.113.12/32", sshd, state=Ban.State.EXPIRED)

    listed = operator.get(reverse("ban_list"))
    with on_commit() as callbacks:
        response = operator.post(reverse("ban_unban_selected"),
                                 {"ban": [first.pk, second.pk, ended.pk], "next": "/bans/?jail=sshd"}, follow=True)

    assert listed.content.count(b'class="select-ban"') == 3  # the ended one cannot be ticked
    assert response.redirect_chain[-1][0] == "/bans/?jail=sshd"
    assert b"Lifting 2 bans; 1 no longer in force." in response.content
    states = dict(Ban.objects.values_list("pk", "state"))
    assert states[first.pk] == states[second.pk] == Ban.State.LIFTING
    assert states[untouched.pk] == Ban.State.ACTIVE and states[ended.pk] == Ban.State.EXPIRED
    assert sorted(AuditEntry.objects.filter(action="ban.lift").values_list("object_id", flat=True)) == sorted(
        [str(first.pk), str(second.pk)])
    assert len(callbacks) == 1


@pytest.mark.parametrize(("ids", "said"), [([], b"Tick the bans to lift first."),
                                           (list(range(1, 600)), b"Nothing lifted: at most 500 bans at once.")])
def test_unban_selected_says_why_nothing_was_lifted(operator: Client, sshd: Jail, ids: list[int], said: bytes) -> None:
    target = ban("203.0.113.9/32", sshd)

    response = operator.post(reverse("ban_unban_selected"), {"ban": ids}, follow=True)

    assert said in response.content
    target.refresh_from_db()
    assert target.state == Ban.State.ACTIVE and not AuditEntry.objects.exists()


@pytest.mark.parametrize("value", ["1 OR 1=1", "²", str(10**30), "-1", ""])
def test_unban_selected_refuses_ids_that_are_not_plain_numbers(operator: Client, value: str) -> None:
    assert operator.post(reverse("ban_unban_selected"), {"ban": [value]}).status_code == 400


def test_the_list_sorts_by_a_column_either_way(viewer: Client, sshd: Jail) -> None:
    web = make_jail("web")
    now = timezone.now()
    ban("203.0.113.20/32", web, started_at=now - dt.timedelta(hours=3), expires_at=None, bantime=-1)
    ban("198.51.100.7/32", sshd, started_at=now - dt.timedelta(hours=1))
    ban("203.0.113.5/32", sshd, started_at=now - dt.timedelta(hours=2), expires_at=now + dt.timedelta(minutes=5))

    def order(sort: str) -> list[str]:
        return [b.network for b in viewer.get(reverse("ban_list"), {"sort": sort}).context["page"].object_list]

    assert order("") == ["198.51.100.7/32", "203.0.113.5/32", "203.0.113.20/32"]  # newest first
    assert order("started") == ["203.0.113.20/32", "203.0.113.5/32", "198.51.100.7/32"]
    assert order("jail") == ["198.51.100.7/32", "203.0.113.5/32", "203.0.113.20/32"]
    assert order("-jail")[0] == "203.0.113.20/32"
    assert order("until") == ["203.0.113.5/32", "198.51.100.7/32", "203.0.113.20/32"]  # permanent last
    assert order("-until")[0] == "203.0.113.20/32"
    assert order("network") == sorted(order("network")) and order("-network") == order("network")[::-1]


def test_a_sorted_column_says_so_and_its_link_turns_the_order_round(viewer: Client, sshd: Jail) -> None:
    ban("203.0.113.9/32", sshd)

    content = viewer.get(reverse("ban_list"), {"sort": "jail", "state": "live", "page": "1"}).content.decode()

    assert '<th scope="col" aria-sort="ascending"><a href="?sort=-jail&amp;state=live"' in content
    assert '<th scope="col" aria-sort="none"><a href="?sort=network&amp;state=live"' in content  # page 1 dropped


def test_the_list_filters_by_when_a_ban_started(viewer: Client, sshd: Jail) -> None:
    now = timezone.now().replace(second=0, microsecond=0)
    ban("203.0.113.1/32", sshd, started_at=now - dt.timedelta(hours=5))
    inside = ban("203.0.113.2/32", sshd, started_at=now - dt.timedelta(hours=2))
    ban("203.0.113.3/32", sshd, started_at=now)

    def local(moment: dt.datetime) -> str:
        return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")

    found = viewer.get(reverse("ban_list"), {"since": local(now - dt.timedelta(hours=3)), "until": local(now)})
    page = found.context["page"]
    backwards = viewer.get(reverse("ban_list"), {"since": local(now), "until": local(now - dt.timedelta(hours=3))})

    assert [b.pk for b in page.object_list] == [inside.pk]
    assert "until" in backwards.context["form"].errors


def test_unbanning_an_ended_ban_changes_nothing(operator: Client, sshd: Jail) -> None:
    target = ban("203.0.113.9/32", sshd, state=Ban.State.EXPIRED)

    operator.post(reverse("ban_unban", args=[target.pk]))

    target.refresh_from_db()
    assert target.state == Ban.State.EXPIRED and not AuditEntry.objects.exists()


def test_an_operator_makes_a_ban_permanent(
        operator: Client, sshd: Jail, on_commit: DjangoCaptureOnCommitCallbacks) -> None:
    target = ban("203.0.113.9/32", sshd)

    with on_commit() as callbacks:
        operator.post(reverse("ban_make_permanent", args=[target.pk]))

    target.refresh_from_db()
    assert (target.bantime, target.expires_at, target.state) == (-1, None, Ban.State.PENDING)
    entry = AuditEntry.objects.get()
    assert entry.before is not None and entry.after is not None
    assert entry.action == "ban.make_permanent" and entry.before["bantime"] == 3600 and entry.after["bantime"] == -1
    assert len(callbacks) == 1  # re-applied without a timeout


def test_lifting_all_bans_of_a_jail_asks_first(operator: Client, sshd: Jail) -> None:
    for n in range(3):
        ban(f"203.0.113.{n}/32", sshd)

    page = operator.get(reverse("jail_lift_all", args=["sshd"]))
    unconfirmed = operator.post(reverse("jail_lift_all", args=["sshd"]))

    assert b'id="lift-all-count">3<' in page.content
    assert b'id="lift-all-errors"' in unconfirmed.content
    assert Ban.objects.filter(state=Ban.State.ACTIVE).count() == 3


def test_an_operator_lifts_all_bans_of_a_jail(
        operator: Client, sshd: Jail, on_commit: DjangoCaptureOnCommitCallbacks) -> None:
    for n in range(3):
        ban(f"203.0.113.{n}/32", sshd)
    ban("203.0.113.9/32", sshd, state=Ban.State.EXPIRED)
    other = ban("203.0.113.1/32", make_jail("web"))

    with on_commit() as callbacks:
        response = operator.post(reverse("jail_lift_all", args=["sshd"]), {"confirm": "on"})

    assert response.status_code == 302 and response["Location"] == "/bans/?jail=sshd"
    assert Ban.objects.filter(jail_name="sshd", state=Ban.State.LIFTING).count() == 3
    assert Ban.objects.get(pk=other.pk).state == Ban.State.ACTIVE
    entry = AuditEntry.objects.get()
    assert entry.after is not None
    assert entry.action == "jail.lift_all" and entry.after["lifted"] == 3 and entry.object_repr == "sshd"
    assert len(callbacks) == 1


def test_lifting_an_unknown_jail_is_not_found(operator: Client) -> None:
    assert operator.get(reverse("jail_lift_all", args=["nope"])).status_code == 404


# --- review: lockout guard on every path, odd address forms ----------------------------------------


@pytest.mark.parametrize(("address", "why"), [
    ("0.0.0.0/0", b"your own address"),
    ("::/0", b"loopback"),
    ("::ffff:127.0.0.1", b"loopback"),
    ("::ffff:198.51.100.50", b"your own address"),
    ("::ffff:0:0/96", b"your own address"),
    ("0:0:0:0:0:ffff:7f00:1", b"loopback"),
    ("::ffff:10.1.2.3", b"ignoreip"),
])
def test_the_lockout_guard_sees_through_odd_forms(operator: Client, sshd: Jail, address: str, why: bytes) -> None:
    response = operator.post(reverse("ban_create"), {"address": address, "jail": "sshd", "duration": "1h"})

    assert b'id="ban-form-errors"' in response.content and why in response.content
    assert not Ban.objects.exists()


@pytest.mark.parametrize("address", ["127.0.0.1/8", "127.1", "0177.0.0.1", "2130706433", "fe80::1%eth0"])
def test_it_refuses_addresses_written_oddly(operator: Client, sshd: Jail, address: str) -> None:
    response = operator.post(reverse("ban_create"), {"address": address, "jail": "sshd", "duration": "1h"})

    assert "address" in response.context["form"].errors and not Ban.objects.exists()


def test_it_never_bans_the_trusted_proxy_the_panel_is_reached_through(sshd: Jail, settings: Settings) -> None:
    import ipaddress

    settings.IPS_TRUSTED_PROXIES = [ipaddress.ip_network("203.0.113.1/32")]
    client = Client(REMOTE_ADDR="203.0.113.1", HTTP_X_FORWARDED_FOR="198.51.100.77")
    client.force_login(user_with("operator"))

    response = client.post(reverse("ban_create"), {"address": "203.0.113.0/24", "jail": "sshd"})

    assert b"your own address" in response.content and not Ban.objects.exists()


@pytest.mark.parametrize("network", [CLIENT_ADDRESS + "/32", HOST_ADDRESS + "/32", "10.1.2.3/32"])
def test_making_a_ban_of_a_protected_address_permanent_is_refused(operator: Client, sshd: Jail,
                                                                   network: str) -> None:
    # a jail may have banned the person's own address (or one since put in ignoreip): it expires,
    # a permanent ban would not
    target = ban(network, sshd)

    response = operator.post(reverse("ban_make_permanent", args=[target.pk]), follow=True)

    target.refresh_from_db()
    assert target.bantime == 3600 and target.state == Ban.State.ACTIVE
    assert b"cannot be made permanent" in response.content and not AuditEntry.objects.exists()


def test_it_shows_attacker_written_control_characters_escaped(viewer: Client, sshd: Jail) -> None:
    target = ban("203.0.113.9/32", sshd, evidence=["Invalid user \u202eevil\x1b[31m from 203.0.113.9"])

    html = viewer.get(reverse("ban_detail", args=[target.pk])).content.decode()

    assert "\u202e" not in html and "\x1b" not in html and "\\u202eevil\\x1b[31m" in html


def streamed(response: Any) -> bytes:
    """A streamed export's body (the test client's response type does not declare streaming_content)."""
    return b"".join(response.streaming_content)


def test_the_current_search_exports_as_csv_and_json(viewer: Client, sshd: Jail) -> None:
    ban("203.0.113.9/32", sshd, reason="=HYPERLINK(\"http://evil\")")
    ban("198.51.100.7/32", sshd)
    page = viewer.get(reverse("ban_list"), {"q": "203.0.113.9"}).content.decode()
    assert 'id="ban-export-csv" href="/bans/export.csv?q=203.0.113.9"' in page
    response = viewer.get(reverse("ban_export", args=["csv"]), {"q": "203.0.113.9"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="bans-')
    rows = list(csv.reader(io.StringIO(streamed(response).decode())))
    assert rows[0][:3] == ["network", "jail", "state"] and len(rows) == 2
    assert rows[1][0] == "203.0.113.9/32" and rows[1][-1].startswith("'=HYPERLINK")  # never a formula
    everything = viewer.get(reverse("ban_export", args=["json"]))
    data = json.loads(streamed(everything))
    assert {row["network"] for row in data} == {"203.0.113.9/32", "198.51.100.7/32"}
    assert viewer.get(reverse("ban_export", args=["xml"])).status_code == 404


def test_a_network_export_keeps_the_search_bounds(viewer: Client, sshd: Jail,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for last in range(5):
        ban(f"192.0.2.{last}/32", sshd)
    monkeypatch.setattr(selectors, "MAX_NETWORK_MATCHES", 3)
    response = viewer.get(reverse("ban_export", args=["json"]), {"q": "192.0.2.0/24"})
    assert len(json.loads(streamed(response))) == 3
    assert "first 3 matches" in response["X-Export-Note"]


def test_an_export_is_bounded_and_says_so(viewer: Client, sshd: Jail, monkeypatch: pytest.MonkeyPatch) -> None:
    for last in range(4):
        ban(f"198.51.100.{last}/32", sshd, reason=" \t=1+1" if last == 0 else "")
    monkeypatch.setattr(selectors, "MAX_EXPORT_ROWS", 3)
    response = viewer.get(reverse("ban_export", args=["csv"]))
    rows = list(csv.reader(io.StringIO(streamed(response).decode())))
    assert len(rows) == 1 + 3 and "newest 3 bans" in response["X-Export-Note"]
    monkeypatch.setattr(selectors, "MAX_EXPORT_ROWS", 10)
    rows = list(csv.reader(io.StringIO(streamed(viewer.get(reverse("ban_export", args=["csv"]))).decode())))
    assert [row[-1] for row in rows if row[0] == "198.51.100.0/32"] == ["' \t=1+1"]  # blanks first: still text



def test_the_list_groups_the_bans_by_address(viewer: Client, sshd: Jail) -> None:
    web = make_jail("web")
    now = timezone.now()
    ban("203.0.113.9/32", sshd, started_at=now - dt.timedelta(days=3), state=Ban.State.EXPIRED)
    ban("203.0.113.9/32", web, started_at=now - dt.timedelta(hours=1))
    ban("198.51.100.7/32", sshd, started_at=now - dt.timedelta(hours=2))

    response = viewer.get(reverse("ban_list"), {"group": "address"})
    in_one_jail = viewer.get(reverse("ban_list"), {"group": "address", "jail": "sshd"})

    rows = list(response.context["page"].object_list)
    assert [(r["network"], r["bans"], r["jails"], r["live"]) for r in rows] == [
        ("203.0.113.9/32", 2, 2, 1), ("198.51.100.7/32", 1, 1, 1)]
    assert b'id="ban-groups"' in response.content and b'href="?q=203.0.113.9"' in response.content
    assert [r["bans"] for r in in_one_jail.context["page"].object_list] == [1, 1]  # the search still applies


def test_a_network_search_is_sorted_by_the_column_asked_for(viewer: Client, sshd: Jail) -> None:
    now = timezone.now()
    for minutes, last in ((1, 5), (2, 1), (3, 9), (4, 3)):
        ban(f"203.0.113.{last}/32", sshd, started_at=now - dt.timedelta(minutes=minutes))

    def order(sort: str) -> list[str]:
        page = viewer.get(reverse("ban_list"), {"q": "203.0.113.0/24", "sort": sort}).context["page"]
        return [b.network for b in page.object_list]

    assert order("") == ["203.0.113.5/32", "203.0.113.1/32", "203.0.113.9/32", "203.0.113.3/32"]
    assert order("network") == ["203.0.113.1/32", "203.0.113.3/32", "203.0.113.5/32", "203.0.113.9/32"]
    assert order("-network") == order("network")[::-1]
    assert order("started") == order("")[::-1]
