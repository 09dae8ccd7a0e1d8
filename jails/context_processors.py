"""Template context every page needs: the user's role, so navigation shows only what they may do."""

from __future__ import annotations

from django.http import HttpRequest

from jails.access.roles import Role, role_of


def panel(request: HttpRequest) -> dict[str, object]:
    role = role_of(request.user)
    return {
        "role": role,
        "is_operator": role is not None and role >= Role.OPERATOR,
        "is_admin": role is not None and role >= Role.ADMIN,
    }
