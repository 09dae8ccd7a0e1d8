"""The watch (bans.sync.watch, bans.tasks.watch_firewall): a kernel that lost our bans is found by
its ruleset generation and repaired at once, and the panel and jailctl say so while it differs.
With the recording firewall here; tests/e2e/test_kernel_truth.py does it with a real worker,
beat and a real kernel in a namespace."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from bans import status, sync, tasks
from bans.firewall import FirewallError
from bans.firewall.recording import RecordingBackend
from bans.models import Ban, FirewallHost
from bans.services import new_ban
from jails.access import audit
from jails.models import Jail
from tests.clients import client_for
from tests.factories import make_jail

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host", "no_broker")]


@pytest.fixture
def sshd() -> Jail:
    return make_jail("sshd")


@pytest.fixture
def backend() -> RecordingBackend:
    recording = RecordingBackend()
    recording.contents = lambda: sync.desired("local", timezone.now())
    return recording


def active(jail: Jail, count: int, backend: RecordingBackend) -> list[Ban]:
    bans = [new_ban(jail.name, f"203.0.113.{n}/32", 3600, now=timezone.now().timestamp(), host="local",
                    jail=jail, origin=Ban.Origin.JAIL) for n in range(1, count + 1)]
    sync.apply_pending("local", backend)
    return bans


def kernel(backend: RecordingBackend) -> set[str]:
    return {str(network) for network in backend.snapshot().get("sshd", {})}


def test_an_unchanged_generation_reads_nothing(sshd: Jail, backend: RecordingBackend) -> None:
    active(sshd, 3, backend)
    first = sync.watch("local", backend, None)
    assert first.checked and (first.lost, first.strays) == (0, 0)
    calls = len(backend.calls)
    again = sync.watch("local", backend, first.generation)
    assert not again.checked and len(backend.calls) == calls


def test_an_idle_watch_asks_the_database_once(
        sshd: Jail, backend: RecordingBackend, django_assert_num_queries: DjangoAssertNumQueries) -> None:
    """Every WATCH_SECONDS of an idle stack: no ban covered or being applied, the generation unchanged."""
    active(sshd, 3, backend)
    first = sync.watch("local", backend, None)
    with django_assert_num_queries(1):
        assert not sync.watch("local", backend, first.generation).checked


def test_a_flushed_ruleset_is_found_and_every_ban_put_back(sshd: Jail, backend: RecordingBackend) -> None:
    bans = active(sshd, 5, backend)
    checked = sync.watch("local", backend, None).generation
    backend.simulate_ruleset_flush()
    report = sync.watch("local", backend, checked)
    assert report.checked and report.lost == 5 and report.repaired is not None
    assert kernel(backend) == {ban.network for ban in bans}
    assert FirewallHost.objects.get(name="local").drift == ""  # repaired: nothing left to show
    after = sync.watch("local", backend, report.generation)  # our repair moved the generation: checked again
    assert after.checked and (after.lost, after.strays) == (0, 0)


def test_the_next_ban_after_a_flush_brings_every_other_ban_back(sshd: Jail, backend: RecordingBackend) -> None:
    # the report: the next ban recreated the table holding only itself, the others out for minutes
    bans = active(sshd, 3, backend)
    backend.simulate_ruleset_flush()
    new = new_ban("sshd", "198.51.100.9/32", 600, now=timezone.now().timestamp(), host="local", jail=sshd,
                  origin=Ban.Origin.JAIL)
    sync.apply_pending("local", backend)
    assert kernel(backend) == {ban.network for ban in bans} | {new.network}


def test_strays_go_and_bans_being_lifted_are_no_strays(sshd: Jail, backend: RecordingBackend) -> None:
    bans = active(sshd, 2, backend)
    Ban.objects.filter(pk=bans[0].pk).update(state=Ban.State.LIFTING)  # its sync has not run yet
    Ban.objects.filter(pk=bans[1].pk).delete()  # a row gone: its element is a stray
    report = sync.watch("local", backend, None)
    assert (report.lost, report.strays) == (0, 1)
    assert kernel(backend) == set()  # the reconcile keeps only what is in force


def test_bans_left_applying_by_a_dead_worker_are_settled(sshd: Jail, backend: RecordingBackend) -> None:
    ban = new_ban("sshd", "203.0.113.50/32", 600, now=timezone.now().timestamp(), host="local", jail=sshd,
                  origin=Ban.Origin.JAIL)
    Ban.objects.filter(pk=ban.pk).update(state=Ban.State.APPLYING)  # claimed, then the worker was killed
    generation = backend.generation()
    report = sync.watch("local", backend, generation)
    assert report.repaired is not None and kernel(backend) == {"203.0.113.50/32"}
    ban.refresh_from_db()
    assert ban.state == Ban.State.ACTIVE


def test_a_repair_that_fails_is_shown_on_every_page_and_by_jailctl(sshd: Jail, backend: RecordingBackend,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    active(sshd, 2, backend)
    checked = sync.watch("local", backend, None).generation
    backend.simulate_ruleset_flush()
    status.record_seen("local")

    def busy(*args: object, **kwargs: object) -> None:
        raise FirewallError("netlink: Device or resource busy", permanent=False)

    with monkeypatch.context() as patched:
        patched.setattr(backend, "sync_rules", busy)
        with pytest.raises(FirewallError):
            sync.watch("local", backend, checked)
    row = FirewallHost.objects.get(name="local")
    assert "2 ban(s) in force are missing from the kernel" in row.drift and row.drift_since is not None
    ok, message = status.firewall_status("local")
    assert not ok and "the kernel and the database disagree" in message
    page = client_for("viewer").get(reverse("jail_list"))  # not a bans page: every page says it
    assert b'id="firewall-warning"' in page.content and b"missing from the kernel" in page.content
    out = StringIO()
    call_command("jailctl", "status", stdout=out)
    assert out.getvalue().startswith("WARNING: on host local, the kernel and the database disagree")
    sync.watch("local", backend, checked)  # the next watch succeeds
    assert FirewallHost.objects.get(name="local").drift == "" and status.firewall_status("local")[0]


@pytest.fixture
def task_backend(backend: RecordingBackend, monkeypatch: pytest.MonkeyPatch) -> RecordingBackend:
    """The tasks' backend, with nothing checked yet (as in a fresh firewall worker)."""
    monkeypatch.setattr(tasks, "backend", lambda: backend)
    monkeypatch.setattr(tasks, "_checked_generation", {})
    return backend


