"""The global ignore list: what every jail honours besides its own ignoreip (jails.ignores), and its
changes with their audit entries (jails.changes). Its page and Django admin: test_global_ignore_views.py."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from jails import changes, ignores
from jails.access.audit import Actor
from jails.models import AuditEntry, GlobalIgnore
from tests.factories import make_jail

pytestmark = pytest.mark.django_db


def listed(*entries: str) -> None:
    changes.add_global_ignored(list(entries), Actor.system())


def stored() -> list[str]:
    return ignores.global_entries()


# --- what a jail honours ----------------------------------------------------------------------------


def test_a_jail_honours_the_global_list_then_its_own_entries() -> None:
    jail = make_jail("sshd", ignoreip=["198.51.100.0/24", "192.0.2.1/32", "admin.example.org"])
    listed("192.0.2.1", "10.0.0.0/8")

    lists = ignores.of_jail(jail)

    assert lists.global_entries == ("192.0.2.1", "10.0.0.0/8")
    assert lists.own == ("198.51.100.0/24", "192.0.2.1/32", "admin.example.org")
    # the global entries first; an own entry naming the same network (192.0.2.1/32) once
    assert lists.effective == ["192.0.2.1", "10.0.0.0/8", "198.51.100.0/24", "admin.example.org"]
    assert ignores.effective_ignoreip(jail) == lists.effective


def test_nothing_is_listed_before_anyone_writes_the_list() -> None:
    jail = make_jail("sshd", ignoreip=["198.51.100.7"])

    assert not GlobalIgnore.objects.exists()
    assert stored() == []
    assert ignores.effective_ignoreip(jail) == ["198.51.100.7"]


# --- the changes and their audit entries ------------------------------------------------------------


def test_adding_appends_what_is_missing_and_is_audited_with_the_whole_list() -> None:
    actor = Actor(username="olga", address="198.51.100.20", via="panel")

    first = changes.add_global_ignored(["192.0.2.0/24", "admin.example.org"], actor)
    again = changes.add_global_ignored(["192.0.2.0/24", "203.0.113.7", "203.0.113.7/32", "ADMIN.example.org."], actor)

    assert first == ["192.0.2.0/24", "admin.example.org"]
    assert again == ["203.0.113.7"]  # the same network or host name, however spelled, is listed once
    assert stored() == ["192.0.2.0/24", "admin.example.org", "203.0.113.7"]
    latest, earliest = AuditEntry.objects.order_by("-pk")
    assert (earliest.action, earliest.object_type, earliest.object_repr) == (
        "global.ignoreip", "globalignore", "global ignore list")
    assert (earliest.before, earliest.after) == ([], ["192.0.2.0/24", "admin.example.org"])
    assert latest.before == ["192.0.2.0/24", "admin.example.org"]
    assert latest.after == ["192.0.2.0/24", "admin.example.org", "203.0.113.7"]
    assert (latest.username, latest.address, latest.via) == ("olga", "198.51.100.20", "panel")


def test_adding_nothing_new_writes_no_entry() -> None:
    listed("192.0.2.0/24")
    count = AuditEntry.objects.count()

    assert changes.add_global_ignored(["192.0.2.0/24"], Actor.system()) == []
    assert AuditEntry.objects.count() == count


def test_removing_takes_every_copy_out_and_is_audited() -> None:
    GlobalIgnore.objects.create(entries=["192.0.2.0/24", "203.0.113.7", "192.0.2.0/24"])  # as an old import might

    assert changes.remove_global_ignored("192.0.2.0/24", Actor.command()) is True
    assert changes.remove_global_ignored("192.0.2.0/24", Actor.command()) is False

    assert stored() == ["203.0.113.7"]
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.via) == ("global.ignoreip", "cli")
    assert entry.before == ["192.0.2.0/24", "203.0.113.7", "192.0.2.0/24"] and entry.after == ["203.0.113.7"]


def test_the_import_adds_its_default_entries_once_and_says_which() -> None:
    listed("127.0.0.1/8")

    added = changes.import_global_ignore(["127.0.0.1/8", "::1", "192.0.2.0/24"], Actor.command())
    again = changes.import_global_ignore(["127.0.0.1/8", "::1", "192.0.2.0/24"], None)

    assert added == ["::1", "192.0.2.0/24"] and again == []
    assert stored() == ["127.0.0.1/8", "::1", "192.0.2.0/24"]
    assert AuditEntry.objects.filter(action="global.ignoreip").count() == 2


def test_the_import_refuses_an_entry_that_is_no_address_network_or_name() -> None:
    with pytest.raises(ValidationError) as refused:
        changes.import_global_ignore(["192.0.2.0/24", "10.0.0.0/33"], Actor.command())

    assert "'10.0.0.0/33' is neither an address (192.0.2.1), a network (192.0.2.0/24) nor a host name" in str(
        refused.value)
    assert stored() == [] and not AuditEntry.objects.exists()  # nothing added, not even the good one
