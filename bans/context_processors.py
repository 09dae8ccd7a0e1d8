"""Template context of every page: whether this host's firewall does what the panel shows."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from bans.status import firewall_status


def firewall(request: HttpRequest) -> dict[str, object]:
    """The warning banner of every page (base.html): a firewall not being changed, or a kernel that
    disagrees with the bans shown. Nothing for the login page (no queries for strangers)."""
    if not request.user.is_authenticated:
        return {}
    ok, message = firewall_status(settings.IPS_HOST_NAME)
    return {"firewall_ok": ok, "firewall_message": message}
