"""Every door audits: Django admin (add, change, delete, bulk delete, users' passwords hidden) and the
commands that change things (jailctl ban/unban, importconf), with via="admin" / "cli"."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from bans.models import Ban
from jails.admin import AuditedModelAdmin
from jails.models import AuditEntry, Filter, Jail
from tests.clients import client_for
from tests.factories import LOGIN_FAILED_SOURCE, make_filter, make_jail
from tests.jails.builders import minimal_tree

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]



@pytest.fixture
def admin_client() -> Client:
    client = Client(REMOTE_ADDR="192.0.2.8")
    client.force_login(User.objects.create_superuser("root", "root@example.org", "x"))
    return client


def web_jail(name: str = "web") -> Jail:
    """A jail as an admin leaves it after creating it (disabled, the model's defaults)."""
    return make_jail(name, flt=make_filter("web", LOGIN_FAILED_SOURCE), logpath=["/var/log/web.log"], enabled=False,
                     maxretry=5, bantime=600)


def test_every_project_model_admin_is_audited() -> None:
    from django.contrib import admin

    ours = [ma for model, ma in admin.site._registry.items()
            if model._meta.app_label in ("jails", "bans", "watchers") and model._meta.model_name != "auditentry"]
    assert ours and all(isinstance(ma, AuditedModelAdmin) for ma in ours)


def test_it_audits_a_change_made_in_django_admin(admin_client: Client) -> None:
    jail = web_jail()
    form = admin_client.get(f"/admin/jails/jail/{jail.pk}/change/")
    data = {k: v for k, v in form.context["adminform"].form.initial.items()}
    data.update({"name": "web", "filter": jail.filter_id, "maxretry": 9, "findtime": 600, "bantime": 600,
                 "logpath": '["/var/log/web.log"]', "filter_options": "{}", "ignoreip": "[]", "extra_options": "{}",
                 "backend": "auto", "usedns": "no", "protocol": "tcp", "blocktype": "drop", "port": "all",
                 "banaction": "nftables", "logencoding": "auto", "bantime_factor": 1.0, "ignoreself": "on"})
    data = {k: v for k, v in data.items() if v is not None and v is not False}
    response = admin_client.post(f"/admin/jails/jail/{jail.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = AuditEntry.objects.get(action="jail.edit")
    assert (entry.via, entry.username, entry.address) == ("admin", "root", "192.0.2.8")
    assert entry.before == {"maxretry": 5} and entry.after == {"maxretry": 9}


def test_it_audits_deletions_in_django_admin_one_and_many(admin_client: Client) -> None:
    first, second, third = web_jail("a"), web_jail("b"), web_jail("c")
    admin_client.post(f"/admin/jails/jail/{first.pk}/delete/", {"post": "yes"})
    admin_client.post("/admin/jails/jail/", {"action": "delete_selected", "post": "yes",
                                             "_selected_action": [second.pk, third.pk]})
    assert not Jail.objects.exists()
    deleted = AuditEntry.objects.filter(action="jail.delete", via="admin")
    assert sorted(deleted.values_list("object_repr", flat=True)) == ["a", "b", "c"]
    before = deleted.get(object_repr="a").before
    assert before is not None and before["name"] == "a"


def test_a_bulk_delete_that_fails_leaves_no_audit_entries(admin_client: Client,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # "delete selected" writes the entries, then deletes: one transaction, so a failed deletion
    # takes its entries with it (Django runs list actions outside a transaction by itself)
    from jails.admin import JailAdmin

    first, second = web_jail("a"), web_jail("b")

    def fail(self: JailAdmin, request: object, queryset: object) -> None:
        raise RuntimeError("the database went away mid-delete")

    monkeypatch.setattr(JailAdmin, "delete_queryset", fail)
    with pytest.raises(RuntimeError):
        admin_client.post("/admin/jails/jail/", {"action": "delete_selected", "post": "yes",
                                                 "_selected_action": [first.pk, second.pk]})

    assert Jail.objects.count() == 2
    assert not AuditEntry.objects.filter(action="jail.delete").exists()


def test_it_audits_users_made_in_django_admin_without_their_password_hash(admin_client: Client) -> None:
    response = admin_client.post("/admin/auth/user/add/", {
        "username": "newbie", "password1": "a-long-enough-passphrase-7", "password2": "a-long-enough-passphrase-7",
        "usable_password": "true"})
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="user.create")
    assert entry.after is not None
    assert entry.via == "admin" and entry.after["username"] == "newbie"
    hashed = User.objects.get(username="newbie").password
    assert hashed not in str(entry.after) and entry.after["password"].startswith("(hidden")


def test_audit_entries_are_read_only_in_django_admin(admin_client: Client) -> None:
    entry = AuditEntry.objects.create(action="jail.edit", object_type="jail")
    assert admin_client.get(f"/admin/jails/auditentry/{entry.pk}/change/").status_code == 200  # viewable
    admin_client.post(f"/admin/jails/auditentry/{entry.pk}/delete/", {"post": "yes"})
    assert admin_client.get("/admin/jails/auditentry/add/").status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_jailctl_ban_and_unban_are_audited_as_cli() -> None:
    web_jail("sshd")
    call_command("jailctl", "ban", "sshd", "203.0.113.9", stdout=StringIO())
    call_command("jailctl", "unban", "sshd", "203.0.113.9", stdout=StringIO())
    created = AuditEntry.objects.get(action="ban.create")
    assert created.via == "cli" and created.address is None
    ban = Ban.objects.get()
    assert created.after is not None
    assert created.object_id == str(ban.pk) and created.after["network"] == "203.0.113.9/32"
    # as the panel's unban: one entry per ban lifted, on the ban's own page, with its state before and after
    lifted = AuditEntry.objects.get(action="ban.lift")
    assert (lifted.via, lifted.object_type, lifted.object_id) == ("cli", "ban", str(ban.pk))
    assert lifted.before is not None and lifted.after is not None
    assert (lifted.before["state"], lifted.after["state"]) == ("pending", "lifting")


def test_every_door_records_the_same_ban_entry(admin_client: Client) -> None:
    """The panel's form, jailctl and Django admin all ban through bans.services.ban_by_hand, which
    writes the entry: the same fields, only who and the door differ."""
    web_jail("sshd")
    operator = client_for("operator")
    assert operator.post(reverse("ban_create"), {"address": "203.0.113.1", "jail": "sshd", "duration": "1h"}
                         ).status_code == 302
    call_command("jailctl", "ban", "sshd", "203.0.113.2", stdout=StringIO())
    assert admin_client.post("/admin/bans/ban/add/", {"address": "203.0.113.3", "target": "sshd"}).status_code == 302
    entries = {entry.via: entry for entry in AuditEntry.objects.filter(action="ban.create")}
    assert set(entries) == {"panel", "cli", "admin"}  # one each: admin's own log adds no second entry
    assert all(entry.after is not None for entry in entries.values())
    assert len({tuple(sorted(entry.after)) for entry in entries.values() if entry.after is not None}) == 1
    for via, entry in entries.items():
        ban = Ban.objects.get(pk=entry.object_id)
        assert entry.after is not None
        assert entry.after["network"] == ban.network and entry.object_type == "ban", via


def test_a_refused_jailctl_ban_leaves_no_entry() -> None:
    web_jail("sshd")
    with pytest.raises(Exception, match="refused"):
        call_command("jailctl", "ban", "sshd", "127.0.0.1", stdout=StringIO())
    assert not AuditEntry.objects.exists()


def test_importconf_is_audited_as_cli_but_not_a_dry_run_or_a_no_op(tmp_path: Path) -> None:
    tree = minimal_tree(tmp_path, "[web]\nenabled = true\nfilter = web\nlogpath = /var/log/web.log\n",
                        {"web.conf": LOGIN_FAILED_SOURCE})
    call_command("importconf", str(tree), "--dry-run", stdout=StringIO(), stderr=StringIO())
    assert not AuditEntry.objects.exists()
    call_command("importconf", str(tree), stdout=StringIO(), stderr=StringIO())
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.via) == ("config.import", "cli")
    assert entry.after is not None
    assert "created jail web" in entry.after["changes"]
    call_command("importconf", str(tree), stdout=StringIO(), stderr=StringIO())  # unchanged: nothing to audit
    assert AuditEntry.objects.count() == 1


def test_django_admin_refuses_a_catastrophic_regex_unless_overridden_and_audits_the_override(
        admin_client: Client) -> None:
    evil = "[Definition]\nfailregex = ^(x+x+)+y <HOST>\n"
    data = {"name": "evil", "origin": "custom", "origin_path": "", "description": "", "source": evil,
            "source_local": ""}
    response = admin_client.post("/admin/jails/filter/add/", data)
    assert response.status_code == 200 and "backtrack catastrophically" in response.content.decode()
    assert not Filter.objects.filter(name="evil").exists()
    response = admin_client.post("/admin/jails/filter/add/", {**data, "accept_backtracking": "on"})
    assert response.status_code == 302
    assert Filter.objects.get(name="evil").failregex == ["^(x+x+)+y <HOST>"]  # derived as the panel does
    entry = AuditEntry.objects.get(action="filter.accept_backtracking")
    assert (entry.via, entry.username) == ("admin", "root")
    assert entry.after is not None
    assert entry.after["regexes"][0]["shape"] == "(x+x+)+"


def test_django_admin_audits_a_filter_edit_through_the_panels_service_every_field_included(
        admin_client: Client) -> None:
    source = LOGIN_FAILED_SOURCE.strip()  # as the admin form keeps a text (stripped)
    flt = make_filter("web", source, derived=True)
    data = {"name": "web", "origin": flt.origin, "origin_path": "/etc/fail2ban/filter.d/web.conf",
            "description": "", "source": source, "source_local": ""}
    response = admin_client.post(f"/admin/jails/filter/{flt.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = AuditEntry.objects.get(action="filter.edit")
    assert (entry.via, entry.username) == ("admin", "root")
    assert entry.before == {"origin_path": ""} and entry.after == {"origin_path": "/etc/fail2ban/filter.d/web.conf"}


def test_importconf_imports_a_catastrophic_regex_with_a_warning_and_audits_it(tmp_path: Path) -> None:
    tree = minimal_tree(tmp_path, "[evil]\nenabled = true\nlogpath = /var/log/evil.log\n",
                        {"evil.conf": "[Definition]\nfailregex = ^(a+)+$ <HOST>\n"})
    out = StringIO()
    call_command("importconf", str(tree), stdout=out, stderr=StringIO())
    assert Filter.objects.get(name="evil").failregex == ["^(a+)+$ <HOST>"]  # a migration is never stopped
    text = out.getvalue()
    assert "Notes:" in text and "evil: failregex 1 `^(a+)+$ <HOST>`" in text and "imported anyway" in text
    entry = AuditEntry.objects.get(action="config.import")
    assert entry.after is not None
    assert entry.after["dangerous_regexes"][0]["shape"] == "(a+)+"
