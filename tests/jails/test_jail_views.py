"""The jail pages: list with health and counts, a jail's page, create/edit with every option, enable/disable."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bans.models import Ban, Failure, Tally
from jails.models import AuditEntry, Filter, Jail
from tests.factories import LOGIN_FAILED_SOURCE, make_filter, make_jail
from watchers.models import LogSource

pytestmark = pytest.mark.django_db



@pytest.fixture
def flt() -> Filter:
    return make_filter("app", LOGIN_FAILED_SOURCE, derived=True)


@pytest.fixture
def jail(flt: Filter) -> Jail:
    return make_jail("app", flt=flt, logpath=["/var/log/app.log"])


def form_data(flt: Filter, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "web", "enabled": "on", "description": "", "filter": flt.pk, "filter_options": "",
        "logpath": "/var/log/web.log", "backend": "auto", "journalmatch": "", "logencoding": "auto",
        "logtimezone": "", "maxretry": "5", "findtime": "10m", "datepattern": "", "maxlines": "",
        "maxmatches": "", "usedns": "no", "bantime": "1h", "bantime_factor": "1", "bantime_formula": "",
        "bantime_multipliers": "", "bantime_maxtime": "", "bantime_rndtime": "", "ignoreip": "127.0.0.1/8 ::1",
        "ignoreself": "on", "ignorecommand": "", "port": "http,https", "protocol": "tcp", "banaction": "nftables",
        "blocktype": "drop", "ban_scope": "host", "ban_group": "",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_it_lists_jails_with_log_health_and_counts(viewer: Client, jail: Jail) -> None:
    now = timezone.now()
    LogSource.objects.create(jail=jail, path="/var/log/app.log", health=LogSource.Health.DEGRADED,
                             health_reason="permission denied")
    Tally.objects.create(jail=jail, address="192.0.2.7", first_time=now, last_time=now, count=2)
    for _ in range(3):
        Failure.objects.create(jail=jail, address="192.0.2.7", time=now)
    Ban.objects.create(jail=jail, jail_name="app", network="192.0.2.9/32", family=4, bantime=600,
                       state=Ban.State.ACTIVE)
    Ban.objects.create(jail=jail, jail_name="app", network="192.0.2.10/32", family=4, bantime=600,
                       state=Ban.State.EXPIRED, ended_at=now - dt.timedelta(minutes=1))
    response = viewer.get(reverse("jail_list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="jail-table"' in html and f'id="jail-{jail.pk}"' in html
    assert "permission denied" in html and "health-degraded" in html
    row = html.split(f'id="jail-{jail.pk}"')[1].split("</tr>")[0]
    assert '<td class="num currently-failed">1</td>' in row
    assert '<td class="num total-failed">3</td>' in row
    assert '<td class="num currently-banned">1</td>' in row
    assert '<td class="num total-banned">2</td>' in row
    assert "applies within seconds" in html.lower() or "Changes apply within seconds" in html


def test_it_hides_change_buttons_from_a_viewer(viewer: Client, jail: Jail) -> None:
    html = viewer.get(reverse("jail_list")).content.decode()
    assert "jail-toggle" not in html and "jail-create-link" not in html


def test_it_shows_a_jail_with_durations_as_fail2ban_writes_them(viewer: Client, jail: Jail) -> None:
    jail.bantime = -1
    jail.save()
    response = viewer.get(reverse("jail_detail", args=["app"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="option-findtime"><span class="pre">10m</span>' in html
    assert "permanent (-1)" in html
    assert "/var/log/app.log" in html


def test_it_refuses_changes_to_a_viewer(viewer: Client, jail: Jail, flt: Filter) -> None:
    assert viewer.get(reverse("jail_create")).status_code == 403
    assert viewer.post(reverse("jail_create"), form_data(flt)).status_code == 403
    assert viewer.post(reverse("jail_edit", args=["app"]), form_data(flt, name="app")).status_code == 403
    assert viewer.post(reverse("jail_toggle", args=["app"]), {"enabled": "off"}).status_code == 403
    jail.refresh_from_db()
    assert jail.enabled is True and not Jail.objects.filter(name="web").exists()


def test_it_creates_a_jail_with_durations_and_lists_and_audits_it(admin: Client, flt: Filter) -> None:
    response = admin.post(reverse("jail_create"), form_data(flt, ignoreip="127.0.0.1/8, ::1\n192.0.2.0/24",
                                                            bantime_maxtime="1w"))
    assert response.status_code == 302
    assert response["Location"] == reverse("jail_detail", args=["web"])
    web = Jail.objects.get(name="web")
    assert (web.findtime, web.bantime, web.bantime_maxtime) == (600, 3600, 7 * 86400)
    assert web.ignoreip == ["127.0.0.1/8", "::1", "192.0.2.0/24"]
    assert web.logpath == ["/var/log/web.log"]
    entry = AuditEntry.objects.get(action="jail.create")
    assert entry.after is not None
    assert entry.object_repr == "web" and entry.after["bantime"] == 3600 and entry.username == "admin-user"


def test_it_shows_validation_errors_next_to_the_fields_and_saves_nothing(admin: Client, flt: Filter) -> None:
    response = admin.post(reverse("jail_create"), form_data(
        flt, findtime="ten minutes", bantime="0", port="99999", ignoreip="not an address!", logpath="relative.log"))
    assert response.status_code == 400
    html = response.content.decode()
    for name in ("findtime", "bantime", "port", "ignoreip", "logpath"):
        assert f'id="id_{name}-error"' in html, name
    assert "is not a duration" in html
    assert "Port 99999 is out of range" in html
    assert not Jail.objects.filter(name="web").exists()
    assert not AuditEntry.objects.exists()


def test_it_accepts_minus_one_only_for_the_ban_time(admin: Client, flt: Filter) -> None:
    response = admin.post(reverse("jail_create"), form_data(flt, bantime="-1", findtime="-1"))
    assert response.status_code == 400
    assert "Only the ban time can be permanent" in response.content.decode()
    response = admin.post(reverse("jail_create"), form_data(flt, bantime="-1"))
    assert response.status_code == 302
    assert Jail.objects.get(name="web").bantime == -1


def test_it_shows_durations_back_as_text_in_the_edit_form(admin: Client, jail: Jail) -> None:
    html = admin.get(reverse("jail_edit", args=["app"])).content.decode()
    assert 'name="findtime" value="10m"' in html
    assert 'name="bantime" value="1h"' in html
    assert 'id="group-increment"' in html and 'id="id_bantime_formula-help"' in html


def test_it_edits_a_jail_and_audits_only_what_changed(admin: Client, jail: Jail, flt: Filter) -> None:
    response = admin.post(reverse("jail_edit", args=["app"]), form_data(
        flt, name="app", logpath="/var/log/app.log", port="all", maxretry="3", findtime="10m", bantime="2h",
        ignoreip=""))
    assert response.status_code == 302
    jail.refresh_from_db()
    assert jail.bantime == 7200
    entry = AuditEntry.objects.get(action="jail.edit")
    assert entry.before is not None and entry.after is not None
    assert entry.before["bantime"] == 3600 and entry.after["bantime"] == 7200
    assert "maxretry" not in entry.after


def test_it_keeps_the_name_of_an_existing_jail(admin: Client, jail: Jail, flt: Filter) -> None:
    admin.post(reverse("jail_edit", args=["app"]), form_data(flt, name="renamed", logpath="/var/log/app.log"))
    assert Jail.objects.filter(name="app").exists() and not Jail.objects.filter(name="renamed").exists()


def test_it_refuses_filter_options_the_filter_cannot_take(admin: Client, flt: Filter) -> None:
    response = admin.post(reverse("jail_create"), form_data(flt, filter_options="failregex=(unclosed <HOST>"))
    assert response.status_code == 400
    assert 'id="id_filter_options-error"' in response.content.decode()
    assert "does not compile" in response.content.decode()


def test_it_disables_with_a_plain_post_and_redirects(admin: Client, jail: Jail) -> None:
    response = admin.post(reverse("jail_toggle", args=["app"]), {"enabled": "off"})
    assert response.status_code == 302 and response["Location"] == reverse("jail_list")
    jail.refresh_from_db()
    assert jail.enabled is False
    entry = AuditEntry.objects.get()
    assert entry.action == "jail.disable" and entry.before == {"enabled": True} and entry.after == {"enabled": False}


def test_it_swaps_only_the_row_for_htmx(admin: Client, jail: Jail) -> None:
    jail.enabled = False
    jail.save()
    response = admin.post(reverse("jail_toggle", args=["app"]), {"enabled": "on"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.strip().startswith(f'<tr id="jail-{jail.pk}"')
    assert "<html" not in html and "Disable" in html and "applies within seconds" in html
    jail.refresh_from_db()
    assert jail.enabled is True
    assert AuditEntry.objects.get().action == "jail.enable"


def test_it_does_not_flip_back_on_a_double_submit(admin: Client, jail: Jail) -> None:
    admin.post(reverse("jail_toggle", args=["app"]), {"enabled": "off"})
    admin.post(reverse("jail_toggle", args=["app"]), {"enabled": "off"})
    jail.refresh_from_db()
    assert jail.enabled is False
    assert AuditEntry.objects.count() == 1


def test_it_needs_a_login(client: Client, jail: Jail) -> None:
    response = client.get(reverse("jail_list"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("logpath", ["/etc/shadow", "/var/log/../../etc/ips/ips.env", "/proc/self/environ"])
def test_it_refuses_a_system_file_as_a_log(admin: Client, flt: Filter, logpath: str) -> None:
    # the tester shows a log's last lines, and the web process may run as root (scripts/run.sh)
    response = admin.post(reverse("jail_create"), form_data(flt, logpath=logpath))

    assert response.status_code == 400 and "logpath" in response.context["form"].errors
    assert not Jail.objects.exists()


def test_it_writes_ipv4_mapped_ignoreip_entries_as_ipv4(admin: Client, flt: Filter) -> None:
    # the lockout guard compares IPv4 bans with IPv4 entries: a mapped one would protect nothing
    admin.post(reverse("jail_create"), form_data(flt, ignoreip="::ffff:198.51.100.7 ::ffff:10.0.0.0/104 ::1"))

    assert Jail.objects.get().ignoreip == ["198.51.100.7", "10.0.0.0/8", "::1"]


def test_a_new_jail_does_not_resolve_names_and_the_form_says_what_dns_costs(admin: Client) -> None:
    html = admin.get(reverse("jail_create")).content.decode()
    usedns = html.split('name="usedns"')[1].split("</select>")[0]
    assert '<option value="no" selected>' in usedns
    help_text = html.split('id="id_usedns-help"')[1].split("</p>")[0]
    assert "controls that name&#x27;s DNS zone" in help_text and "any address banned" in help_text
    assert "waits up to 0.5 s a read" in help_text


@pytest.mark.parametrize(("usedns", "warned"), [("no", False), ("raw", False), ("yes", True), ("warn", True)])
def test_a_jail_that_resolves_names_says_what_it_costs(viewer: Client, jail: Jail, usedns: str,
                                                        warned: bool) -> None:
    jail.usedns = usedns
    jail.save()
    html = viewer.get(reverse("jail_detail", args=["app"])).content.decode()
    assert ('id="usedns-cost"' in html) is warned
    if warned:
        assert "whoever controls a name's zone chooses which addresses it bans" in html


def test_saving_a_jail_unchanged_writes_nothing(admin: Client, jail: Jail, flt: Filter) -> None:
    stamp = jail.updated_at
    response = admin.post(reverse("jail_edit", args=["app"]), form_data(
        flt, name="app", logpath="/var/log/app.log", port="all", maxretry="3", findtime="10m", bantime="1h",
        ignoreip=""), follow=True)
    assert "Nothing changed." in response.content.decode()
    assert not AuditEntry.objects.filter(action="jail.edit").exists()
    jail.refresh_from_db()
    assert jail.updated_at == stamp  # the followers reload a jail whose stamp moved: it did not


def test_a_jail_page_shows_the_sources_of_its_backend_and_says_a_logpath_is_not_read_by_the_journal(
        viewer: Client, jail: Jail) -> None:
    LogSource.objects.create(jail=jail, kind=LogSource.Kind.JOURNAL, path="")
    LogSource.objects.create(jail=jail, kind=LogSource.Kind.FILE, path="/var/log/app.log")
    html = viewer.get(reverse("jail_detail", args=["app"])).content.decode()
    assert "<code>/var/log/app.log</code></td>" in html and "systemd journal</td>" not in html
    assert 'id="logpath-ignored"' not in html
    jail.backend = Jail.Backend.SYSTEMD
    jail.save()
    html = viewer.get(reverse("jail_detail", args=["app"])).content.decode()
    assert "systemd journal</td>" in html and "<code>/var/log/app.log</code></td>" not in html
    assert 'id="logpath-ignored"' in html and "is not read with this backend" in html
