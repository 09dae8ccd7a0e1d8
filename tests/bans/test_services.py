"""bans.services.record_failures: failures counted per jail, bans created when earned, the firewall asked."""

from __future__ import annotations

from typing import Any, cast

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from pytest_django import DjangoCaptureOnCommitCallbacks

from bans.models import Ban, Failure, Ignored, Tally
from bans.services import FirewallSyncRequest, Observed, record_failures, request_firewall_sync
from jails import changes
from jails.access.audit import Actor
from tests.factories import make_jail

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host")]

NOW = 1_790_000_000.0
ATTACKER = "203.0.113.9"


def fails(host: str, count: int, start: float = NOW - 30) -> list[Observed]:
    return [Observed(host=host, time=start + i, lines=(f"line {i} from {host}",)) for i in range(count)]


def test_it_bans_on_the_maxretry_th_failure_within_findtime() -> None:
    jail = make_jail(maxretry=3)
    first = record_failures(jail, fails(ATTACKER, 2), now=NOW, own_addresses=[], catching_up=False)
    assert first.bans == [] and Tally.objects.get(address=ATTACKER).count == 2
    second = record_failures(jail, fails(ATTACKER, 1, start=NOW - 1), now=NOW, own_addresses=[],
                             catching_up=False)
    [ban] = second.bans
    assert (ban.network, ban.state, ban.bantime, ban.jail_name) == ("203.0.113.9/32", Ban.State.PENDING, 3600, "sshd")
    assert len(ban.evidence) == 3
    assert not Tally.objects.exists()  # counting starts again after a ban, as in fail2ban
    assert Failure.objects.count() == 3


def test_it_does_not_ban_twice_while_a_ban_is_live() -> None:
    jail = make_jail(maxretry=1)
    record_failures(jail, fails(ATTACKER, 1), now=NOW, own_addresses=[], catching_up=False)
    again = record_failures(jail, fails(ATTACKER, 1), now=NOW, own_addresses=[], catching_up=False)
    assert again.bans == []
    assert Ban.objects.count() == 1


def test_it_never_bans_an_ignored_address_and_says_why() -> None:
    jail = make_jail(maxretry=1, ignoreip=["203.0.113.0/24"])
    decision = record_failures(jail, fails(ATTACKER, 3), now=NOW, own_addresses=[], catching_up=False)
    assert decision.bans == [] and decision.ignored == 3
    assert Ignored.objects.get().reason == "listed in ignoreip as 203.0.113.0/24"


def test_it_never_bans_this_host_or_loopback() -> None:
    jail = make_jail(maxretry=1)
    decision = record_failures(jail, fails("192.0.2.10", 1) + fails("127.0.0.1", 1), now=NOW,
                               own_addresses=["192.0.2.10"], catching_up=False)
    assert decision.bans == []
    assert set(Ignored.objects.values_list("reason", flat=True)) == {"an address of this host", "loopback"}


def test_it_skips_host_names_and_stale_lines_when_catching_up() -> None:
    jail = make_jail(maxretry=1, findtime=600)
    decision = record_failures(jail, fails("evil.example", 1) + fails(ATTACKER, 1, start=NOW - 3600), now=NOW,
                               own_addresses=[], catching_up=True)
    assert (decision.skipped, decision.counted, decision.bans) == (2, 0, [])


def test_it_makes_repeat_offenders_wait_longer() -> None:
    jail = make_jail(maxretry=1, bantime=600, bantime_increment=True, bantime_factor=1)
    record_failures(jail, fails(ATTACKER, 1), now=NOW, own_addresses=[], catching_up=False)
    Ban.objects.update(state=Ban.State.EXPIRED)
    [second] = record_failures(jail, fails(ATTACKER, 1, start=NOW + 700), now=NOW + 701, own_addresses=[],
                               catching_up=False).bans
    assert second.earlier_bans == 1
    assert second.bantime == 1200  # fail2ban's default formula: 600 * 2**1 * factor 1


