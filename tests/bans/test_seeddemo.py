"""`manage.py seeddemo` (bans.demo): what it writes, deterministically, where it may; and bench/panel.py's options."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import sys
import time
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from bans import demo, hostaddrs
from bans.models import Ban, Failure, JailStat, Tally
from bans.views import PERIODS, series
from jails.models import AuditEntry, Jail
from tests.conftest import HOST_ADDRESS
from tests.factories import make_jail, stored_failure
from tests.paths import REPO

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host", "no_broker")]

NOW = 1_796_600_000.0  # 2026-12-06 22:53:20 UTC: a fixed end for the deterministic runs
SMALL = {"failures": 3000, "bans": 150, "days": 7, "jails": 6, "seed": 5}


@pytest.fixture(autouse=True)
def firewall_off(settings: Any) -> None:
    settings.IPS_FIREWALL = "off"  # seeddemo refuses otherwise (see the test below)


def seed(**options: Any) -> None:
    call_command("seeddemo", verbosity=0, **{**SMALL, **options})


def test_it_refuses_while_the_firewall_is_on_unless_told(settings: Any) -> None:
    settings.IPS_FIREWALL = "nftables"
    with pytest.raises(CommandError, match="IPS_FIREWALL=off"):
        seed()
    assert not Failure.objects.exists() and not Ban.objects.exists()
    seed(with_firewall=True)
    assert Ban.objects.exists()


def test_writes_the_failures_bans_and_jails_it_says() -> None:
    seed()
    assert Failure.objects.count() == 3000
    assert Ban.objects.count() == 150
    names = ["sshd", "nginx-http-auth", "postfix-sasl", "wordpress", "recidive", "dovecot"]
    assert set(Jail.objects.filter(name__in=names).values_list("name", flat=True)) == set(names)
    assert set(Failure.objects.values_list("jail__name", flat=True).distinct()) <= set(names)
    assert Failure.objects.values("address").distinct().count() == 150  # failures / 20
    assert Failure.objects.filter(address__contains=":").exists()  # some IPv6
    assert Failure.objects.filter(jail__name="sshd", fields__user="root").exists()  # user names for sshd
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=7, seconds=5)
    assert not Failure.objects.filter(time__lt=since).exists()
    assert not Failure.objects.filter(time__gt=dt.datetime.now(dt.UTC)).exists()


def test_the_bans_come_in_a_realistic_mix_of_states() -> None:
    seed()
    states = {state: Ban.objects.filter(state=state).count() for state, _ in Ban.State.choices}
    assert states["expired"] > 150 // 2  # mostly in the past
    assert states["active"] >= 1 and states["pending"] >= 1 and states["failed"] >= 1
    assert Ban.objects.filter(bantime=-1, expires_at__isnull=True, state=Ban.State.ACTIVE).exists()  # permanent
    assert Ban.objects.in_force().count() >= states["active"]
    now = dt.datetime.now(dt.UTC)
    assert not Ban.objects.filter(state=Ban.State.EXPIRED, expires_at__gt=now).exists()
    assert not Ban.objects.filter(state=Ban.State.ACTIVE, expires_at__lte=now).exists()
    assert not Ban.objects.filter(state=Ban.State.FAILED, apply_error="").exists()
    # a jail's ban is earned by the failures before it, its evidence their lines
    for ban in Ban.objects.filter(origin=Ban.Origin.JAIL).exclude(jail_name="recidive")[:20]:
        address = ban.network.split("/")[0]
        earlier = Failure.objects.filter(jail__name=ban.jail_name, address=address, time__lte=ban.started_at)
        assert ban.jail is not None
        assert earlier.count() >= ban.jail.maxretry
        assert ban.evidence and all(address in line for line in ban.evidence)


def test_the_dashboards_totals_are_the_failures_and_bans_written() -> None:
    seed(now=NOW)
    totals = series(PERIODS["month"], dt.datetime.fromtimestamp(NOW, tz=dt.UTC))["totals"]
    assert totals == {"failures": 3000, "bans": 150}
    hours = JailStat.objects.filter(resolution=JailStat.Resolution.HOUR).aggregate(f=Sum("failures"), b=Sum("bans"))
    assert hours == {"f": 3000, "b": 150}
    horizon = dt.datetime.fromtimestamp(NOW, tz=dt.UTC) - dt.timedelta(days=2)
    minutes = JailStat.objects.filter(resolution=JailStat.Resolution.MINUTE).aggregate(f=Sum("failures"))["f"]
    assert minutes == Failure.objects.filter(time__gte=horizon).count()
    end = dt.datetime.fromtimestamp(NOW, tz=dt.UTC)
    day = series(PERIODS["day"], end)["totals"]["failures"]
    assert day == Failure.objects.filter(time__gte=PERIODS["day"].start(end)).count()


def test_the_dashboard_page_shows_them(admin: Any) -> None:
    seed()
    response = admin.get("/?period=month")
    assert response.status_code == 200
    assert response.context["figures"]["totals"]["failures"] == 3000


def snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    failures = list(Failure.objects.order_by("jail__name", "time", "address", "line")
                    .values_list("jail__name", "address", "time", "line", "fields"))
    bans = list(Ban.objects.order_by("started_at", "network", "jail_name").values_list(
        "jail_name", "network", "state", "started_at", "expires_at", "bantime", "evidence", "origin"))
    stats = list(JailStat.objects.order_by("jail_name", "resolution", "bucket")
                 .values_list("jail_name", "resolution", "bucket", "failures", "bans"))
    return failures, bans, stats


def wipe() -> None:
    for model in (Failure, Ban, JailStat, Tally):
        model.objects.all().delete()


def test_the_same_seed_writes_the_same_history() -> None:
    seed(now=NOW)
    first = snapshot()
    wipe()
    seed(now=NOW)
    assert snapshot() == first
    wipe()
    seed(now=NOW, seed=6)
    assert snapshot()[0] != first[0]


def test_refuses_a_database_that_holds_failures_unless_forced() -> None:
    stored_failure(make_jail("web"), "198.51.100.7", dt.datetime.now(dt.UTC))
    with pytest.raises(CommandError, match=r"already holds 1 failures.*--force"):
        seed()
    assert Failure.objects.count() == 1 and not Ban.objects.exists()
    seed(force=True)
    assert Failure.objects.count() == 3001
    after = AuditEntry.objects.get(action=demo.AUDIT_ACTION).after
    assert after is not None and after["forced"] is True


def test_never_uses_private_reserved_own_or_protected_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    # this host has an address and a network inside the prefixes seeddemo draws from, and a jail
    # ignores another of them: none may appear
    monkeypatch.setattr(demo, "IPV4_PREFIXES", ("45.9", "45.135", "89.248"))
    monkeypatch.setattr(hostaddrs, "read_addresses", lambda: [HOST_ADDRESS, "45.9.20.7", "127.0.0.1", "::1"])
    monkeypatch.setattr(hostaddrs, "read_networks", lambda: ["45.9.0.0/16"])
    hostaddrs.forget()
    make_jail("sshd", ignoreip=["89.248.0.0/16"])
    seed(ipv6_share=0.2)
    own_network = ipaddress.ip_network("45.9.0.0/16")
    ignored = ipaddress.ip_network("89.248.0.0/16")
    addresses = set(Failure.objects.values_list("address", flat=True))
    addresses |= {network.split("/")[0] for network in Ban.objects.values_list("network", flat=True)}
    assert len(addresses) > 100
    for text in addresses:
        ip = ipaddress.ip_address(text)
        assert ip.is_global, text
        assert not (ip.version == 4 and (ip in own_network or ip in ignored)), text
    assert {ipaddress.ip_address(a).version for a in addresses} == {4, 6}


def test_writes_its_audit_entry() -> None:
    seed()
    entry = AuditEntry.objects.get(action=demo.AUDIT_ACTION)
    assert entry.via == "cli"
    after = entry.after
    assert after is not None
    assert after["failures"] == 3000 and after["bans"] == 150 and after["seed"] == 5
    assert after["jails_created"] == ["sshd", "nginx-http-auth", "postfix-sasl", "wordpress", "recidive",
                                            "dovecot"]


def test_jails_past_the_known_names_are_generated() -> None:
    seed(jails=13, failures=1300, bans=20)
    names = list(Jail.objects.filter(description__startswith="Made by manage.py seeddemo").values_list("name",
                                                                                                       flat=True))
    assert len(names) == 13
    assert {"gitea-auth", "grafana-auth", "nextcloud-auth"} <= set(names)


def test_its_help_explains_every_option() -> None:
    done = subprocess.run([sys.executable, "manage.py", "seeddemo", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0
    for option in ("--failures", "--bans", "--days", "--jails", "--seed", "--force", "--now", "--addresses",
                   "--ipv6-share"):
        assert option in done.stdout
    assert "IPS_FIREWALL=off" in done.stdout


def test_the_panel_bench_parses_its_options() -> None:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "bench/panel.py", "--quick", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "--database-url" in done.stdout and "--quick" in done.stdout
    assert time.monotonic() - began < 30  # --help ran nothing
