"""The Hosts page: every host of the fleet with its firewall's word, heartbeat and release, the bans
it applies, its queues' depth in Redis and the last read of each jail's logs there."""

from __future__ import annotations

import datetime as dt

import pytest
import redis
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from bans.models import Ban, FirewallHost
from config.version import VERSION
from jails.models import Host, JailHost
from tests.factories import make_host, make_jail
from tests.fleet import REDIS_URL
from watchers.models import LogSource

pytestmark = pytest.mark.django_db


@pytest.fixture
def central_redis() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    client.delete("firewall.web1", "watch.web1", "fleet")
    return client


def test_a_single_server_sees_itself_and_how_to_add_a_server(viewer: Client) -> None:
    html = viewer.get(reverse("host_list")).content.decode()
    assert f'id="host-{settings.IPS_HOST_NAME}"' in html and 'id="hosts-single"' in html
    assert "hostctl add NAME" in html


def test_each_host_shows_its_firewall_heartbeat_release_bans_queues_and_reads(
        viewer: Client, central_redis: redis.Redis) -> None:
    now = timezone.now()
    web1 = make_host("web1", groups=("web",), addresses=("198.51.100.7",))
    make_host("old", state=Host.State.REVOKED)
    jail = make_jail("sshd")
    JailHost.objects.create(jail=jail, host=web1, logpath=["/var/log/auth.log"])
    FirewallHost.objects.create(name="web1", last_seen_at=now - dt.timedelta(seconds=10), version="0.12.0",
                                drift="1 element missing")
    LogSource.objects.create(jail=jail, host="web1", path="/var/log/auth.log", last_read_at=now,
                             health=LogSource.Health.DEGRADED, health_reason="permission denied")
    for index, state in enumerate([Ban.State.ACTIVE, Ban.State.PENDING, Ban.State.FAILED]):
        Ban.objects.create(jail=jail, jail_name="sshd", network=f"203.0.113.{index}/32", family=4, host="web1",
                           bantime=600, expires_at=now + dt.timedelta(minutes=5), state=state)
    central_redis.rpush("firewall.web1", "m1", "m2")
    with override_settings(CELERY_BROKER_URL=REDIS_URL):
        html = viewer.get(reverse("host_list")).content.decode()
    row = html.split('id="host-web1"')[1].split("</tr>")[0]
    assert "groups: web" in row and "198.51.100.7" in row
    assert "kernel drift: 1 element missing" in row
    assert "release 0.12.0 (not this panel" in row and VERSION != "0.12.0"
    in_force = row.split('class="num in-force">')[1].split("</td>")[0]
    assert in_force.startswith("3") and "1 waiting" in in_force and "1 refused" in in_force
    assert "<code>firewall.web1</code> 2" in row and "<code>watch.web1</code> 0" in row
    assert "sshd" in row and "permission denied" in row
    assert 'id="hosts-single"' not in html and 'id="host-old"' in html
    central_redis.delete("firewall.web1")


def test_a_redis_that_does_not_answer_leaves_the_queues_unknown(viewer: Client) -> None:
    make_host("web1")
    with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
        html = viewer.get(reverse("host_list")).content.decode()
    assert "unknown" in html.split('id="host-web1"')[1].split("</tr>")[0]


def test_anonymous_visitors_are_sent_to_log_in() -> None:
    response = Client().get(reverse("host_list"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_jailctl_status_of_a_host_shows_its_jails_counts_and_kernel_bans() -> None:
    import json
    from io import StringIO

    from django.core.management import CommandError, call_command

    from bans.models import Tally

    now = timezone.now()
    web1 = make_host("web1")
    placed, central_only = make_jail("nginx", logpath=["/var/log/nginx/error.log"]), make_jail("sshd")
    JailHost.objects.create(jail=placed, host=web1, logpath=["/srv/web1/error.log"])
    Tally.objects.create(jail=placed, host="web1", address="203.0.113.5", first_time=now, last_time=now, count=1)
    Tally.objects.create(jail=placed, host=settings.IPS_HOST_NAME, address="203.0.113.6", first_time=now,
                         last_time=now, count=1)
    made = Ban.objects.create(jail=placed, jail_name="nginx", network="203.0.113.9/32", family=4,
                              host=settings.IPS_HOST_NAME, bantime=600, state=Ban.State.ACTIVE,
                              expires_at=now + dt.timedelta(minutes=5))
    Ban.objects.create(jail=placed, jail_name="nginx", network="203.0.113.9/32", family=4, host="web1", bantime=600,
                       state=Ban.State.ACTIVE, expires_at=made.expires_at, primary=made)

    def status(*args: str) -> str:
        out = StringIO()
        call_command("jailctl", "status", *args, stdout=out)
        return out.getvalue()

    assert json.loads(status("--host", "web1", "--json")) == {"jails": ["nginx"], "host": "web1"}
    assert central_only.name in json.loads(status("--json"))["jails"]
    on_web1 = json.loads(status("nginx", "--host", "web1", "--json"))
    assert on_web1["currently_failed"] == 1 and on_web1["currently_banned"] == 1
    assert on_web1["banned_ip_list"] == ["203.0.113.9"] and on_web1["host"] == "web1"
    fleet = json.loads(status("nginx", "--json"))
    assert fleet["currently_failed"] == 2 and fleet["total_banned"] == 1  # one ban, on two hosts
    assert "Status for the jail: nginx on host web1" in status("nginx", "--host", "web1")
    with pytest.raises(CommandError, match="no host of the fleet is called 'nope'"):
        status("--host", "nope")
