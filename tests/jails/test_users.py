"""The users page (admins only): list with roles, create with a validated password and a role,
change a role, deactivate; every change audited; never zero active admins."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from jails.models import AuditEntry
from jails.roles import Role, role_of

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "plum-tractor-lantern-42"


@pytest.fixture(autouse=True)
def fast_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def user_with(name: str, role: str | None) -> User:
    user = User.objects.create_user(name, password=GOOD_PASSWORD)
    if role:
        user.groups.add(Group.objects.get(name=role))
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