def test_our_own_changes_do_not_make_the_next_watch_list_the_table(sshd: Jail, task_backend: RecordingBackend) -> None:
    """A ban flood: every sync moves the generation; only a change by someone else is looked for."""
    backend = task_backend
    active(sshd, 1, backend)
    assert tasks.watch_firewall("local")["checked"] == 1
    for n in range(10, 13):
        new_ban(sshd.name, f"203.0.113.{n}/32", 3600, now=timezone.now().timestamp(), host="local", jail=sshd,
                origin=Ban.Origin.JAIL)
        assert tasks.sync_firewall("local")["applied"] == 1  # our commit
        assert tasks.watch_firewall("local")["checked"] == 0
    backend.simulate_ruleset_flush()  # someone else's
    assert tasks.watch_firewall("local") == {"checked": 1, "lost": 4, "strays": 0, "waiting": 0}
    assert tasks.watch_firewall("local")["checked"] == 0  # its own repair agrees


def test_the_task_remembers_what_it_checked(sshd: Jail, task_backend: RecordingBackend) -> None:
    backend = task_backend
    active(sshd, 1, backend)
    assert tasks.watch_firewall("local")["checked"] == 1
    assert tasks.watch_firewall("local")["checked"] == 0
    backend.simulate_ruleset_flush()
    assert tasks.watch_firewall("local") == {"checked": 1, "lost": 1, "strays": 0, "waiting": 0}
    assert kernel(backend) == {"203.0.113.1/32"}


def test_a_pending_ban_left_waiting_is_said(sshd: Jail) -> None:
    status.record_ok("local")
    old = timezone.now() - dt.timedelta(minutes=2)
    new_ban("sshd", "203.0.113.60/32", 3600, now=old.timestamp(), host="local", jail=sshd, origin=Ban.Origin.JAIL)
    ok, message = status.firewall_status("local")
    assert not ok and "1 ban(s) have waited over 45 s for the firewall worker" in message


def test_when_a_wider_ban_runs_out_the_watch_puts_back_what_it_covered(sshd: Jail) -> None:
    clock = [1000.0]
    backend = RecordingBackend(clock=lambda: clock[0])
    now = timezone.now()
    wide = new_ban("sshd", "203.0.113.0/24", 60, now=now.timestamp(), host="local", jail=sshd,
                   origin=Ban.Origin.USER)
    sync.apply_pending("local", backend, now=now)
    inside = new_ban("sshd", "203.0.113.9/32", 3600, now=now.timestamp(), host="local", jail=sshd,
                     origin=Ban.Origin.JAIL)
    sync.apply_pending("local", backend, now=now)
    checked = sync.watch("local", backend, None, now=now).generation
    clock[0] += 61  # the kernel lifts the /24 by itself: no nftables transaction, no generation change
    sync.watch("local", backend, checked, now=now + dt.timedelta(seconds=61))
    assert kernel(backend) == {"203.0.113.9/32"}
    assert [Ban.objects.get(pk=b.pk).state for b in (wide, inside)] == [Ban.State.EXPIRED, Ban.State.ACTIVE]


def test_an_element_of_a_ban_waiting_to_be_made_permanent_is_no_stray(sshd: Jail, backend: RecordingBackend) -> None:
    from bans import actions

    [banned] = active(sshd, 1, backend)
    actions.make_permanent(banned, audit.Actor.system())  # PENDING again; the kernel keeps the timed element meanwhile
    report = sync.watch("local", backend, None)
    assert report.strays == 0 and kernel(backend) == {"203.0.113.1/32"}
