"""The users page (admins only): list with roles, create with a validated password and a role,
change a role, deactivate; every change audited; never zero active admins."""

from __future__ import annotations

import contextlib

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from pytest_django import Settings

from jails.access.roles import Role, role_of
from jails.models import AuditEntry

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "plum-tractor-lantern-42"


@pytest.fixture(autouse=True)
def fast_hashing(settings: Settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def user_with(name: str, role: str | None) -> User:
    user = User.objects.create_user(name, password=GOOD_PASSWORD)
    if role:
        # get_or_create: a transactional test starts from a flushed database, without the role
        # groups the migration made
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def client_for(user: User) -> Client:
    client = Client(REMOTE_ADDR="192.0.2.30")
    client.force_login(user)
    return client


@pytest.fixture
def boss() -> User:
    return user_with("boss", "admin")


def test_it_lists_users_with_their_roles(boss: User) -> None:
    user_with("olga", "operator")
    user_with("nobody", None)
    html = client_for(boss).get("/users/").content.decode()
    assert "olga" in html and ">operator<" in html and "no role" in html


def test_only_admins_see_the_users_page(boss: User) -> None:
    assert client_for(user_with("olga", "operator")).get("/users/").status_code == 403


def test_it_creates_a_user_with_a_role_and_audits_it(boss: User) -> None:
    response = client_for(boss).post("/users/new/", {"username": "vic", "email": "", "role": "viewer",
                                                     "password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD})
    assert response.status_code == 302
    vic = User.objects.get(username="vic")
    assert role_of(vic) == Role.VIEWER and vic.check_password(GOOD_PASSWORD)
    entry = AuditEntry.objects.get(action="user.create")
    assert entry.after is not None
    assert entry.username == "boss" and entry.address == "192.0.2.30" and entry.after["role"] == "viewer"
    assert GOOD_PASSWORD not in str(entry.after)


def test_it_refuses_a_weak_password_with_the_reason(boss: User) -> None:
    response = client_for(boss).post("/users/new/", {"username": "vic", "role": "viewer",
                                                     "password1": "123", "password2": "123"})
    assert response.status_code == 400
    assert "too short" in response.content.decode()
    assert not User.objects.filter(username="vic").exists() and not AuditEntry.objects.exists()


def test_it_changes_a_role_and_audits_before_and_after(boss: User) -> None:
    olga = user_with("olga", "operator")
    client_for(boss).post(f"/users/{olga.pk}/role/", {"role": "viewer"})
    assert role_of(User.objects.get(pk=olga.pk)) == Role.VIEWER
    entry = AuditEntry.objects.get(action="user.role")
    assert (entry.before, entry.after) == ({"role": "operator"}, {"role": "viewer"})


def test_it_deactivates_and_reactivates(boss: User) -> None:
    olga = user_with("olga", "operator")
    client_for(boss).post(f"/users/{olga.pk}/active/", {"active": "0"})
    assert not User.objects.get(pk=olga.pk).is_active
    client_for(boss).post(f"/users/{olga.pk}/active/", {"active": "1"})
    assert User.objects.get(pk=olga.pk).is_active
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "user.deactivate", "user.activate"]


def test_a_deactivated_user_can_no_longer_log_in(boss: User) -> None:
    olga = user_with("olga", "operator")
    client_for(boss).post(f"/users/{olga.pk}/active/", {"active": "0"})
    response = Client().post("/accounts/login/", {"username": "olga", "password": GOOD_PASSWORD})
    assert response.status_code == 200 and "_auth_user_id" not in response.client.session


def test_the_last_admin_cannot_demote_or_deactivate_themselves(boss: User) -> None:
    client = client_for(boss)
    response = client.post(f"/users/{boss.pk}/role/", {"role": "viewer"}, follow=True)
    assert "last active admin" in response.content.decode()
    response = client.post(f"/users/{boss.pk}/active/", {"active": "0"}, follow=True)
    assert "last active admin" in response.content.decode()
    boss.refresh_from_db()
    assert boss.is_active and role_of(boss) == Role.ADMIN and not AuditEntry.objects.exists()


def test_an_admin_may_step_down_when_another_admin_remains(boss: User) -> None:
    user_with("second", "admin")
    client_for(boss).post(f"/users/{boss.pk}/role/", {"role": "operator"})
    assert role_of(User.objects.get(pk=boss.pk)) == Role.OPERATOR


def test_an_inactive_admin_does_not_count_as_the_remaining_one(boss: User) -> None:
    other = user_with("second", "admin")
    other.is_active = False
    other.save()
    client_for(boss).post(f"/users/{boss.pk}/active/", {"active": "0"})
    assert User.objects.get(pk=boss.pk).is_active


def test_a_superuser_stays_admin_here(boss: User) -> None:
    root = User.objects.create_superuser("root", "", GOOD_PASSWORD)
    response = client_for(boss).post(f"/users/{root.pk}/role/", {"role": "viewer"}, follow=True)
    assert "superuser" in response.content.decode() and role_of(root) == Role.ADMIN


def test_it_refuses_an_unknown_role(boss: User) -> None:
    olga = user_with("olga", "operator")
    client_for(boss).post(f"/users/{olga.pk}/role/", {"role": "god"})
    assert role_of(User.objects.get(pk=olga.pk)) == Role.OPERATOR


# --- superusers and two admins at once --------------------------------------------------------------


def test_only_a_superuser_may_change_a_superuser(boss: User) -> None:
    root = User.objects.create_superuser("root", "", GOOD_PASSWORD)
    client = client_for(boss)

    deactivated = client.post(f"/users/{root.pk}/active/", {"active": "0"}, follow=True)
    demoted = client.post(f"/users/{root.pk}/role/", {"role": "viewer"}, follow=True)

    for response in (deactivated, demoted):
        assert "only a superuser may change a superuser" in response.content.decode()
    root.refresh_from_db()
    assert root.is_active and root.is_superuser and not AuditEntry.objects.exists()


def test_a_superuser_may_deactivate_another_superuser(boss: User) -> None:
    root = User.objects.create_superuser("root", "", GOOD_PASSWORD)
    other = User.objects.create_superuser("root2", "", GOOD_PASSWORD)

    client_for(root).post(f"/users/{other.pk}/active/", {"active": "0"})

    other.refresh_from_db()
    assert not other.is_active and AuditEntry.objects.get().action == "user.deactivate"


def test_the_admins_are_locked_in_the_transaction_before_the_check(boss: User,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connection

    from jails.access import users as access_users

    second = user_with("second", "admin")
    root = User.objects.create_superuser("root", "", GOOD_PASSWORD)
    retired = user_with("retired", "admin")
    retired.is_active = False
    retired.save()
    user_with("olga", "operator")
    seen: list[tuple[bool, list[int]]] = []
    real_lock = access_users.lock_admins

    def spy() -> list[int]:
        seen.append((connection.in_atomic_block, real_lock()))
        return seen[-1][1]

    monkeypatch.setattr(access_users, "lock_admins", spy)

    client_for(boss).post(f"/users/{second.pk}/active/", {"active": "0"})
    client_for(boss).post(f"/users/{boss.pk}/role/", {"role": "operator"})  # refused: the last admin

    query = access_users.active_admins().select_for_update().query
    assert query.select_for_update and not query.distinct  # PostgreSQL refuses FOR UPDATE with DISTINCT
    assert seen == [(True, sorted([boss.pk, second.pk, root.pk])), (True, sorted([boss.pk, root.pk]))]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_admins_removing_each_other_at_once_leave_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from django.db import connection

    from jails.access import users as access_users

    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite runs one writer at a time anyway)")
    alice, bob = user_with("alice", "admin"), user_with("bob", "admin")
    clients = {alice.pk: client_for(alice), bob.pk: client_for(bob)}
    # without the lock both requests would pass the check before either writes: hold each one after
    # its check until the other has checked too, or for two seconds (the locked one never gets there)
    both_checked = threading.Barrier(2, timeout=2)
    real_check = access_users.leaves_no_admin

    def check_then_wait(user: User) -> bool:
        answer = real_check(user)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait()
        return answer

    monkeypatch.setattr(access_users, "leaves_no_admin", check_then_wait)

    def deactivate(actor: User, target: User) -> None:
        try:
            clients[actor.pk].post(f"/users/{target.pk}/active/", {"active": "0"})
        finally:
            connection.close()

    threads = [threading.Thread(target=deactivate, args=pair) for pair in ((alice, bob), (bob, alice))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert User.objects.filter(username__in=["alice", "bob"], is_active=True).count() == 1
    assert AuditEntry.objects.filter(action="user.deactivate").count() == 1
