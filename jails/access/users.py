"""Panel users: creating them, their role, whether they may log in, and the rules that keep the
panel reachable. Every change is audited in its own transaction; the users page, commands and tests
call these functions, never the models directly.

The rules: there is always at least one active admin (a change that would leave none, the last
admin demoting or deactivating themselves or two admins removing each other at once, is refused);
only a superuser may change a superuser; a superuser is always an admin.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q, QuerySet

from jails.access import audit
from jails.access.roles import Role

ROLE_NAMES = [role.group_name for role in Role]


class Refused(Exception):
    """The change would break a rule; the message says which and what to do instead."""


def role_name(user: User) -> str:
    """The user's role from prefetched groups (jails.access.roles.role_of without a query per user)."""
    if user.is_superuser:
        return Role.ADMIN.group_name
    names = {group.name for group in user.groups.all()}
    held = [role for role in Role if role.group_name in names]
    return max(held).group_name if held else ""


def active_admins() -> QuerySet[User]:
    # admin group members by subquery, not a join: no DISTINCT needed, which FOR UPDATE refuses
    in_admin_group = User.groups.through.objects.filter(group__name=Role.ADMIN.group_name).values("user_id")
    return User.objects.filter(Q(is_superuser=True) | Q(pk__in=in_admin_group), is_active=True)


def lock_admins() -> list[int]:
    """Lock the active admins' rows (in id order, so two requests cannot deadlock) until the
    transaction ends. Two admins demoting or deactivating each other at once: the second waits here
    until the first commits, and its `leaves_no_admin` (a new query) then sees the first's change.
    no_key: other pages' audit entries (a key reference to their user) need not wait for it."""
    return list(active_admins().select_for_update(no_key=True).order_by("pk").values_list("pk", flat=True))


def leaves_no_admin(user: User) -> bool:
    """Whether `user` losing the admin role (or being deactivated) leaves no active admin at all.
    Call it after lock_admins, in the same transaction."""
    return not active_admins().exclude(pk=user.pk).exists()


def refuse_unless_still_admin(actor: audit.Actor) -> None:
    """After lock_admins: the actor may have been demoted or deactivated while waiting for it."""
    pk = actor.user.pk if actor.user is not None else None
    if pk is None or not active_admins().filter(pk=pk).exists():
        raise PermissionDenied("you are no longer an active admin")


def superuser_refusal(actor: audit.Actor, user: User) -> str:
    """Only a superuser may change a superuser (a panel admin is not one, and must not be able to
    lock the superuser out); "" when the change may go ahead."""
    if user.is_superuser and not getattr(actor.user, "is_superuser", False):
        return f"{user.get_username()} is a superuser: only a superuser may change a superuser."
    return ""


def set_role(user: User, role: str) -> None:
    user.groups.remove(*Group.objects.filter(name__in=ROLE_NAMES))
    user.groups.add(Group.objects.get_or_create(name=role)[0])


def create_user(user: User, role: str, actor: audit.Actor) -> User:
    """Save a new user (its password already set) with `role`, and audit it."""
    with transaction.atomic():
        user.save()
        if not user.is_superuser:  # a superuser is an admin by being one; a group would outlive that
            set_role(user, role)
        after = {"username": user.get_username(), "email": user.email, "role": role, "is_active": user.is_active}
        if user.is_superuser:
            after["is_superuser"] = True
        audit.record(actor, "user.create", user, after=after)
    return user


def _locked_user(actor: audit.Actor, pk: int) -> User:
    """In a transaction: lock the admins and user `pk` as they are now, and check the actor may
    still change that user."""
    lock_admins()
    refuse_unless_still_admin(actor)
    user = User.objects.select_for_update(no_key=True).filter(pk=pk).first()  # as it is now
    if user is None:
        raise Refused("That user no longer exists.")
    refused = superuser_refusal(actor, user)
    if refused:
        raise Refused(refused)
    return user


def change_role(pk: int, role: str, actor: audit.Actor) -> tuple[User, bool]:
    """Give user `pk` the role `role`; (the user, whether anything changed). Raises Refused."""
    with transaction.atomic():
        user = _locked_user(actor, pk)
        if user.is_superuser:
            raise Refused(f"{user.get_username()} is a superuser, always an admin; change that in Django admin.")
        old = role_name(user)
        if role == old:
            return user, False
        if old == Role.ADMIN.group_name and user.is_active and leaves_no_admin(user):
            raise Refused(f"{user.get_username()} is the last active admin: make someone else an admin first.")
        set_role(user, role)
        audit.record(actor, "user.role", user, before={"role": old}, after={"role": role})
    return user, True


def set_active(pk: int, active: bool, actor: audit.Actor) -> tuple[User, bool]:
    """Let user `pk` log in or not; (the user, whether anything changed). Raises Refused."""
    with transaction.atomic():
        user = _locked_user(actor, pk)
        if active == user.is_active:
            return user, False
        if not active and role_name(user) == Role.ADMIN.group_name and leaves_no_admin(user):
            raise Refused(f"{user.get_username()} is the last active admin and cannot be deactivated.")
        user.is_active = active
        user.save(update_fields=["is_active"])
        audit.record(actor, "user.activate" if active else "user.deactivate", user,
                     before={"is_active": not active}, after={"is_active": active})
    return user, True