def test_it_bans_permanently_when_bantime_is_minus_one() -> None:
    jail = make_jail(maxretry=1, bantime=-1)
    [ban] = record_failures(jail, fails(ATTACKER, 1), now=NOW, own_addresses=[], catching_up=False).bans
    assert ban.expires_at is None and ban.is_permanent


def test_it_counts_ipv4_mapped_ipv6_as_ipv4() -> None:
    jail = make_jail(maxretry=1)
    [ban] = record_failures(jail, fails("::ffff:203.0.113.9", 1), now=NOW, own_addresses=[],
                            catching_up=False).bans
    assert (ban.network, ban.family) == ("203.0.113.9/32", 4)


# --- set-based counting: one call with many failures decides as one call per failure did -----------


def one_at_a_time_and_all_at_once(reads: list[tuple[float, list[Observed]]], **options: object) -> tuple[Any, Any]:
    """The same reads (now, failures) through two identical jails: one call per failure, then one call
    per read."""
    results: list[Any] = []
    for name, per_failure in (("single", True), ("bulk", False)):
        jail = make_jail(name, **options)
        for now, observed in reads:
            for call in ([[item] for item in observed] if per_failure else [observed]):
                record_failures(jail, call, now=now, own_addresses=["192.0.2.10"], catching_up=False)
        tallies = sorted(Tally.objects.filter(jail=jail).values_list("address", "count", "first_time", "last_time",
                                                                      "matches"))
        bans = sorted(Ban.objects.filter(jail_name=name).values_list("network", "bantime", "earlier_bans", "evidence"))
        results.append((tallies, bans))
    return results[0], results[1]


def test_it_decides_a_whole_read_as_it_would_one_failure_at_a_time() -> None:
    observed = []
    for i in range(40):  # interleaved addresses, each reaching maxretry, then failing again after its ban
        host = f"198.51.100.{i % 7}"
        observed.append(Observed(host=host, time=NOW - 50 + i, lines=(f"line {i}",)))
    observed += [Observed(host="192.0.2.10", time=NOW - 5), Observed(host="not-an-address", time=NOW - 5)]
    single, bulk = one_at_a_time_and_all_at_once([(NOW, observed)], maxretry=3, maxmatches=2)
    assert single == bulk
    # every address banned once; after its ban the 6th failure of an address banned already drops its
    # tally, two addresses have 5 failures and keep a tally of 2
    assert len(bulk[1]) == 7 and [(address, count) for address, count, *_ in bulk[0]] == [
        ("198.51.100.5", 2), ("198.51.100.6", 2)]


def test_it_rescales_a_long_tally_in_one_read_as_fail2ban_does() -> None:
    # each failure within findtime of the previous one, longer than findtime in all: fail2ban's estimate
    reads = [(NOW, [Observed(ATTACKER, NOW - 10), Observed(ATTACKER, NOW - 5)]),
             (NOW + 14, [Observed(ATTACKER, NOW + 12), Observed(ATTACKER, NOW + 14)])]
    single, bulk = one_at_a_time_and_all_at_once(reads, maxretry=10, findtime=20)
    assert single == bulk
    assert bulk[0][0][1] == 4  # 2 rescaled to round(2/22*20) = 2, +1; then round(3/22*20) = 3, +1


def test_it_notes_an_ignored_address_once_per_findtime() -> None:
    jail = make_jail(maxretry=1, ignoreip=["203.0.113.0/24"])
    record_failures(jail, fails(ATTACKER, 3) + fails("203.0.113.10", 2), now=NOW, own_addresses=[],
                    catching_up=False)
    record_failures(jail, fails(ATTACKER, 1), now=NOW + 10, own_addresses=[], catching_up=False)
    assert sorted(Ignored.objects.values_list("address", flat=True)) == ["203.0.113.10", ATTACKER]


def test_it_asks_the_firewall_once_per_transaction_however_many_bans(
        django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks) -> None:
    jail = make_jail(maxretry=1)
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        decision = record_failures(jail, [Observed(f"198.51.100.{i}", NOW - 1) for i in range(1, 51)], now=NOW,
                                   own_addresses=[], catching_up=False)
        record_failures(jail, [Observed("198.51.100.77", NOW - 1)], now=NOW, own_addresses=[], catching_up=False)
    assert len(decision.bans) == 50 and all(ban.pk for ban in decision.bans)
    assert len(callbacks) == 1


