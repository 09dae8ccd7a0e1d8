"""jailctl: fail2ban-client's jobs against the database (the firewall worker is not called here:
its enqueueing is captured, and tests/bans/test_sync.py covers what it does)."""

from __future__ import annotations

import json
import re
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from bans.models import Ban
from bans.services import Observed, record_failures
from jails import changes
from jails.access.audit import Actor
from tests.factories import make_jail

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host", "no_broker")]


def jailctl(*args: str) -> str:
    out = StringIO()
    call_command("jailctl", *args, stdout=out)
    return out.getvalue()


def test_it_lists_enabled_jails() -> None:
    make_jail("sshd")
    make_jail("postfix", enabled=False)
    assert "Jail list:\tsshd" in jailctl("status")
    assert json.loads(jailctl("status", "--json")) == {"jails": ["sshd"]}


def test_it_shows_a_jail_like_fail2ban_client(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    jail = make_jail("sshd", maxretry=2, logpath=[str(log)])
    now = time.time()  # status shows the bans in force now: the ban must not have run out already
    record_failures(jail, [Observed("203.0.113.9", now - 3), Observed("203.0.113.9", now - 2),
                           Observed("198.51.100.2", now - 1)], now=now, own_addresses=[], catching_up=False)
    text = jailctl("status", "sshd")
    assert "|  |- Currently failed:\t1" in text and "|  |- Total failed:\t3" in text
    assert f"|  `- File list:\t{log}" in text
    assert "   `- Banned IP list:\t203.0.113.9" in text
    data = json.loads(jailctl("status", "sshd", "--json"))
    assert (data["currently_banned"], data["total_banned"]) == (1, 1)


def test_status_shows_the_global_ignore_list_and_the_jails_own() -> None:
    make_jail("sshd", ignoreip=["198.51.100.0/24", "192.0.2.9"])
    changes.add_global_ignored(["192.0.2.9", "10.0.0.0/8"], Actor.system())

    text = jailctl("status", "sshd")
    data = json.loads(jailctl("status", "sshd", "--json"))

    assert ("|- Ignore list\n|  |- Global list:\t192.0.2.9 10.0.0.0/8\n"
            "|  `- Jail's own:\t198.51.100.0/24 192.0.2.9\n`- Actions\n") in text
    assert data["ignoreip"] == ["192.0.2.9", "10.0.0.0/8", "198.51.100.0/24"]  # effective: each entry once
    assert (data["ignoreip_global"], data["ignoreip_own"]) == (["192.0.2.9", "10.0.0.0/8"],
                                                               ["198.51.100.0/24", "192.0.2.9"])


def test_it_bans_and_unbans_by_hand() -> None:
    make_jail("sshd", bantime=600)
    assert "banned 203.0.113.77/32 in sshd until" in jailctl("ban", "sshd", "203.0.113.77", "--time", "1h")
    ban = Ban.objects.get()
    assert (ban.bantime, ban.origin, ban.state) == (3600, Ban.Origin.USER, Ban.State.PENDING)
    assert "lifting 1 ban(s)" in jailctl("unban", "sshd", "203.0.113.77")
    assert Ban.objects.get().state == Ban.State.LIFTING


def test_it_refuses_to_ban_an_ignored_address_with_the_reason() -> None:
    make_jail("sshd", ignoreip=["192.0.2.0/24"])
    with pytest.raises(CommandError, match="listed in ignoreip of jail sshd"):
        jailctl("ban", "sshd", "192.0.2.5")
    with pytest.raises(CommandError, match=re.escape("refused: 127.0.0.1 is an address of this host")):
        jailctl("ban", "sshd", "127.0.0.1")
    with pytest.raises(CommandError, match="loopback"):
        jailctl("ban", "sshd", "127.0.0.2")
    with pytest.raises(CommandError, match=re.escape("contains 192.0.2")):
        jailctl("ban", "blocklist", "192.0.0.0/16")
    assert not Ban.objects.exists()


def test_it_refuses_an_address_whose_ignoreip_entry_was_written_ipv4_mapped() -> None:
    make_jail("sshd", ignoreip=["::ffff:192.0.2.7", "::ffff:198.51.100.0/120"])  # as imported, unconverted
    with pytest.raises(CommandError, match=re.escape("listed in ignoreip of jail sshd as ::ffff:192.0.2.7")):
        jailctl("ban", "sshd", "192.0.2.7")
    with pytest.raises(CommandError, match=re.escape("listed in ignoreip of jail sshd as ::ffff:198.51.100.0/120")):
        jailctl("ban", "sshd", "198.51.100.9")
    assert not Ban.objects.exists()


def test_it_explains_bad_input() -> None:
    make_jail("sshd")
    with pytest.raises(CommandError, match="no jail named 'nope'"):
        jailctl("ban", "nope", "192.0.2.5")
    with pytest.raises(CommandError, match="not an address or network"):
        jailctl("ban", "sshd", "203.0.113.999")
    with pytest.raises(CommandError, match="is not a duration"):
        jailctl("ban", "sshd", "203.0.113.9", "--time", "soon")
    with pytest.raises(CommandError, match="is not banned"):
        jailctl("unban", "--all", "203.0.113.9")


def test_it_checks_the_configuration(tmp_path: Path) -> None:
    jail = make_jail("sshd", logpath=[str(tmp_path / "missing.log")])
    assert "WARNING: jail sshd: no log file matches" in jailctl("check")
    jail.filter.source = "[Definition]\nfailregex = ^(broken <HOST>\n"
    jail.filter.save()
    with pytest.raises(CommandError, match="configuration has errors"):
        jailctl("check")


def test_status_lists_the_same_bans_in_text_and_json_addresses_without_a_prefix() -> None:
    jail = make_jail("sshd")
    for network, family in (("203.0.113.21/32", 4), ("2001:db8::21/128", 6), ("198.51.100.0/24", 4),
                            ("2001:db8::/32", 6)):
        Ban.objects.create(jail=jail, jail_name="sshd", network=network, family=family, bantime=600,
                           state=Ban.State.ACTIVE)
    listed = json.loads(jailctl("status", "sshd", "--json"))["banned_ip_list"]
    assert sorted(listed) == sorted(["203.0.113.21", "2001:db8::21", "198.51.100.0/24", "2001:db8::/32"])
    text = jailctl("status", "sshd")
    assert f"   `- Banned IP list:\t{' '.join(listed)}" in text
