"""bans.fanout: a ban made on one host copied to the hosts its jail's scope names, on the central side;
lifting and making permanent act on the copies too; lists, counts and bantime.increment see one ban.

The hosts here are rows (tests.factories.make_host); tests/bans/test_fleet_*.py use real credentials.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import timezone
from pytest_django import DjangoCaptureOnCommitCallbacks

from bans import actions, fanout, selectors, services
from bans.models import Ban
from bans.views import banned_per_jail
from jails.access.audit import Actor
from jails.models import AuditEntry, Host, Jail
from tests.factories import make_host, make_jail

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host", "no_broker")]

CENTRAL = settings.IPS_HOST_NAME
ATTACKER = "203.0.113.9"


@pytest.fixture(autouse=True)
def fleet() -> None:
    Host.central()
    make_host("web1", groups=("web",), addresses=("198.51.100.1",))
    make_host("web2", groups=("web",), addresses=("198.51.100.2",))
    make_host("mail1", groups=("mail",), addresses=("198.51.100.3",))
    make_host("gone", state=Host.State.REVOKED, addresses=("198.51.100.4",))


def original(jail: Jail | None, host: str = "web1", network: str = f"{ATTACKER}/32", **values: object) -> Ban:
    ban = services.build_ban(jail.name if jail else Ban.BLOCKLIST, network, 600 if jail else -1,
                             now=services.now_epoch(), host=host, jail=jail, origin=Ban.Origin.JAIL,
                             evidence=["the line that did it"])
    for name, value in values.items():
        setattr(ban, name, value)
    ban.save()
    return ban


def copies_of(ban: Ban) -> dict[str, Ban]:
    return {copy.host: copy for copy in Ban.objects.filter(primary=ban)}


def test_a_host_scoped_jails_ban_stays_on_its_host_and_needs_no_fan_out() -> None:
    ban = original(make_jail("sshd"))
    assert not ban.fanout_pending
    assert fanout.fan_out_pending().originals == 0 and copies_of(ban) == {}


def test_an_every_host_ban_is_copied_to_every_other_host_not_removed_ones_with_its_end_time() -> None:
    ban = original(make_jail("sshd", ban_scope=Jail.BanScope.ALL))
    assert ban.fanout_pending
    report = fanout.fan_out_pending()
    copies = copies_of(ban)
    assert sorted(copies) == sorted([CENTRAL, "web2", "mail1"]) and report.hosts == set(copies)
    for copy in copies.values():
        assert (copy.network, copy.jail_name, copy.expires_at, copy.state) == (
            ban.network, ban.jail_name, ban.expires_at, Ban.State.PENDING)
        assert copy.evidence == [] and copy.primary_id == ban.pk
    ban.refresh_from_db()
    assert not ban.fanout_pending
    # people see one ban: the list, the per-jail counts
    assert list(selectors.search_bans({})) == [ban]
    assert banned_per_jail() == [{"jail": "sshd", "count": 1}]
    # a second run copies nothing twice
    Ban.objects.filter(pk=ban.pk).update(fanout_pending=True)
    fanout.fan_out_pending()
    assert Ban.objects.filter(primary=ban).count() == 3


def test_a_group_scoped_ban_goes_to_the_groups_hosts_and_the_blocklist_everywhere() -> None:
    web = original(make_jail("nginx", ban_scope=Jail.BanScope.GROUP, ban_group="web"), host="web1")
    blocked = original(None, host=CENTRAL, network="203.0.113.0/24")
    fanout.fan_out_pending()
    assert sorted(copies_of(web)) == ["web2"]
    assert sorted(copies_of(blocked)) == ["mail1", "web1", "web2"]


def test_a_host_that_banned_the_address_itself_keeps_its_own_ban() -> None:
    jail = make_jail("sshd", ban_scope=Jail.BanScope.ALL)
    own = original(jail, host="web2")
    first = original(jail, host="web1")
    fanout.fan_out_pending()
    assert "web2" not in copies_of(first) and Ban.objects.get(pk=own.pk).primary_id is None
    assert "web1" not in copies_of(own)  # web1 has its own, too


def test_a_ban_the_lockout_gate_refuses_is_never_copied() -> None:
    jail = make_jail("sshd", ban_scope=Jail.BanScope.ALL)
    at_a_fleet_host = original(jail, host="web1", network="198.51.100.2/32")  # web2's pinned address
    report = fanout.fan_out_pending()
    assert copies_of(at_a_fleet_host) == {}
    assert "fleet host web2" in report.refused[at_a_fleet_host.pk]


def test_the_gate_protects_every_fleet_hosts_pinned_addresses_but_not_a_removed_ones() -> None:
    gate = services.current_gate()
    assert "fleet host mail1" in str(gate.refusal(services.parse_network("198.51.100.3")))
    assert gate.refusal(services.parse_network("198.51.100.4")) is None


def test_lifting_an_original_lifts_its_copies_with_one_audit_entry_and_a_sync_per_host() -> None:
    ban = original(make_jail("sshd", ban_scope=Jail.BanScope.ALL))
    fanout.fan_out_pending()
    assert actions.lift_ban(ban, Actor.command())
    assert set(Ban.objects.values_list("state", flat=True)) == {Ban.State.LIFTING}
    assert AuditEntry.objects.filter(action="ban.lift").count() == 1
    # each host's firewall worker is asked once the (test's one) transaction commits
    waiting = transaction.get_connection().run_on_commit
    asked = {func.host for _, func, _ in waiting if isinstance(func, services.FirewallSyncRequest)}
    assert asked == {CENTRAL, "web1", "web2", "mail1"}


def test_unban_by_address_lifts_the_ban_wherever_it_was_made_and_its_copies() -> None:
    ban = original(make_jail("sshd", ban_scope=Jail.BanScope.ALL), host="mail1")
    fanout.fan_out_pending()
    assert [b.pk for b in actions.unban(ATTACKER, Actor.command())] == [ban.pk]
    assert not Ban.objects.in_force().exists()


def test_making_an_original_permanent_makes_its_copies_permanent() -> None:
    ban = original(make_jail("sshd", ban_scope=Jail.BanScope.ALL))
    fanout.fan_out_pending()
    assert actions.make_permanent(ban, Actor.command())
    assert set(Ban.objects.values_list("bantime", "expires_at")) == {(-1, None)}


def test_a_joining_host_receives_the_bans_in_force_of_its_scope_with_their_remaining_time() -> None:
    everywhere = original(make_jail("sshd", ban_scope=Jail.BanScope.ALL))
    for_web = original(make_jail("nginx", ban_scope=Jail.BanScope.GROUP, ban_group="web"))
    original(make_jail("postfix"))  # the host's own only
    original(make_jail("dovecot", ban_scope=Jail.BanScope.ALL), state=Ban.State.LIFTED)
    original(make_jail("recidive", ban_scope=Jail.BanScope.ALL),
             expires_at=timezone.now() - dt.timedelta(seconds=1))  # over
    blocked = original(None, network="203.0.113.0/24")
    new = make_host("web3", groups=("web",))
    assert fanout.copy_to_host(new) == 3
    got = {copy.primary_id: copy for copy in Ban.objects.filter(host="web3")}
    assert set(got) == {everywhere.pk, for_web.pk, blocked.pk}
    assert got[everywhere.pk].expires_at == everywhere.expires_at  # the remaining time, not a new one


def test_a_removed_hosts_bans_end_everywhere() -> None:
    jail = make_jail("sshd", ban_scope=Jail.BanScope.ALL)
    made_there = original(jail, host="web1")
    made_here = original(jail, host=CENTRAL, network="203.0.113.10/32")
    fanout.fan_out_pending()
    assert fanout.end_host("web1") == 2  # its own ban and its copy of central's
    states = dict(Ban.objects.values_list("host", "state").filter(primary=made_there))
    assert set(states.values()) == {Ban.State.LIFTING}
    assert Ban.objects.get(pk=made_there.pk).state == Ban.State.LIFTED
    assert Ban.objects.get(pk=made_here.pk).state == Ban.State.PENDING


def test_copies_do_not_count_as_earlier_bans_for_bantime_increment() -> None:
    jail = make_jail("sshd", ban_scope=Jail.BanScope.ALL)
    original(jail)
    fanout.fan_out_pending()
    assert services.earlier_bans(f"{ATTACKER}/32", jail, services.now_epoch()) == 1


def test_a_new_ban_in_an_every_host_jail_asks_for_a_fan_out_when_it_commits(
        django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks) -> None:
    jail = make_jail("sshd", ban_scope=Jail.BanScope.ALL)
    with django_capture_on_commit_callbacks() as callbacks:
        services.ban_by_hand(jail, "203.0.113.77", 600, actor=Actor.command(), host=CENTRAL)
    assert sum(isinstance(callback, services.FanoutRequest) for callback in callbacks) == 1
    assert fanout.has_work()


def test_recidive_applies_on_every_host_by_default() -> None:
    assert Jail.default_scope("recidive") == Jail.BanScope.ALL and Jail.default_scope("sshd") == Jail.BanScope.HOST


def test_placing_a_jail_on_a_host_is_audited_and_wakes_the_followers() -> None:
    from bans import hosts

    jail = make_jail("nginx")
    before = Jail.objects.get(pk=jail.pk).updated_at
    hosts.place_jail("nginx", "web1", logpath=["/var/log/nginx/error.log"], actor=Actor.command())
    assert Jail.objects.get(pk=jail.pk).updated_at > before
    entry = AuditEntry.objects.get(action="jail.place")
    assert entry.after == {"host": "web1", "logpath": ["/var/log/nginx/error.log"], "new": True}
    with pytest.raises(hosts.FleetError, match="no host of the fleet is called 'gone'"):
        hosts.place_jail("nginx", "gone", actor=Actor.command())
    with pytest.raises(hosts.FleetError, match="absolute"):
        hosts.place_jail("nginx", "web2", logpath=["relative.log"], actor=Actor.command())
    assert hosts.unplace_jail("nginx", "web1", actor=Actor.command())
    assert not hosts.unplace_jail("nginx", "web1", actor=Actor.command())


def test_the_bans_list_shows_where_a_ban_was_made_and_filters_by_the_kernel_that_holds_it(viewer: Client) -> None:
    everywhere = original(make_jail("sshd", ban_scope=Jail.BanScope.ALL), host="web1")
    fanout.fan_out_pending()
    mail_only = original(make_jail("postfix"), host="mail1", network="203.0.113.44/32")

    def rows(query: str) -> set[int]:
        html = viewer.get(f"/bans/{query}").content.decode()
        return {pk for pk in (everywhere.pk, mail_only.pk) if f'id="ban-{pk}"' in html}

    assert rows("") == {everywhere.pk, mail_only.pk}  # one row each, not one per host
    assert rows("?host=web2") == {everywhere.pk}  # a copy is in web2's kernel
    assert rows("?host=mail1") == {everywhere.pk, mail_only.pk}
    html = viewer.get("/bans/").content.decode()
    assert "Made on" in html and '<td class="ban-host">web1</td>' in html


def test_a_jails_page_says_where_it_runs_and_where_its_bans_apply(viewer: Client) -> None:
    jail = make_jail("nginx", ban_scope=Jail.BanScope.GROUP, ban_group="web")
    html = viewer.get(f"/jails/{jail.name}/").content.decode()
    assert "this server only" in html and "the hosts of group <strong>web</strong>" in html
    from jails.models import JailHost

    JailHost.objects.create(jail=jail, host=Host.objects.get(name="web1"), logpath=["/srv/web1/error.log"])
    html = viewer.get(f"/jails/{jail.name}/").content.decode()
    assert "<strong>web1</strong>" in html and "/srv/web1/error.log" in html
