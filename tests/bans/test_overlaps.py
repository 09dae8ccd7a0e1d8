"""Overlaps are a policy (bans/overlaps.py through bans.sync): a ban inside a wider one in the kernel
is COVERED and never sent, a wider ban absorbs the narrower ones in one batch, a lift or an expiry
brings the covered ones back, and one element the firewall refuses never keeps the others out.
With the recording firewall here; tests/bans/test_firewall_netns.py does it in a real kernel."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest
from django.utils import timezone

from bans import actions, sync
from bans.firewall import BanEntry, FirewallError
from bans.firewall.recording import RecordingBackend
from bans.models import Ban
from bans.services import new_ban
from jails.access import audit
from jails.models import Jail
from tests.bans.netns import NamespacePair
from tests.factories import make_jail

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host", "no_broker")]


@pytest.fixture
def sshd() -> Jail:
    return make_jail("sshd")


def ban(jail: Jail | None, network: str, bantime: int = 3600, *, at: dt.datetime | None = None) -> Ban:
    return new_ban(jail.name if jail else "blocklist", network, bantime if jail else -1,
                   now=(at or timezone.now()).timestamp(), host="local", jail=jail, origin=Ban.Origin.USER)


def kernel(backend: RecordingBackend, jail: str = "sshd") -> set[str]:
    return {str(network) for network in backend.snapshot().get(jail, {})}


def states(*bans: Ban) -> list[str]:
    return [Ban.objects.get(pk=b.pk).state for b in bans]


def test_a_ban_inside_an_active_wider_one_is_covered_and_never_sent(sshd: Jail) -> None:
    backend = RecordingBackend()
    wide = ban(sshd, "203.0.0.0/16")
    sync.apply_pending("local", backend)
    inside = ban(sshd, "203.0.113.9/32")
    report = sync.apply_pending("local", backend)
    assert report.error is None and report.covered == [inside.pk]
    assert kernel(backend) == {"203.0.0.0/16"}
    inside.refresh_from_db()
    assert (inside.state, inside.covered_by_id, inside.in_force) == (Ban.State.COVERED, wide.pk, True)


def test_the_report_poisoned_set_no_longer_refuses_later_bans(sshd: Jail) -> None:
    # the report: once a covering interval existed, every later ban inside it failed ("overlaps")
    backend = RecordingBackend()
    ban(sshd, "203.0.0.0/16")
    sync.apply_pending("local", backend)
    later = [ban(sshd, f"203.0.{n}.1/32") for n in range(5)] + [ban(sshd, "198.51.100.4/32")]
    report = sync.apply_pending("local", backend)
    assert report.error is None and not report.failed
    assert states(*later) == [Ban.State.COVERED] * 5 + [Ban.State.ACTIVE]
    assert kernel(backend) == {"203.0.0.0/16", "198.51.100.4/32"}


def test_a_wider_ban_absorbs_the_narrower_ones_in_one_batch(sshd: Jail) -> None:
    backend = RecordingBackend()
    narrow = [ban(sshd, "203.0.113.9/32"), ban(sshd, "203.0.113.0/28"), ban(sshd, "203.0.114.1/32")]
    other_jail = ban(make_jail("web"), "203.0.113.10/32")
    sync.apply_pending("local", backend)
    wide = ban(sshd, "203.0.112.0/22")
    report = sync.apply_pending("local", backend)
    assert report.error is None and report.applied == [wide.pk]
    assert kernel(backend) == {"203.0.112.0/22"} and kernel(backend, "web") == {"203.0.113.10/32"}
    [(_, (add, remove))] = [call for call in backend.calls if call[0] == "apply"][-1:]
    assert [str(e.network) for e in add] == ["203.0.112.0/22"]
    # 203.0.113.9 rode with the /28 from the start: it stays covered by it, the /28 by the /22
    assert {str(e.network) for e in remove} == {"203.0.113.0/28", "203.0.114.1/32"}
    assert states(*narrow) == [Ban.State.COVERED] * 3 and states(other_jail) == [Ban.State.ACTIVE]
    assert [Ban.objects.get(pk=b.pk).covered_by_id for b in narrow] == [narrow[1].pk, wide.pk, wide.pk]


def test_bans_claimed_together_ride_with_the_widest(sshd: Jail) -> None:
    backend = RecordingBackend()
    inside, wide = ban(sshd, "203.0.113.9/32"), ban(sshd, "203.0.113.0/24")
    sync.apply_pending("local", backend)
    assert kernel(backend) == {"203.0.113.0/24"}
    assert states(inside, wide) == [Ban.State.COVERED, Ban.State.ACTIVE]


def test_lifting_the_wider_ban_puts_the_covered_ones_back_in_the_same_batch(sshd: Jail) -> None:
    backend = RecordingBackend()
    wide = ban(sshd, "203.0.113.0/24")
    sync.apply_pending("local", backend)
    inside = ban(sshd, "203.0.113.9/32")
    sync.apply_pending("local", backend)
    actions.lift_ban(wide, audit.Actor.system())
    report = sync.apply_pending("local", backend)
    assert report.lifted == [wide.pk] and report.applied == [inside.pk]
    [(_, (add, remove))] = [call for call in backend.calls if call[0] == "apply"][-1:]
    assert [str(e.network) for e in add] == ["203.0.113.9/32"] and [str(e.network) for e in remove] == [
        "203.0.113.0/24"]
    assert kernel(backend) == {"203.0.113.9/32"} and states(inside) == [Ban.State.ACTIVE]


def test_when_the_wider_ban_expires_the_covered_ones_come_back_on_the_next_run(sshd: Jail) -> None:
    clock = [1000.0]
    backend = RecordingBackend(clock=lambda: clock[0])
    wide = ban(sshd, "203.0.113.0/24", bantime=60)
    sync.apply_pending("local", backend)
    inside = ban(sshd, "203.0.113.9/32", bantime=3600)
    sync.apply_pending("local", backend)
    clock[0] += 61  # the kernel lifts the /24 by itself
    later = timezone.now() + dt.timedelta(seconds=61)
    report = sync.apply_pending("local", backend, now=later)
    assert report.expired == 1 and report.applied == [inside.pk]
    assert kernel(backend) == {"203.0.113.9/32"} and states(wide, inside) == [Ban.State.EXPIRED, Ban.State.ACTIVE]


def test_a_covered_ban_that_outlives_nothing_simply_expires(sshd: Jail) -> None:
    backend = RecordingBackend()
    ban(sshd, "203.0.113.0/24", bantime=3600)
    sync.apply_pending("local", backend)
    inside = ban(sshd, "203.0.113.9/32", bantime=60)
    sync.apply_pending("local", backend)
    report = sync.apply_pending("local", backend, now=timezone.now() + dt.timedelta(seconds=61))
    assert report.expired == 1 and not report.applied and states(inside) == [Ban.State.EXPIRED]


def test_the_blocklist_and_a_jail_are_separate_sets(sshd: Jail) -> None:
    backend = RecordingBackend()
    ban(None, "203.0.113.0/24")
    in_jail = ban(sshd, "203.0.113.9/32")
    sync.apply_pending("local", backend)
    assert states(in_jail) == [Ban.State.ACTIVE]
    assert kernel(backend, "@blocklist") == {"203.0.113.0/24"} and kernel(backend) == {"203.0.113.9/32"}


class Picky(RecordingBackend):
    """Refuses, for good, any batch that adds one of `bad` (as a kernel refuses an element)."""

    def __init__(self, bad: set[str], entries_known: bool) -> None:
        super().__init__()
        self.bad = bad
        self.entries_known = entries_known

    def apply(self, add: Sequence[BanEntry] = (), remove: Sequence[BanEntry] = ()) -> None:
        wrong = [entry for entry in add if str(entry.network) in self.bad]
        if wrong:
            self.calls.append(("refused", (tuple(add), tuple(remove))))
            raise FirewallError("nft: interval overlaps", permanent=True,
                                entries=wrong if self.entries_known else ())
        super().apply(add=add, remove=remove)


@pytest.mark.parametrize("entries_known", [True, False], ids=["named", "unnamed"])
def test_one_bad_element_never_fails_the_others(sshd: Jail, entries_known: bool) -> None:
    bad = {"203.0.113.7/32", "198.51.100.3/32"}
    backend = Picky(bad, entries_known)
    good_lift = ban(sshd, "192.0.0.9/32")
    sync.apply_pending("local", backend)
    actions.lift_ban(good_lift, audit.Actor.system())
    bans = [ban(sshd, f"203.0.113.{n}/32") for n in range(1, 11)] + [ban(sshd, "198.51.100.3/32")]
    report = sync.apply_pending("local", backend)
    failed = {b.network for b in Ban.objects.filter(state=Ban.State.FAILED)}
    assert failed == bad and sorted(report.failed) == sorted(b.pk for b in bans if b.network in bad)
    assert kernel(backend) == {b.network for b in bans} - bad
    assert report.lifted == [good_lift.pk]
    assert all("interval overlaps" in b.apply_error for b in Ban.objects.filter(state=Ban.State.FAILED))


def test_a_transient_error_fails_the_whole_run_for_a_retry(sshd: Jail) -> None:
    backend = RecordingBackend()
    bans = [ban(sshd, "203.0.113.1/32"), ban(sshd, "203.0.113.2/32")]
    backend.fail_next(FirewallError("Device or resource busy", permanent=False))
    report = sync.apply_pending("local", backend)
    assert report.error is not None and states(*bans) == [Ban.State.FAILED] * 2


def test_the_covered_state_is_shown(sshd: Jail) -> None:
    from tests.clients import client_for

    backend = RecordingBackend()
    wide = ban(sshd, "203.0.113.0/24")
    sync.apply_pending("local", backend)
    inside = ban(sshd, "203.0.113.9/32")
    sync.apply_pending("local", backend)
    page = client_for("viewer").get(f"/bans/{inside.pk}/")
    assert b"covered by a wider ban" in page.content and f'href="/bans/{wide.pk}/"'.encode() in page.content


def test_reconcile_never_sends_a_covered_ban(sshd: Jail) -> None:
    backend = RecordingBackend()
    ban(sshd, "203.0.113.0/24")
    sync.apply_pending("local", backend)
    ban(sshd, "203.0.113.9/32")
    sync.apply_pending("local", backend)
    backend.simulate_ruleset_flush()
    sync.reconcile("local", backend)
    assert kernel(backend) == {"203.0.113.0/24"}


def test_a_deleted_jails_bans_are_lifted_never_moved_to_the_blocklist(sshd: Jail) -> None:
    backend = RecordingBackend()
    banned = ban(sshd, "203.0.113.9/32")
    sync.apply_pending("local", backend)
    sshd.delete()
    report = sync.apply_pending("local", backend)
    assert report.lifted == [banned.pk] and states(banned) == [Ban.State.LIFTED]
    assert not backend.snapshot()["@blocklist"] and "sshd" not in backend.snapshot()


@pytest.mark.netns
def test_in_a_real_kernel_a_wide_ban_never_poisons_its_set(sshd: Jail, pair: NamespacePair) -> None:
    from tests.bans.netns import ATTACKER_V4, SERVER_V4, RemoteFirewall

    server, attacker = pair.driver(pair.server), pair.driver(pair.attacker)
    server.call(op="listen", ports=[22])
    backend = RemoteFirewall(server)
    try:
        wide = ban(sshd, "10.201.0.0/24")  # holds the attacker, 10.201.0.2
        assert sync.apply_pending("local", backend).error is None
        later = [ban(sshd, f"{ATTACKER_V4}/32"), ban(sshd, "10.201.0.77/32"), ban(sshd, "198.51.100.1/32")]
        report = sync.apply_pending("local", backend)  # the report: "overlaps 10.201.0.0/24", all refused
        assert report.error is None and not report.failed
        assert states(*later) == [Ban.State.COVERED, Ban.State.COVERED, Ban.State.ACTIVE]
        assert {str(n) for n in backend.snapshot()["sshd"]} == {"10.201.0.0/24", "198.51.100.1/32"}
        assert attacker.call(op="probe", host=SERVER_V4, port=22, timeout=0.5) == "timeout"
        actions.lift_ban(wide, audit.Actor.system())
        report = sync.apply_pending("local", backend)  # out goes the /24, in the same batch its covered bans
        assert sorted(report.applied) == sorted(b.pk for b in later[:2])
        assert {str(n) for n in backend.snapshot()["sshd"]} == {f"{ATTACKER_V4}/32", "10.201.0.77/32",
                                                                "198.51.100.1/32"}
        assert attacker.call(op="probe", host=SERVER_V4, port=22, timeout=0.5) == "timeout"
        wider = ban(sshd, "10.201.0.0/16")
        sync.apply_pending("local", backend)  # absorbs the two /32 inside it, in one transaction
        assert {str(n) for n in backend.snapshot()["sshd"]} == {"10.201.0.0/16", "198.51.100.1/32"}
        assert states(*later) == [Ban.State.COVERED, Ban.State.COVERED, Ban.State.ACTIVE]
        assert {Ban.objects.get(pk=b.pk).covered_by_id for b in later[:2]} == {wider.pk}
    finally:
        backend.teardown()


# --- after review -----------------------------------------------------------------------------------------


def test_the_cover_lookup_agrees_with_comparing_every_pair() -> None:
    import ipaddress
    import random

    from bans.overlaps import Covers

    rng = random.Random(3)
    covers, wide = Covers(), list[ipaddress.IPv4Network]()
    for n in range(200):
        network = ipaddress.IPv4Network(f"10.{rng.randrange(8)}.{rng.randrange(256)}.0/{rng.choice([16, 20, 24, 28])}",
                                        strict=False)
        if not any(network.overlaps(other) for other in wide):  # disjoint, as the kernel's set is
            wide.append(network)
            covers.add("sshd", network, Ban(pk=n, network=str(network)))
    for _ in range(3000):
        probe = ipaddress.IPv4Network(f"10.{rng.randrange(8)}.{rng.randrange(256)}.{rng.randrange(256)}/"
                                      f"{rng.choice([20, 24, 30, 32])}", strict=False)
        expected = [w for w in wide if w != probe and probe.subnet_of(w)]
        found = covers.container("sshd", probe)
        assert (found.network if found else None) == (str(expected[0]) if expected else None)
        assert covers.container("web", probe) is None


def test_a_ban_lifted_while_it_was_being_absorbed_stays_lifted(sshd: Jail) -> None:
    from bans import overlaps

    backend = RecordingBackend()
    narrow = ban(sshd, "203.0.113.9/32")
    sync.apply_pending("local", backend)
    wide = ban(sshd, "203.0.113.0/24")
    actions.lift_ban(narrow, audit.Actor.system())  # between the worker's arrangement and its verdict
    overlaps.mark_covered({narrow.pk: wide.pk})
    assert states(narrow) == [Ban.State.LIFTING]


def test_ten_thousand_bans_claimed_at_once_are_arranged(sshd: Jail) -> None:
    # a worker back after an outage finds them all waiting: no pair of them may be compared
    now = timezone.now().timestamp()
    Ban.objects.bulk_create([Ban(jail=sshd, jail_name="sshd", network=f"198.18.{n // 250}.{n % 250 + 1}/32",
                                 family=4, bantime=600, started_at=timezone.now(),
                                 expires_at=timezone.now() + dt.timedelta(seconds=600)) for n in range(10_000)])
    wide = new_ban("sshd", "198.18.3.0/24", 600, now=now, host="local", jail=sshd, origin=Ban.Origin.USER)
    backend = RecordingBackend()
    report = sync.apply_pending("local", backend)
    assert report.error is None and len(report.applied) == 10_000 - 250 + 1
    assert len(report.covered) == 250 and Ban.objects.filter(covered_by=wide).count() == 250


def test_orphans_a_kernel_could_not_take_wait_again_instead_of_showing_active(sshd: Jail) -> None:
    backend = RecordingBackend()
    wide, inside = ban(sshd, "203.0.113.0/24"), ban(sshd, "203.0.113.9/32")
    past = timezone.now() - dt.timedelta(seconds=1)
    Ban.objects.filter(pk__in=[wide.pk, inside.pk]).update(state=Ban.State.APPLYING, next_attempt_at=past)
    sync.reconcile("local", backend)  # the worker that claimed them died
    assert states(wide, inside) == [Ban.State.ACTIVE, Ban.State.PENDING]
    sync.apply_pending("local", backend)
    assert states(inside) == [Ban.State.COVERED] and kernel(backend) == {"203.0.113.0/24"}


def test_a_claim_in_progress_is_no_orphan(sshd: Jail) -> None:
    backend = RecordingBackend()
    claimed = ban(sshd, "203.0.113.9/32")
    alive = f"{socket.gethostname()}:1"  # a process of this machine that lives on (init), as jailctl would
    Ban.objects.filter(pk=claimed.pk).update(state=Ban.State.APPLYING, claimed_by=alive,
                                             next_attempt_at=timezone.now() + sync.CLAIM_DEADLINE)
    sync.reconcile("local", backend)  # jailctl is applying it right now: its verdict is its own
    assert states(claimed) == [Ban.State.APPLYING]
    Ban.objects.filter(pk=claimed.pk).update(claimed_by=f"{socket.gethostname()}:{2 ** 22 + 7}")  # no such pid
    sync.reconcile("local", backend)  # its claimer died: settled at once, not after the deadline
    assert states(claimed) == [Ban.State.ACTIVE] and kernel(backend) == {"203.0.113.9/32"}


def test_a_claim_whose_claimer_ended_unreaped_is_settled_at_once(sshd: Jail) -> None:
    """A pool process killed with its worker stays a zombie until init reaps it, which in a container
    may take long: it answers kill(pid, 0), but it claims nothing any more."""
    backend = RecordingBackend()
    claimed = ban(sshd, "203.0.113.9/32")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while not sync.is_zombie(ended.pid):  # exited, not yet reaped (no wait() until the end)
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        Ban.objects.filter(pk=claimed.pk).update(state=Ban.State.APPLYING,
                                                 claimed_by=f"{socket.gethostname()}:{ended.pid}",
                                                 next_attempt_at=timezone.now() + sync.CLAIM_DEADLINE)
        sync.reconcile("local", backend)
        assert states(claimed) == [Ban.State.ACTIVE]
    finally:
        ended.wait()
    assert not sync.is_zombie(os.getpid())
