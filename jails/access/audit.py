"""The audit trail: every change to jails, filters, bans, ignore lists and users, from any door.

Who made a change travels as an `Actor` (`Actor.of_request(request)`, `Actor.command()` for a
management command, `Actor.system()`). The services that own the changes take one and write the
entry themselves, so every door records the same thing: jails.changes (jails, filters, ignore
lists), jails.access.users, jails.importer (an import), bans.services.ban_by_hand and bans.actions
(bans), bans.replay.start_replay. Django admin's generic AuditedModelAdmin (jails/admin.py) is the
one other caller: it records any model's fields as they were and became. Always inside the same
transaction as the change, so there is never a change without its entry or an entry for a change
that rolled back. Values are stored with control characters escaped (a log line or a user name an
attacker wrote cannot paint the audit page or a terminal).
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import models
from django.http import HttpRequest

from jails.access.client import client_address
from jails.models import AuditEntry

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """Control characters (and bidi overrides) written as \\xHH / \\uHHHH; tab and newline kept."""
    return CONTROL_CHARS.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: Any) -> Any:
    """A JSON-able copy of value with every string's control characters escaped."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, Mapping):
        return {escape_controls(str(key)): clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [clean(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return escape_controls(str(value))  # dates, decimals, addresses: their text


def snapshot(instance: models.Model, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The instance's field values (foreign keys as their id), for `before` and `after`."""
    names = fields or [field.attname for field in instance._meta.concrete_fields]
    return {name: clean(getattr(instance, name)) for name in names}


@dataclass(frozen=True)
class Actor:
    """Who makes a change and through which door: what its audit entry says about them."""

    user: User | None = None
    username: str = ""
    address: str | None = None  # the client's address, for changes made over HTTP
    via: str = "cli"  # panel, admin, cli, system

    @classmethod
    def of_request(cls, request: HttpRequest, via: str = "panel") -> Actor:
        user = request.user if request.user.is_authenticated else None
        return cls(user=user, username=user.get_username() if user is not None else "",
                   address=client_address(request) or None, via=via)

    @classmethod
    def command(cls) -> Actor:
        """A management command, named by the login that runs it."""
        return cls(username=command_user(), via="cli")

    @classmethod
    def system(cls) -> Actor:
        return cls(via="system")


def record(
    request: HttpRequest | Actor | None,
    action: str,
    obj: models.Model | None = None,
    *,
    object_type: str = "",
    object_repr: str = "",
    before: Any = None,
    after: Any = None,
    via: str = "",
    username: str = "",
) -> AuditEntry:
    """Write one audit entry. With a request or an Actor, who and from where come from it."""
    if isinstance(request, Actor):
        actor = request
    elif request is not None:
        actor = Actor.of_request(request)
    else:
        actor = Actor(username=username)
    return AuditEntry.objects.create(
        user=actor.user,
        username=escape_controls(actor.username or username),
        address=actor.address,
        via=via or actor.via,
        action=action,
        object_type=object_type or (str(obj._meta.model_name) if obj is not None else ""),
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=escape_controls(object_repr or (str(obj) if obj is not None else ""))[:200],
        before=clean(before),
        after=clean(after),
    )


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields whose value differs: {name: (before, after)}, for display."""
    return {key: (before.get(key), after.get(key)) for key in after if before.get(key) != after.get(key)}


def command_user() -> str:
    """Who runs a management command, for entries with via="cli": the login name of the process."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (a bare container)
        return ""
