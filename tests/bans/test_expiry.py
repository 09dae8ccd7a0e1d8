"""A ban is over the moment its time runs out: shown as expired at once (computed from expires_at),
whatever its row says until the firewall worker's next run, and never in the way of a new ban."""

from __future__ import annotations

import datetime as dt
import json
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bans import sync
from bans.firewall.recording import RecordingBackend
from bans.models import Ban
from bans.services import Observed, record_failures
from jails.models import Jail
from tests.clients import client_for
from tests.factories import make_jail

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host", "no_broker")]


def ran_out(jail: Jail, network: str = "203.0.113.9/32", seconds_ago: float = 0.5) -> Ban:
    """An ACTIVE row whose time ran out `seconds_ago` (the kernel lifted it; no sync ran since)."""
    now = timezone.now()
    return Ban.objects.create(jail=jail, jail_name=jail.name, network=network, family=4, bantime=600,
                              started_at=now - dt.timedelta(seconds=600 + seconds_ago),
                              expires_at=now - dt.timedelta(seconds=seconds_ago), state=Ban.State.ACTIVE)


def test_the_panel_shows_a_ban_as_expired_the_moment_its_time_is_up() -> None:
    jail = make_jail("sshd")
    ban = ran_out(jail)
    operator = client_for("operator")
    detail = operator.get(reverse("ban_detail", args=[ban.pk]))
    assert b'id="ban-state">expired<' in detail.content and b'id="unban-button"' not in detail.content
    listing = operator.get(reverse("ban_list"))
    assert b'class="badge badge-off state-expired"' in listing.content
    assert not operator.get(reverse("ban_list"), {"state": "live"}).context["page"].object_list
    assert list(operator.get(reverse("ban_list"), {"state": "expired"}).context["page"].object_list) == [ban]
    assert list(operator.get(reverse("ban_list"), {"state": "ended"}).context["page"].object_list) == [ban]
    assert not operator.get(reverse("ban_list"), {"state": "active"}).context["page"].object_list


def test_jailctl_status_no_longer_lists_it() -> None:
    ran_out(make_jail("sshd"))
    out = StringIO()
    call_command("jailctl", "status", "sshd", "--json", stdout=out)
    assert json.loads(out.getvalue())["currently_banned"] == 0


def test_unban_and_make_permanent_leave_it_alone() -> None:
    ban = ran_out(make_jail("sshd"))
    operator = client_for("operator")
    operator.post(reverse("ban_unban", args=[ban.pk]))
    operator.post(reverse("ban_make_permanent", args=[ban.pk]))
    ban.refresh_from_db()
    assert (ban.state, ban.bantime) == (Ban.State.ACTIVE, 600)  # the row waits for the sync, unchanged


def test_the_rows_catch_up_on_the_next_sync_with_the_time_they_ran_out() -> None:
    jail = make_jail("sshd")
    active, never_applied = ran_out(jail), ran_out(jail, "203.0.113.10/32")
    Ban.objects.filter(pk=never_applied.pk).update(state=Ban.State.FAILED)
    report = sync.apply_pending("local", RecordingBackend())
    assert report.expired == 2
    for ban in (active, never_applied):
        ban.refresh_from_db()
        assert ban.state == Ban.State.EXPIRED and ban.ended_at == ban.expires_at


def test_a_row_that_ran_out_never_blocks_a_new_ban() -> None:
    jail = make_jail("sshd", maxretry=1)
    old = ran_out(jail)
    decision = record_failures(jail, [Observed("203.0.113.9", time.time())], now=time.time(), own_addresses=[],
                               catching_up=False)
    assert [ban.network for ban in decision.bans] == ["203.0.113.9/32"]
    old.refresh_from_db()
    assert old.state == Ban.State.EXPIRED


def test_a_client_sees_it_end_within_a_second() -> None:
    jail = make_jail("sshd")
    ban = ran_out(jail, seconds_ago=-0.8)  # 0.8 s left
    client: Client = client_for("viewer")
    assert b'id="ban-state">in the firewall<' in client.get(reverse("ban_detail", args=[ban.pk])).content
    time.sleep(1.0)
    assert b'id="ban-state">expired<' in client.get(reverse("ban_detail", args=[ban.pk])).content
