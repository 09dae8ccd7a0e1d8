"""The lockout gate (bans/gate.py), alone and through every door that makes a ban: the panel's form
(plain and htmx), Django admin, jailctl, a jail's counting, recidive, an import, and the firewall
worker's last check of whatever reached the table another way."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
import re
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import Settings

from bans import gate, schedules, sync
from bans.firewall.recording import RecordingBackend
from bans.models import Ban, Ignored
from bans.services import Observed, record_failures
from jails import changes, importer
from jails.access.audit import Actor
from jails.models import AuditEntry, Jail, PanelSession
from tests.clients import client_for
from tests.conftest import HOST_ADDRESS
from tests.factories import make_jail
from tests.jails.builders import minimal_tree

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("this_host", "no_broker")]

ADMIN_ADDRESS = "198.51.100.7"
OPERATOR_ADDRESS = "203.0.113.200"


def jailctl(*args: str) -> str:
    out = StringIO()
    call_command("jailctl", *args, stdout=out)
    return out.getvalue()


# --- the gate alone (plain Python) ----------------------------------------------------------------


@pytest.mark.parametrize(("text", "why"), [
    ("0.0.0.0", "unspecified"), ("255.255.255.255", "broadcast"), ("224.0.0.1", "multicast"),
    ("169.254.1.1", "link-local"), ("127.0.0.2", "loopback"), ("::", "unspecified"), ("::1", "loopback"),
    ("fe80::1", "link-local"), ("ff02::1", "multicast"), ("::ffff:127.0.0.1", "loopback"),
    ("0.0.0.0/0", ""), ("::/0", ""), ("224.0.0.0/3", ""),  # wide: whichever special network it names
])
def test_special_space_is_never_banned(text: str, why: str) -> None:
    refusal = gate.Gate.build().refusal(gate.parse_network(text))
    assert refusal is not None and why in refusal


def test_a_scoped_address_is_refused_as_typed() -> None:
    with pytest.raises(gate.BanRefused, match="scoped address"):
        gate.parse_network("fe80::1%lo")


@pytest.mark.parametrize("text", ["128.0.0.0/1", "8.0.0.0/5", "2000::/3", "203.0.0.0/15", "2001:db8::/47"])
def test_manual_bans_wider_than_the_limit_are_refused(text: str) -> None:
    with pytest.raises(gate.BanRefused, match="wider than"):
        gate.Gate.build().check_manual(gate.parse_network(text), confirmed=True)


def test_the_width_limit_is_configurable() -> None:
    narrow = gate.Gate.build(max_prefix={4: 24, 6: 64})
    with pytest.raises(gate.BanRefused, match="wider than /24"):
        narrow.check_manual(gate.parse_network("203.0.112.0/23"))
    narrow.check_manual(gate.parse_network("203.0.113.0/24"))
    gate.Gate.build().check_manual(gate.parse_network("203.0.0.0/16"))


@pytest.mark.parametrize("text", ["10.1.2.3", "172.16.0.0/16", "192.168.1.0/24", "100.64.0.9", "fd00::5",
                                  "192.0.2.77"])
def test_private_space_and_the_hosts_network_need_a_confirmation(text: str) -> None:
    checked = gate.Gate.build(host_networks=["192.0.2.0/24"])
    with pytest.raises(gate.ConfirmationNeeded, match="confirm"):
        checked.check_manual(gate.parse_network(text))
    checked.check_manual(gate.parse_network(text), confirmed=True)


def test_what_is_refused_cannot_be_confirmed() -> None:
    checked = gate.Gate.build(host_addresses=["10.0.0.1"], sessions=[("10.9.0.5", "user ann")])
    for text in ("10.0.0.1", "10.0.0.0/24", "10.9.0.0/16"):
        with pytest.raises(gate.BanRefused, match="refused") as raised:
            checked.check_manual(gate.parse_network(text), confirmed=True)
        assert not isinstance(raised.value, gate.ConfirmationNeeded)


def test_ignoreip_applies_per_jail_or_everywhere() -> None:
    checked = gate.Gate.build(ignoreip={"sshd": ["203.0.113.0/28", "example.org"], "web": []})
    network = gate.parse_network("203.0.113.5")
    assert checked.refusal(network, ignore_jails=["web"]) is None
    assert "ignoreip of jail sshd" in (checked.refusal(network, ignore_jails=["sshd"]) or "")
    assert "ignoreip of jail sshd" in (checked.refusal(network) or "")  # None: every jail


def test_the_lookup_agrees_with_comparing_every_shield() -> None:
    rng = random.Random(9)
    texts = [f"{rng.randrange(1, 223)}.{rng.randrange(256)}.0.0/{rng.choice([8, 12, 16, 20, 24, 32])}"
             for _ in range(300)]
    shields = [ipaddress.ip_network(text, strict=False) for text in texts]
    checked = gate.Gate.build(host_addresses=[str(n) for n in shields])
    for _ in range(2000):
        probe = ipaddress.ip_network(f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.0/"
                                     f"{rng.choice([6, 10, 16, 22, 24, 28])}", strict=False)
        expected = any(probe.overlaps(shield) for shield in shields) or any(
            probe.overlaps(ipaddress.ip_network(text)) for text, _ in gate.SPECIAL if ":" not in text)
        assert (checked.refusal(probe) is not None) == expected, probe


def test_one_address_is_refused_exactly_as_its_network_is() -> None:
    """refusal_of_address (the live path's, without building a network) gives refusal's answer and
    words for every address: special space, this host, ignoreip per jail and everywhere, IPv4-mapped."""
    rng = random.Random(11)
    checked = gate.Gate.build(host_addresses=["192.0.2.10", "2001:db8::10"], sessions=[("198.51.100.7", "ann")],
                              ignoreip={"sshd": ["203.0.113.0/28", "2001:db8:1::/48"], "web": ["10.9.0.0/16"]})
    probes = ["127.0.0.1", "::1", "0.0.0.0", "224.0.0.1", "fe80::1", "::ffff:127.0.0.1", "::ffff:192.0.2.10",
              "192.0.2.10", "2001:db8::10", "198.51.100.7", "203.0.113.5", "203.0.113.16", "10.9.1.1",
              "2001:db8:1::5", "2001:db8:2::5", "8.8.8.8"]
    probes += [f"{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
               for _ in range(2000)]
    for text in probes:
        ip = ipaddress.ip_address(text)
        for jails in (None, (), ("sshd",), ("web", "sshd")):
            expected = checked.refusal(ipaddress.ip_network(ip), ignore_jails=jails)
            assert checked.refusal_of_address(ip, ignore_jails=jails) == expected, (text, jails)


# --- the panel: the form, plain and through htmx -------------------------------------------------------


@pytest.fixture
def sshd() -> Jail:
    return make_jail("sshd", ignoreip=["203.0.113.128/25"])


@pytest.fixture
def admin_session() -> Client:
    """An admin logged in from ADMIN_ADDRESS, who has loaded a page (so the panel saw the address)."""
    client = client_for("admin", remote_addr=ADMIN_ADDRESS)
    assert client.get(reverse("dashboard")).status_code == 200
    return client


@pytest.fixture
def operator() -> Client:
    return client_for("operator", remote_addr=OPERATOR_ADDRESS)


REFUSED_BY_HAND = [
    ("0.0.0.0", b"unspecified"), ("255.255.255.255", b"broadcast"), ("224.0.0.5", b"multicast"),
    ("fe80::1", b"link-local"), ("128.0.0.0/1", b"wider than /16"), ("2000::/3", b"wider than /48"),
    ("8.0.0.0/5", b"wider than /16"), ("127.0.0.2", b"loopback"), (HOST_ADDRESS, b"an address of this host"),
    ("203.0.113.200", b"your own"), ("203.0.113.130", b"ignoreip of jail sshd"),
    (ADMIN_ADDRESS, b"live panel session of user admin-user"),
    ("198.51.100.0/24", b"live panel session of user admin-user"),
]


@pytest.mark.parametrize(("address", "why"), REFUSED_BY_HAND)
@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_the_panel_form_refuses_with_the_reason(operator: Client, admin_session: Client, sshd: Jail,
                                                address: str, why: bytes, htmx: bool) -> None:
    headers = {"HX-Request": "true"} if htmx else {}
    response = operator.post(reverse("ban_create"), {"address": address, "jail": "sshd", "duration": "1h"},
                             headers=headers)
    assert response.status_code == 200 and why in response.content
    assert (b"<html" in response.content) is not htmx  # htmx gets the form alone
    assert not Ban.objects.exists() and not AuditEntry.objects.filter(action="ban.create").exists()


def test_the_scoped_address_is_refused_by_the_form(operator: Client, sshd: Jail) -> None:
    response = operator.post(reverse("ban_create"), {"address": "fe80::1%lo", "jail": "sshd"})
    assert b"scoped address" in response.content and not Ban.objects.exists()


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_private_space_asks_the_panel_user_to_confirm(operator: Client, sshd: Jail, htmx: bool) -> None:
    headers = {"HX-Request": "true"} if htmx else {}
    values = {"address": "10.20.30.40", "jail": "sshd", "duration": "1h"}
    asked = operator.post(reverse("ban_create"), values, headers=headers)
    assert b'id="ban-confirm"' in asked.content and b"private space (RFC 1918)" in asked.content
    assert not Ban.objects.exists()

    done = operator.post(reverse("ban_create"), {**values, "confirm": "on"}, headers=headers)
    ban = Ban.objects.get()
    assert ban.network == "10.20.30.40/32"
    if htmx:
        assert done.status_code == 200 and done["HX-Redirect"] == reverse("ban_detail", args=[ban.pk])
    else:
        assert done.status_code == 302


def test_a_logged_out_session_no_longer_protects_its_address(operator: Client, admin_session: Client,
                                                             sshd: Jail) -> None:
    assert PanelSession.objects.filter(address=ADMIN_ADDRESS).exists()
    admin_session.post(reverse("logout"))
    assert not PanelSession.objects.exists()
    operator.post(reverse("ban_create"), {"address": ADMIN_ADDRESS, "jail": "sshd"})
    assert Ban.objects.get().network == f"{ADMIN_ADDRESS}/32"


def test_an_expired_or_deactivated_session_protects_nothing(operator: Client, admin_session: Client,
                                                            sshd: Jail) -> None:
    User.objects.filter(username="admin-user").update(is_active=False)
    operator.post(reverse("ban_create"), {"address": ADMIN_ADDRESS, "jail": "sshd"})
    assert Ban.objects.count() == 1
    User.objects.filter(username="admin-user").update(is_active=True)
    PanelSession.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    operator.post(reverse("ban_create"), {"address": "198.51.100.8", "jail": "sshd"})
    assert Ban.objects.count() == 2


def test_cleanup_forgets_sessions_that_ended_without_a_logout(admin_session: Client) -> None:
    from django.contrib.sessions.models import Session

    assert schedules.cleanup_history(now=timezone.now().timestamp())["panel_sessions"] == 0
    Session.objects.all().delete()  # expired and cleared, or `clearsessions`
    assert schedules.cleanup_history(now=timezone.now().timestamp())["panel_sessions"] == 1
    assert not PanelSession.objects.exists()


# --- Django admin ------------------------------------------------------------------------------------


@pytest.fixture
def superuser() -> Client:
    client = Client(REMOTE_ADDR="203.0.113.250")
    client.force_login(User.objects.create_superuser("root", "root@example.org", "x"))
    return client


def test_django_admin_refuses_loopback_in_the_blocklist(superuser: Client) -> None:
    # the report: 127.0.0.1/32 with the jail left empty went to the all-ports blocklist
    response = superuser.post("/admin/bans/ban/add/", {"address": "127.0.0.1/32", "target": "blocklist"})
    assert response.status_code == 200 and b"refused: 127.0.0.1 is" in response.content
    assert not Ban.objects.exists()


# the same cases, but "your own" is the superuser's address here (203.0.113.250)
ADMIN_REFUSED = [(address, why) if why != b"your own" else ("203.0.113.250", why) for address, why in REFUSED_BY_HAND]


@pytest.mark.parametrize(("address", "why"), ADMIN_REFUSED)
def test_django_admin_refuses_what_the_panel_refuses(superuser: Client, admin_session: Client, sshd: Jail,
                                                     address: str, why: bytes) -> None:
    response = superuser.post("/admin/bans/ban/add/", {"address": address, "target": "sshd", "duration": "1h"})
    assert response.status_code == 200 and why in response.content
    assert not Ban.objects.exists()


def test_django_admin_bans_through_the_service_and_audits(superuser: Client, sshd: Jail) -> None:
    asked = superuser.post("/admin/bans/ban/add/", {"address": "10.1.2.0/24", "target": "sshd"})
    assert b"private space" in asked.content and not Ban.objects.exists()
    response = superuser.post("/admin/bans/ban/add/", {"address": "10.1.2.0/24", "target": "sshd", "confirm": "on",
                                                       "reason": "lab scanner"})
    assert response.status_code == 302
    ban = Ban.objects.get()
    assert (ban.network, ban.origin, ban.state, ban.bantime, ban.reason) == (
        "10.1.2.0/24", Ban.Origin.USER, Ban.State.PENDING, sshd.bantime, "lab scanner")
    assert AuditEntry.objects.get(action="ban.create", via="admin").object_id == str(ban.pk)


def test_django_admin_cannot_change_what_the_firewall_applies(superuser: Client, sshd: Jail) -> None:
    ban = Ban.objects.create(jail=sshd, jail_name="sshd", network="203.0.113.9/32", family=4, bantime=-1,
                             state=Ban.State.LIFTED)
    page = superuser.get(f"/admin/bans/ban/{ban.pk}/change/")
    form = page.context["adminform"].form
    assert list(form.fields) == ["reason"]
    superuser.post(f"/admin/bans/ban/{ban.pk}/change/", {"reason": "x", "network": "127.0.0.1/32",
                                                         "state": "pending"})
    ban.refresh_from_db()
    assert (ban.network, ban.state, ban.reason) == ("203.0.113.9/32", Ban.State.LIFTED, "x")


# --- jailctl ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "why"), [
    ("128.0.0.0/1", "wider than /16"), ("2000::/3", "wider than /48"), ("8.0.0.0/5", "wider than /16"),
    ("0.0.0.0", "unspecified"), ("255.255.255.255", "broadcast"), ("fe80::1%lo", "scoped address"),
    ("ff02::1", "multicast"), (ADMIN_ADDRESS, "live panel session of user admin-user"),
    ("198.51.100.0/24", "live panel session of user admin-user"),
])
def test_jailctl_refuses_with_the_reason(admin_session: Client, sshd: Jail, address: str, why: str) -> None:
    with pytest.raises(CommandError, match=why):
        jailctl("ban", "sshd", address, "--force")
    assert not Ban.objects.exists()


def test_jailctl_needs_force_inside_private_space(sshd: Jail) -> None:
    with pytest.raises(CommandError, match=r"private space.*add --force"):
        jailctl("ban", "sshd", "192.168.7.7")
    assert "banned 192.168.7.7/32" in jailctl("ban", "sshd", "192.168.7.7", "--force")


def test_jailctl_unban_of_a_scoped_address_says_so() -> None:
    make_jail("sshd")
    with pytest.raises(CommandError, match="scoped address"):
        jailctl("unban", "sshd", "fe80::1%lo")


# --- automatic bans: a jail's counting and recidive ----------------------------------------------------


def test_a_jail_never_counts_a_live_panel_session(admin_session: Client) -> None:
    jail = make_jail("sshd", maxretry=2)
    now = 1.79e9
    failures = [Observed(ADMIN_ADDRESS, now - 2), Observed(ADMIN_ADDRESS, now - 1), Observed("0.0.0.0", now - 1),
                Observed("0.0.0.0", now), Observed("203.0.113.9", now - 1), Observed("203.0.113.9", now)]
    decision = record_failures(jail, failures, now=now, own_addresses=[], catching_up=False)
    assert [ban.network for ban in decision.bans] == ["203.0.113.9/32"]
    assert decision.ignored == 4
    reasons = dict(Ignored.objects.values_list("address", "reason"))
    assert "live panel session of user admin-user" in reasons[ADMIN_ADDRESS]
    assert "unspecified" in reasons["0.0.0.0"]


def test_a_jail_never_bans_a_trusted_proxy_even_with_ignoreself_off(settings: Settings) -> None:
    settings.IPS_TRUSTED_PROXIES = [ipaddress.ip_network("203.0.113.0/30")]
    jail = make_jail("sshd", maxretry=1, ignoreself=False)
    decision = record_failures(jail, [Observed("203.0.113.2", 1.79e9), Observed(HOST_ADDRESS, 1.79e9)],
                               now=1.79e9, own_addresses=[HOST_ADDRESS], catching_up=False)
    assert not decision.bans and decision.ignored == 2


def test_recidive_never_bans_a_live_panel_session(admin_session: Client) -> None:
    recidive = make_jail("recidive", maxretry=2, findtime=86400)
    sshd = make_jail("sshd")
    now = timezone.now()
    for network in (f"{ADMIN_ADDRESS}/32", "203.0.113.9/32"):
        for minutes in (30, 20):
            Ban.objects.create(jail=sshd, jail_name="sshd", network=network, family=4, bantime=600,
                               started_at=now - dt.timedelta(minutes=minutes), state=Ban.State.EXPIRED)
    created = schedules.run_recidive(now=now.timestamp())
    assert [ban.network for ban in created] == ["203.0.113.9/32"]
    assert "live panel session" in Ignored.objects.get(jail=recidive).reason


# --- import: the jails it writes take effect in the gate at once -------------------------------------


def test_an_imported_ignoreip_is_protected_at_once(tmp_path: Path) -> None:
    jail_local = ("[DEFAULT]\nignoreip = 198.51.100.64/26\n\n[sshd]\nenabled = true\nfilter = sshd\n"
                  "logpath = /var/log/auth.log\n")
    importer.import_tree(minimal_tree(tmp_path, jail_local, {"sshd.conf": "[Definition]\nfailregex = ^x <HOST>$\n"}))
    with pytest.raises(CommandError, match="global ignore list"):
        jailctl("ban", "blocklist", "198.51.100.99")
    assert not Ban.objects.exists()


# --- the firewall worker's last check --------------------------------------------------------------------


def test_the_firewall_worker_refuses_a_row_written_past_the_gate(admin_session: Client) -> None:
    jail = make_jail("sshd")
    wrong = [("127.0.0.2/32", "loopback"), (f"{ADMIN_ADDRESS}/32", "live panel session"),
             ("0.0.0.0/0", "0.0.0.0/0 contains"), (f"{HOST_ADDRESS}/32", "an address of this host")]
    for network, _ in wrong:
        Ban.objects.create(jail=None, jail_name="blocklist", network=network, family=4, bantime=-1)
    good = Ban.objects.create(jail=jail, jail_name="sshd", network="203.0.113.9/32", family=4, bantime=600,
                              expires_at=timezone.now() + dt.timedelta(minutes=10))
    backend = RecordingBackend()
    report = sync.apply_pending("local", backend)
    assert report.applied == [good.pk] and len(report.refused) == len(wrong)
    assert {str(n) for n in backend.snapshot()["sshd"]} == {"203.0.113.9/32"}
    assert not backend.snapshot()["@blocklist"]
    for network, why in wrong:
        ban = Ban.objects.get(network=network)
        assert ban.state == Ban.State.REFUSED and why in ban.apply_error and ban.ended_at is not None


def test_a_scoped_address_in_a_log_is_never_counted() -> None:
    jail = make_jail("sshd", maxretry=1)
    decision = record_failures(jail, [Observed("fe80::1%eth0", 1.79e9), Observed("[2001:db8::1%lo]", 1.79e9)],
                               now=1.79e9, own_addresses=[], catching_up=False)
    assert (decision.counted, decision.skipped, decision.bans) == (0, 2, [])


def test_a_new_login_on_the_same_address_keeps_it_protected(admin_session: Client, operator: Client,
                                                             sshd: Jail) -> None:
    admin_session.session.cycle_key()  # what a password change or a second login does
    new_key = admin_session.session.session_key
    admin_session.get(reverse("dashboard"))
    assert PanelSession.objects.filter(session_key=new_key, address=ADMIN_ADDRESS).exists()


# --- the global ignore list: every jail's, through every door ------------------------------------------


def test_the_global_list_applies_whichever_jails_are_asked_about() -> None:
    checked = gate.Gate.build(global_ignoreip=["198.51.100.0/24", "admin.example.org"],
                              ignoreip={"sshd": ["198.51.100.7"], "web": []})
    address = gate.parse_network("198.51.100.7")
    for jails in (None, (), ["web"], ["sshd"]):
        # the global list first: an address both lists hold is said to be the global list's
        assert checked.refusal(address, ignore_jails=jails) == (
            "198.51.100.7/32 overlaps 198.51.100.0/24, listed in the global ignore list as 198.51.100.0/24")
        assert checked.refusal_of_address(address.network_address, ignore_jails=jails) == checked.refusal(
            address, ignore_jails=jails)
    with pytest.raises(gate.BanRefused, match=re.escape("contains 198.51.100.0/24, listed in the global ignore list")):
        checked.check_manual(gate.parse_network("198.51.0.0/16"))


@pytest.fixture
def global_entry() -> str:
    changes.add_global_ignored(["198.51.100.77"], Actor.system())
    return "198.51.100.77"


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_the_panel_refuses_a_manual_ban_of_a_global_entry_naming_the_list(operator: Client, sshd: Jail,
                                                                          global_entry: str, htmx: bool) -> None:
    headers = {"HX-Request": "true"} if htmx else {}
    response = operator.post(reverse("ban_create"), {"address": global_entry, "jail": "sshd", "duration": "1h"},
                             headers=headers)
    assert response.status_code == 200
    assert b"198.51.100.77 is listed in the global ignore list as 198.51.100.77" in response.content
    assert not Ban.objects.exists()


def test_jailctl_refuses_a_global_entry_in_a_jail_and_in_the_blocklist(sshd: Jail, global_entry: str) -> None:
    said = re.escape("refused: 198.51.100.77 is listed in the global ignore list as 198.51.100.77")
    for jail in ("sshd", "blocklist"):
        with pytest.raises(CommandError, match=said):
            jailctl("ban", jail, global_entry, "--force")
    # a jail's own entry still says whose it is
    with pytest.raises(CommandError, match="ignoreip of jail sshd"):
        jailctl("ban", "blocklist", "203.0.113.130")
    assert not Ban.objects.exists()


def test_the_firewall_worker_refuses_a_waiting_ban_the_global_list_now_covers(sshd: Jail) -> None:
    waiting = Ban.objects.create(jail=sshd, jail_name="sshd", network="198.51.100.77/32", family=4, bantime=600,
                                 expires_at=timezone.now() + dt.timedelta(minutes=10))
    changes.add_global_ignored(["198.51.100.0/24"], Actor.system())  # listed after the jail's counting made it

    report = sync.apply_pending("local", RecordingBackend())

    waiting.refresh_from_db()
    assert report.refused == [waiting.pk] and waiting.state == Ban.State.REFUSED
    assert "listed in the global ignore list as 198.51.100.0/24" in waiting.apply_error
