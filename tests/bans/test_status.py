"""Whether the firewall is being changed: what the firewall worker's tasks record (with the recording
backend, with IPS_FIREWALL=off, without nftables) and what jailctl and the panel are told."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from pytest_django.fixtures import Settings

from bans import status, tasks
from bans.firewall import FirewallError
from bans.firewall.recording import RecordingBackend
from bans.models import Ban, FirewallHost
from bans.services import new_ban
from tests.factories import make_jail

pytestmark = pytest.mark.django_db

CACHED_BACKEND = tasks.backend  # the real, cached one (tests replace the module attribute)


@pytest.fixture(autouse=True)
def fresh_backend(settings: Settings) -> Iterator[None]:
    """tasks.backend() is cached per process: each test opens its own, and leaves none behind."""
    settings.IPS_HOST_NAME = "local"
    settings.IPS_FIREWALL = "nftables"
    CACHED_BACKEND.cache_clear()
    yield
    CACHED_BACKEND.cache_clear()


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> RecordingBackend:
    backend = RecordingBackend()
    monkeypatch.setattr(tasks, "backend", lambda: backend)
    return backend


def pending_ban(network: str = "203.0.113.9/32") -> Ban:
    jail = make_jail("sshd")
    return new_ban("sshd", network, 3600, now=timezone.now().timestamp(), host="local", jail=jail,
                   origin=Ban.Origin.JAIL)


def first_line_of_jailctl_status() -> str:
    out = StringIO()
    call_command("jailctl", "status", stdout=out)
    return out.getvalue().splitlines()[0]


def host() -> FirewallHost:
    return FirewallHost.objects.get(name="local")


def test_it_says_the_firewall_is_changed_once_the_worker_applied_a_ban(recording: RecordingBackend) -> None:
    ban = pending_ban()
    assert tasks.sync_firewall("local") == {"applied": 1, "lifted": 0, "expired": 0}
    ban.refresh_from_db()
    assert ban.state == Ban.State.ACTIVE
    row = host()
    assert (row.state, row.reason) == (FirewallHost.State.OK, "")
    assert row.last_applied_at is not None and row.last_applied_at == row.last_seen_at
    assert status.firewall_status("local") == (True, "changing nftables on host local")
    assert first_line_of_jailctl_status() == "Firewall: changing nftables on host local"


def test_it_records_an_idle_sync_as_seen_without_claiming_a_change(recording: RecordingBackend) -> None:
    tasks.sync_firewall("local")
    row = host()
    assert row.state == FirewallHost.State.OK and row.last_applied_at is None
    assert status.firewall_status()[0]


def test_it_warns_everywhere_when_the_firewall_is_off(settings: Settings) -> None:
    settings.IPS_FIREWALL = "off"
    ban = pending_ban()
    with pytest.raises(tasks.FirewallUnavailable):
        tasks.sync_firewall("local")
    with pytest.raises(tasks.FirewallUnavailable):
        tasks.reconcile_firewall("local")
    ban.refresh_from_db()
    assert ban.state == Ban.State.PENDING  # recorded, shown, never sent
    row = host()
    assert row.state == FirewallHost.State.UNAVAILABLE and row.reason.startswith("IPS_FIREWALL=off")
    ok, message = status.firewall_status("local")
    assert not ok
    assert message == ("the firewall is NOT being changed on host local: "
                       "IPS_FIREWALL=off: bans are recorded but the firewall is not being changed")
    assert first_line_of_jailctl_status() == f"WARNING: {message}"


def test_it_warns_when_the_firewall_is_off_before_any_worker_reported(settings: Settings) -> None:
    settings.IPS_FIREWALL = "off"
    assert first_line_of_jailctl_status() == (
        "WARNING: the firewall is NOT being changed on host local: "
        "IPS_FIREWALL=off: bans are recorded and shown, the kernel is not touched")


def test_it_warns_when_nftables_cannot_be_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_capability(table: str, **options: object) -> None:
        raise FirewallError("the firewall worker needs CAP_NET_ADMIN and libnftables1; bans are not being "
                            "applied (nft: Operation not permitted)", permanent=True)

    monkeypatch.setattr(tasks, "NftablesBackend", no_capability)
    with pytest.raises(tasks.FirewallUnavailable):
        tasks.sync_firewall("local")
    assert host().state == FirewallHost.State.UNAVAILABLE
    assert status.firewall_status("local") == (False, (
        "the firewall is NOT being changed on host local: the firewall worker needs CAP_NET_ADMIN and "
        "libnftables1; bans are not being applied (nft: Operation not permitted)"))


def test_it_warns_until_the_kernel_accepts_a_change_again(recording: RecordingBackend) -> None:
    pending_ban()
    recording.fail_next(FirewallError("Could not process rule: No such file or directory", permanent=True))
    tasks.sync_firewall("local")
    assert (host().state, host().reason) == (FirewallHost.State.FAILING,
                                             "Could not process rule: No such file or directory")
    tasks.sync_firewall("local")  # idle: the refused ban waits for its retry time, nothing proved
    assert host().state == FirewallHost.State.FAILING
    assert status.firewall_status("local") == (False, "the firewall is NOT being changed on host local: "
                                               "Could not process rule: No such file or directory")
    assert tasks.reconcile_firewall("local")["added"] == 0
    assert host().state == FirewallHost.State.OK and host().last_applied_at is not None
    # the worker is fine again, but the refused ban is still not in the kernel: said until it is
    assert status.firewall_status("local") == (False, (
        "on host local, 1 ban(s) in force are not in the kernel: the firewall refused them (Could not process "
        "rule: No such file or directory); retrying"))


def test_it_records_a_refused_reconcile(recording: RecordingBackend) -> None:
    recording.fail_next(FirewallError("netlink: Device or resource busy", permanent=False))
    with pytest.raises(FirewallError):
        tasks.reconcile_firewall("local")
    assert (host().state, host().reason) == (FirewallHost.State.FAILING, "netlink: Device or resource busy")


def test_it_recovers_from_unavailable_once_the_backend_opens(settings: Settings,
                                                            recording: RecordingBackend) -> None:
    status.record_unavailable("local", "the firewall is not being changed: no nf_tables module")
    assert status.firewall_status("local") == (False, "the firewall is NOT being changed on host local: "
                                               "no nf_tables module")
    tasks.sync_firewall("local")
    assert (host().state, host().reason) == (FirewallHost.State.OK, "")


def test_it_says_so_when_no_firewall_worker_ever_reported() -> None:
    ok, message = status.firewall_status("local")
    assert not ok and message.startswith("the firewall is NOT being changed on host local: no firewall worker "
                                         "has reported yet (is the worker of queue firewall.local running?)")


def test_it_counts_a_worker_not_seen_for_two_minutes_as_down() -> None:
    now = timezone.now()
    status.record_ok("local", now=now - dt.timedelta(minutes=3))
    ok, message = status.firewall_status("local", now=now)
    assert not ok and "its firewall worker was last seen 3 min ago" in message
    assert status.firewall_status("local", now=now - dt.timedelta(minutes=1))[0]  # 2 min: still fresh


def test_it_answers_for_the_host_asked_about(recording: RecordingBackend) -> None:
    tasks.sync_firewall("edge-2")
    assert status.firewall_status("edge-2") == (True, "changing nftables on host edge-2")
    assert not status.firewall_status("local")[0]


def test_the_worker_logs_each_ban_and_unban_as_an_event(recording: RecordingBackend,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    ban = pending_ban("203.0.113.9/32")
    with caplog.at_level("INFO", logger="bans.tasks"):
        tasks.sync_firewall("local")
        Ban.objects.filter(pk=ban.pk).update(state=Ban.State.LIFTING)
        tasks.sync_firewall("local")
    assert [r.getMessage() for r in caplog.records if r.name == "bans.tasks"] == [
        "[sshd] Ban 203.0.113.9", "[sshd] Unban 203.0.113.9"]


def test_a_firewall_that_is_off_is_said_once_per_process_and_is_an_expected_error(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    settings.IPS_FIREWALL = "off"
    monkeypatch.setattr(tasks, "_said_unavailable", set())
    with caplog.at_level("WARNING", logger="bans.tasks"):
        for _ in range(3):
            with pytest.raises(tasks.FirewallUnavailable):
                tasks.watch_firewall("local")
    assert [r.getMessage() for r in caplog.records if r.name == "bans.tasks"] == [
        "IPS_FIREWALL=off: bans are recorded but the firewall is not being changed (host local)"]
    # Celery logs an expected error in one line (at INFO), without the traceback of every run
    for task in (tasks.watch_firewall, tasks.sync_firewall, tasks.reconcile_firewall):
        assert tasks.FirewallUnavailable in task.throws


def test_the_worker_says_it_is_alive_with_one_write_per_seen_every() -> None:
    """The watch runs every 2 s: being seen is written at most every SEEN_EVERY, read in between."""
    start = timezone.now()
    status.record_seen("local", start)
    status.record_seen("local", start + dt.timedelta(seconds=2))
    assert host().last_seen_at == start
    later = start + status.SEEN_EVERY + dt.timedelta(seconds=1)
    status.record_seen("local", later)
    assert host().last_seen_at == later


def test_being_seen_ends_unavailable_at_once() -> None:
    now = timezone.now()
    status.record_unavailable("local", "no CAP_NET_ADMIN", now)
    status.record_seen("local", now + dt.timedelta(seconds=1))
    assert (host().state, host().reason) == (FirewallHost.State.OK, "")
