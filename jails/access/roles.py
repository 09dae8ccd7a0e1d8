"""The panel's three roles, checked on the server for every request.

viewer: reads everything. operator: also bans, unbans and edits ignore lists. admin: also edits
jails, filters and users, and imports configurations. A role is a Django group of the same name;
a superuser is an admin. A user in no role group sees nothing but a page saying to ask an admin.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase


class Role(enum.IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def group_name(self) -> str:
        return self.name.lower()


def role_of(user: AbstractBaseUser | AnonymousUser) -> Role | None:
    """The user's highest role, or None (not logged in, inactive, or in no role group)."""
    if not user.is_authenticated or not user.is_active:
        return None
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    names = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
    held = [role for role in Role if role.group_name in names]
    return max(held, default=None)


def has_role(user: AbstractBaseUser | AnonymousUser, needed: Role) -> bool:
    held = role_of(user)
    return held is not None and held >= needed


View = TypeVar("View", bound=Callable[..., HttpResponseBase])  # a page, a redirect or a streamed export


def role_required(needed: Role) -> Callable[[View], View]:
    """Refuse (403) a request whose user lacks `needed`. Use on every view, reading ones included."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not has_role(request.user, needed):
                raise PermissionDenied(f"this needs the {needed.group_name} role")
            return view(request, *args, **kwargs)

        guarded.required_role = needed  # type: ignore[attr-defined]  # read by the access tests
        return guarded  # type: ignore[return-value]

    return decorate
