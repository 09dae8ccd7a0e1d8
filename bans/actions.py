"""The panel's actions on bans that exist: lift one, make one permanent, lift all bans of a jail.

Each is one conditional UPDATE (a ban the firewall worker or another person changed meanwhile is
left alone) followed by a request to the ban's firewall host to apply it once the transaction
commits (bans.services.request_firewall_sync). Call them inside the transaction that also writes
the audit entry. New bans and unbans by address are bans.services.ban_by_hand / unban.
"""

from __future__ import annotations

from typing import Any

from bans import services
from bans.models import Ban


def lift_ban(ban: Ban, user: Any) -> bool:
    """Lift exactly this ban (not the address's bans in other jails); False when it is not live."""
    lifted = Ban.objects.in_force().filter(pk=ban.pk).update(state=Ban.State.LIFTING, ended_by=user)
    if lifted:
        services.request_firewall_sync(ban.host)
    return bool(lifted)


def make_permanent(ban: Ban) -> bool:
    """Make a live timed ban permanent; False when it is not live or permanent already.

    The ban goes back to PENDING so the firewall worker adds it again without a timeout (adding an
    element that is there replaces it); until then the kernel keeps the timed element, so the
    address stays banned throughout.
    """
    changed = (Ban.objects.in_force().filter(pk=ban.pk).exclude(bantime=-1)
               .update(bantime=-1, expires_at=None, state=Ban.State.PENDING, next_attempt_at=None))
    if changed:
        services.request_firewall_sync(ban.host)
    return bool(changed)


def lift_jail(jail_name: str, user: Any) -> list[Ban]:
    """Lift every live ban of one jail (on every firewall host); returns the bans lifted."""
    live = list(Ban.objects.in_force().filter(jail_name=jail_name).order_by("network"))
    ids = [ban.pk for ban in live]
    Ban.objects.in_force().filter(pk__in=ids).update(state=Ban.State.LIFTING, ended_by=user)
    lifted = list(Ban.objects.filter(pk__in=ids, state=Ban.State.LIFTING, ended_by=user).order_by("network"))
    for host in sorted({ban.host for ban in lifted}):
        services.request_firewall_sync(host)
    return lifted
