"""bans.services.record_failures: failures counted per jail, bans created when earned."""

from __future__ import annotations

import pytest

from bans.models import Ban, Failure, Ignored, Tally
from bans.services import Observed, record_failures
from tests.bans.builders import make_jail

pytestmark = pytest.mark.django_db

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
