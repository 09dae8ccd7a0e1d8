"""bans.sync with the recording firewall (the real kernel is exercised in test_firewall_netns.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks

from bans import sync
from bans.firewall import FirewallError
from bans.firewall.recording import RecordingBackend
from bans.models import Ban
from bans.services import Observed, new_ban, record_failures
from tests.factories import make_jail

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host")]


def pending_ban(jail_name: str = "sshd", network: str = "203.0.113.9/32", bantime: int = 3600) -> Ban:
    jail = make_jail(jail_name)
    return new_ban(jail_name, network, bantime, now=timezone.now().timestamp(), host="local", jail=jail,
                   origin=Ban.Origin.JAIL)


def test_it_marks_a_ban_active_once_the_firewall_has_it() -> None:
    ban = pending_ban()
    backend = RecordingBackend()
    report = sync.apply_pending("local", backend)
    ban.refresh_from_db()
    assert report.applied == [ban.pk]
    assert ban.state == Ban.State.ACTIVE and ban.applied_at is not None
    [(_name, (add, _remove))] = [c for c in backend.calls if c[0] == "apply"]
    assert [str(e.network) for e in add] == ["203.0.113.9/32"] and 3590 < add[0].timeout <= 3600


def test_it_claims_each_ban_once() -> None:
    pending_ban()
    backend = RecordingBackend()
    sync.apply_pending("local", backend)
    again = sync.apply_pending("local", backend)
    assert again.applied == []
    assert len([c for c in backend.calls if c[0] == "apply"]) == 1


def test_it_records_a_refused_batch_and_retries_later() -> None:
    ban = pending_ban()
    backend = RecordingBackend()
    backend.fail_next(FirewallError("netlink busy", permanent=False))
    report = sync.apply_pending("local", backend)
    ban.refresh_from_db()
    assert report.error is not None
    assert (ban.state, ban.apply_attempts, ban.apply_error) == (Ban.State.FAILED, 1, "netlink busy")
    assert sync.apply_pending("local", backend).applied == []  # not due yet
    later = timezone.now() + dt.timedelta(seconds=sync.RETRY_BASE_SECONDS + 1)
    assert sync.apply_pending("local", backend, now=later).applied == [ban.pk]


def test_it_applies_only_its_own_hosts_bans() -> None:
    ban = pending_ban()
    Ban.objects.filter(pk=ban.pk).update(host="other")
    assert sync.apply_pending("local", RecordingBackend()).applied == []


def test_it_lifts_bans_marked_for_lifting() -> None:
    ban = pending_ban()
    backend = RecordingBackend()
    sync.apply_pending("local", backend)
    Ban.objects.filter(pk=ban.pk).update(state=Ban.State.LIFTING)
    report = sync.apply_pending("local", backend)
    ban.refresh_from_db()
    assert report.lifted == [ban.pk] and ban.state == Ban.State.LIFTED
    assert backend.snapshot().get("sshd", {}) == {}


def test_it_restores_lost_bans_on_reconcile() -> None:
    pending_ban()
    backend = RecordingBackend()
    sync.apply_pending("local", backend)
    backend.simulate_ruleset_flush()
    result = sync.reconcile("local", backend)
    assert [str(e.network) for e in result.added] == ["203.0.113.9/32"]


def test_beat_sends_the_sync_only_when_a_ban_waits_ends_or_is_being_lifted() -> None:
    assert not sync.has_work("local")  # an idle host: the scheduled sync is not sent
    ban = pending_ban(bantime=60)
    assert sync.has_work("local") and not sync.has_work("elsewhere")  # waiting for the kernel
    sync.apply_pending("local", RecordingBackend())
    assert not sync.has_work("local")  # in the kernel, with time left
    later = timezone.now() + dt.timedelta(seconds=61)
    assert sync.has_work("local", now=later)  # its time ran out: expired by the next run
    Ban.objects.filter(pk=ban.pk).update(state=Ban.State.LIFTING)
    assert sync.has_work("local")
    Ban.objects.filter(pk=ban.pk).update(state=Ban.State.FAILED, next_attempt_at=timezone.now() + dt.timedelta(hours=1))
    assert not sync.has_work("local")  # refused: waits for its retry
    assert sync.has_work("local", now=timezone.now() + dt.timedelta(hours=2))


def test_it_expires_bans_whose_time_is_up() -> None:
    ban = pending_ban(bantime=60)
    sync.apply_pending("local", RecordingBackend())
    report = sync.apply_pending("local", RecordingBackend(), now=timezone.now() + dt.timedelta(seconds=61))
    ban.refresh_from_db()
    assert report.expired == 1 and ban.state == Ban.State.EXPIRED


def test_it_applies_what_the_failures_earned(
        django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks) -> None:
    jail = make_jail(maxretry=2)
    now = timezone.now().timestamp()
    with django_capture_on_commit_callbacks() as callbacks:
        record_failures(jail, [Observed("198.51.100.4", now - 2), Observed("198.51.100.4", now - 1)], now=now,
                        own_addresses=[], catching_up=False)
    assert len(callbacks) == 1  # the firewall worker is asked once the transaction commits
    backend = RecordingBackend()
    sync.apply_pending("local", backend)
    assert [str(n) for n in backend.snapshot()["sshd"]] == ["198.51.100.4/32"]


def test_it_applies_a_storm_in_one_batch_with_a_few_statements(
        django_assert_max_num_queries: DjangoAssertNumQueries) -> None:
    jail = make_jail(maxretry=1)
    now = timezone.now().timestamp()
    record_failures(jail, [Observed(f"198.51.{i // 250}.{i % 250 + 1}", now - 1) for i in range(1200)], now=now,
                    own_addresses=[], catching_up=False)
    backend = RecordingBackend()
    with django_assert_max_num_queries(30):  # not one per ban (a few per 512, bulk.batches)
        report = sync.apply_pending("local", backend)
    assert len(report.applied) == 1200 and len([c for c in backend.calls if c[0] == "apply"]) == 1
    assert Ban.objects.filter(state=Ban.State.ACTIVE).count() == 1200


def test_it_backs_off_each_refused_ban_by_its_own_attempts() -> None:
    first, second = pending_ban(network="203.0.113.9/32"), pending_ban("web", network="203.0.113.10/32")
    Ban.objects.filter(pk=second.pk).update(apply_attempts=2)  # refused twice before
    backend = RecordingBackend()
    backend.fail_next(FirewallError("netlink busy", permanent=False))
    now = timezone.now()
    sync.apply_pending("local", backend, now=now)
    waits = {ban.pk: (ban.apply_attempts, ban.next_attempt_at and round((ban.next_attempt_at - now).total_seconds()))
             for ban in Ban.objects.all()}
    assert waits == {first.pk: (1, sync.RETRY_BASE_SECONDS), second.pk: (3, sync.RETRY_BASE_SECONDS * 4)}
