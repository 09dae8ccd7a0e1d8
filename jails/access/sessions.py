"""Which addresses the panel's people are using now: a ban must never cover one of them.

`SessionAddressMiddleware` records, per Django session, the client address it was last seen from
(jails.access.client.client_address: behind a trusted proxy, the real client), and refreshes the row
when the address changes or every REFRESH_EVERY; logging out deletes it. The lockout gate
(bans.services.current_gate) reads `live_session_addresses()`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.models import Session
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from jails.access.client import client_address
from jails.models import LivePanelAddress, PanelSession

# A session keeps its row fresh this often even when its address stays the same (the expiry moves).
REFRESH_EVERY = dt.timedelta(minutes=5)
_SEEN_KEY = "_ips_seen"  # in the session: "key|address|epoch" of the last row written, to skip writes


class SessionAddressMiddleware:
    """After AuthenticationMiddleware: record the address of each authenticated session."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # After the view: a login has just created the session (and its key) by now.
        user = getattr(request, "user", None)
        session = getattr(request, "session", None)
        if user is not None and user.is_authenticated and session is not None and session.session_key:
            remember(request, session.session_key)
        return response


def remember(request: HttpRequest, key: str) -> None:
    address = client_address(request)
    if not address or not isinstance(request.user, User):
        return
    now = timezone.now()
    # the session key is part of it: a key cycled (a new login, a password change) is a new row
    last_key, _, rest = str(request.session.get(_SEEN_KEY, "")).partition("|")
    last_address, _, last_epoch = rest.partition("|")
    if (last_key, last_address) == (key, address) and last_epoch and \
            now.timestamp() - float(last_epoch) < REFRESH_EVERY.total_seconds():
        return
    PanelSession.objects.update_or_create(session_key=key, defaults={
        "user": request.user, "address": address, "last_seen_at": now,
        "expires_at": request.session.get_expiry_date()})
    request.session[_SEEN_KEY] = f"{key}|{address}|{now.timestamp()}"


@receiver(user_logged_out)
def forget_on_logout(sender: Any, request: HttpRequest | None, **kwargs: Any) -> None:
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        PanelSession.objects.filter(session_key=key).delete()


def live_session_addresses(now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """(address, "user NAME") of every live session of an active user: its Django session still
    exists and has not expired. On a fleet agent, whose database role may not read sessions or users,
    the addresses alone, from the view made for it (LivePanelAddress)."""
    if settings.IPS_FLEET_ROLE == "agent":
        addresses = LivePanelAddress.objects.values_list("address", flat=True)
        return [(str(address), "a panel user") for address in addresses]
    now = now or timezone.now()
    live_keys = Session.objects.filter(expire_date__gt=now).values("session_key")
    rows = (PanelSession.objects.filter(expires_at__gt=now, user__is_active=True, session_key__in=live_keys)
            .values_list("address", "user__username").distinct())
    return [(address, f"user {username}") for address, username in rows]


def forget_dead_sessions(now: dt.datetime | None = None) -> int:
    """Delete rows of sessions that ended without a logout (expired, or flushed); returns how many."""
    now = now or timezone.now()
    live_keys = Session.objects.filter(expire_date__gt=now).values("session_key")
    deleted, _ = PanelSession.objects.exclude(session_key__in=live_keys).delete()
    return deleted