def test_it_keeps_the_firewall_request_when_a_later_savepoint_rolls_back(
        django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks) -> None:
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        with transaction.atomic():
            request_firewall_sync("local")
        try:
            with transaction.atomic():
                request_firewall_sync("local")
                request_firewall_sync("web2")
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
    # (the fixture types its callbacks as any callable: these are the requests)
    assert [cast(FirewallSyncRequest, callback).host for callback in callbacks] == ["local"]


def test_it_asks_again_after_a_rolled_back_request(
        django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks) -> None:
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        try:
            with transaction.atomic():
                request_firewall_sync("local")
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        request_firewall_sync("local")
    # (the fixture types its callbacks as any callable: these are the requests)
    assert [cast(FirewallSyncRequest, callback).host for callback in callbacks] == ["local"]


# --- the global ignore list (jails.ignores): every jail honours it --------------------------------------


def test_no_jail_counts_an_address_of_the_global_list_and_each_counts_it_once_removed() -> None:
    sshd, web = make_jail("sshd", maxretry=2), make_jail("web", maxretry=2, ignoreip=["203.0.113.0/24"])
    changes.add_global_ignored(["203.0.113.0/25"], Actor.system())

    for jail in (sshd, web):
        decision = record_failures(jail, fails(ATTACKER, 2), now=NOW, own_addresses=[], catching_up=False)
        assert (decision.counted, decision.ignored, decision.bans) == (0, 2, [])
    assert not Tally.objects.exists() and not Failure.objects.exists()
    # the global list first: an address both lists hold is said to be the global list's
    assert set(Ignored.objects.values_list("jail__name", "reason")) == {
        ("sshd", "listed in the global ignore list as 203.0.113.0/25"),
        ("web", "listed in the global ignore list as 203.0.113.0/25")}

    changes.remove_global_ignored("203.0.113.0/25", Actor.system())
    counted = record_failures(sshd, fails(ATTACKER, 2), now=NOW + 1, own_addresses=[], catching_up=False)
    still_own = record_failures(web, fails(ATTACKER, 2), now=NOW + 1, own_addresses=[], catching_up=False)
    assert counted.counted == 2 and [ban.network for ban in counted.bans] == [f"{ATTACKER}/32"]
    assert still_own.ignored == 2  # web's own entry still applies


def test_only_a_read_with_failures_reads_the_global_list() -> None:
    jail = make_jail(maxretry=5)
    with CaptureQueriesContext(connection) as idle:
        record_failures(jail, fails("evil.example", 1), now=NOW, own_addresses=[], catching_up=False)
    with CaptureQueriesContext(connection) as busy:
        record_failures(jail, fails(ATTACKER, 3) + fails("198.51.100.2", 3), now=NOW, own_addresses=[],
                        catching_up=False)
    assert not [q for q in idle.captured_queries if "globalignore" in q["sql"]]
    assert len([q for q in busy.captured_queries if "globalignore" in q["sql"]]) == 1  # once per read


# --- a ban storm: more networks than one statement's batch, IPv4 and IPv6, earlier and live bans ----


