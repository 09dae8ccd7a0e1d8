"""Jails per host in a fleet: which jails a host runs (jails_on), with which log paths (logpath_on),
its own log sources and tallies, and its followers' leases named by host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from bans.models import Tally
from bans.services import Observed, record_failures
from jails.models import Host, JailHost, jails_on, logpath_on
from tests.factories import make_host, make_jail
from watchers import lease
from watchers.services import sync_sources

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host", "no_broker")]

CENTRAL = settings.IPS_HOST_NAME
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('IPS_E2E_REDIS_DB', '15')}"


def test_a_jail_placed_nowhere_runs_on_the_central_host_and_one_placed_runs_where_placed(tmp_path: Path) -> None:
    web1 = make_host("web1")
    everywhere_old = make_jail("sshd", logpath=[str(tmp_path / "auth.log")])
    placed = make_jail("nginx", logpath=[str(tmp_path / "nginx.log")])
    JailHost.objects.create(jail=placed, host=web1, logpath=["/srv/web1/nginx/error.log"])
    assert list(jails_on(CENTRAL)) == [everywhere_old]
    assert list(jails_on("web1")) == [placed]
    assert logpath_on(jails_on("web1").get(), "web1") == ["/srv/web1/nginx/error.log"]
    JailHost.objects.create(jail=placed, host=Host.central())  # placed on central too: its own logpath
    on_central = {jail.name: jail for jail in jails_on(CENTRAL)}
    assert set(on_central) == {"sshd", "nginx"}
    assert logpath_on(on_central["nginx"], CENTRAL) == [str(tmp_path / "nginx.log")]


def test_an_agent_runs_only_the_jails_placed_on_it(tmp_path: Path) -> None:
    make_jail("sshd")
    with override_settings(IPS_FLEET_ROLE="agent", IPS_HOST_NAME="web1"):
        assert list(jails_on("web1")) == []


def test_each_host_has_its_own_sources_of_a_jail(tmp_path: Path) -> None:
    make_host("web1")
    jail = make_jail("sshd", logpath=[str(tmp_path / "auth.log")])
    here = sync_sources(jail)
    there = sync_sources(jail, "web1")
    assert [s.host for s in here] == [CENTRAL] and [s.host for s in there] == ["web1"]
    assert here[0].pk != there[0].pk and here[0].path == there[0].path


def test_each_host_counts_its_own_failures() -> None:
    jail = make_jail("sshd", maxretry=3)
    seen = [Observed(host="203.0.113.9", time=1_790_000_000.0 + i, lines=("x",)) for i in range(2)]
    for host in (CENTRAL, "web1"):
        record_failures(jail, seen, now=1_790_000_010.0, own_addresses=[], catching_up=False, host=host)
    # two failures on each host: not three anywhere, so no ban (fail2ban counts per server too)
    assert sorted(Tally.objects.values_list("host", "count")) == sorted([(CENTRAL, 2), ("web1", 2)])
    decision = record_failures(jail, seen[:1], now=1_790_000_010.0, own_addresses=[], catching_up=False, host="web1")
    assert [ban.host for ban in decision.bans] == ["web1"]


def test_follower_leases_are_named_by_host_and_found_by_name_without_listing_keys() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = [lease.lease_key(0, 2, "web1"), lease.lease_key(1, 2, "web1"), lease.lease_key(0, 1)]
    try:
        for key in keys:
            client.set(key, "holder", px=5000)
        assert keys[0] == "ips:follow:lease:web1:2:0" and keys[2] == f"ips:follow:lease:{CENTRAL}:1:0"
        assert lease.live_shards(client, "web1", shards=2) == {(0, 2), (1, 2)}
        assert lease.live_shards(client, "web1") == {(0, 2), (1, 2)}  # by SCAN, on the central server
        assert lease.live_shards(client) == {(0, 1)}
        assert not lease.shard_unheld(0, 2, client, host="web1") and lease.shard_unheld(0, 3, client, host="web1")
        assert not lease.some_source_unfollowed(client, host="web1", shards=2)
        client.delete(keys[1])
        assert lease.some_source_unfollowed(client, host="web1", shards=2)
    finally:
        client.delete(*keys)


def test_each_host_counting_a_jail_takes_its_own_lock() -> None:
    from bans.bulk import tally_lock_key

    keys = {tally_lock_key(jail_id, host) for jail_id in (1, 2) for host in ("local", "web1", "web2")}
    assert len(keys) == 6 and all(0 < key < 2**63 for key in keys)