def test_a_storm_of_networks_is_decided_as_each_alone_would_be() -> None:
    from bans.services import aware

    jail, other = make_jail(maxretry=1, bantime=600, bantime_increment=True, bantime_factor=1), make_jail("postfix")
    addresses = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(350)] + [f"2001:db8::{i:x}" for i in range(1, 351)]
    networks = [f"{address}/32" if "." in address else f"{address}/128" for address in addresses]
    live, ran_out, elsewhere = networks[:100], networks[100:150], networks[150:200]
    for start, state, expires in ((live, Ban.State.ACTIVE, 3600), (ran_out, Ban.State.ACTIVE, -10)):
        for network in start[::2] + start[1::2]:  # IPv4 and IPv6 among each
            Ban.objects.create(jail=jail, jail_name="sshd", network=network, host="local", state=state, bantime=600,
                               started_at=aware(NOW - 700), expires_at=aware(NOW + expires),
                               family=6 if ":" in network else 4)
    for network in elsewhere:
        Ban.objects.create(jail=other, jail_name="postfix", network=network, host="local", state=Ban.State.EXPIRED,
                           bantime=600, started_at=aware(NOW - 86400), expires_at=aware(NOW - 85800),
                           ended_at=aware(NOW - 85800), family=6 if ":" in network else 4)
    decision = record_failures(jail, [Observed(host=address, time=NOW - 1) for address in addresses], now=NOW,
                               own_addresses=[], catching_up=False)
    made = {ban.network: ban for ban in decision.bans}
    assert set(made) == set(networks) - set(live)  # a live ban is left alone; a ran-out one is replaced
    assert {(made[n].earlier_bans, made[n].bantime) for n in ran_out} == {(1, 1200)}  # bantime.increment
    assert {(made[n].earlier_bans, made[n].bantime) for n in elsewhere} == {(0, 600)}  # another jail's: not counted
    assert Ban.objects.filter(network__in=ran_out, state=Ban.State.EXPIRED, jail_name="sshd").count() == 50
    assert Ban.objects.filter(network__in=live, state=Ban.State.ACTIVE).count() == 100


@pytest.mark.skipif(connection.vendor != "postgresql", reason="pipeline mode is PostgreSQL's (SQLite runs each "
                                                               "statement as it comes)")
def test_an_error_in_a_pipelined_write_is_raised_and_the_whole_read_rolled_back() -> None:
    from django.db import DatabaseError

    from bans import bulk

    jail = make_jail(maxretry=5)

    def write() -> None:
        with transaction.atomic(), bulk.pipelined():
            # an address PostgreSQL refuses as inet: the error comes back after later statements were sent
            bulk.insert_failures(jail.pk, [("not-an-address", NOW, "line", {})], created=NOW)
            bulk.add_to_stats(jail.name, [NOW])

    with pytest.raises(DatabaseError):
        write()
    assert not Failure.objects.exists()
    assert record_failures(jail, fails(ATTACKER, 2), now=NOW, own_addresses=[], catching_up=False).counted == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has one writer: two reads never count at once")
@pytest.mark.django_db(transaction=True)
def test_two_reads_of_one_jail_at_once_count_a_new_address_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pool processes reading two sources of a jail no follower holds: each sees a first failure of
    the same address. Counted one after the other, maxretry 2 bans it; written at once, the second
    count would replace the first and the ban be missed."""
    import threading

    from django.db import connections

    from bans import bulk

    jail = make_jail(maxretry=2)
    first_read, go_on = threading.Event(), threading.Event()
    real_read = bulk.read_tallies

    def held_back(jail_id: int, host: str, addresses: Any) -> Any:
        found = real_read(jail_id, host, addresses)
        if threading.current_thread().name == "first":
            first_read.set()
            go_on.wait(10)  # the first reader holds its transaction open here
        return found

    monkeypatch.setattr(bulk, "read_tallies", held_back)
    decisions: dict[str, Any] = {}

    def read(name: str, offset: float) -> None:
        try:
            with transaction.atomic():  # as watchers.services.read_source counts a read
                decisions[name] = record_failures(jail, fails(ATTACKER, 1, start=NOW - 30 + offset), now=NOW,
                                                  own_addresses=[], catching_up=False)
        except Exception as exc:  # shown by the assertions below
            decisions[name] = exc
        finally:
            connections.close_all()

    first = threading.Thread(target=read, args=("first", 0), name="first")
    second = threading.Thread(target=read, args=("second", 1), name="second")
    first.start()
    assert first_read.wait(10)
    second.start()
    second.join(0.5)
    assert second.is_alive(), decisions  # waits for the first read's transaction
    go_on.set()
    first.join(10)
    second.join(10)
    assert len(decisions["first"].bans) + len(decisions["second"].bans) == 1
    assert Ban.objects.filter(network=f"{ATTACKER}/32").count() == 1
