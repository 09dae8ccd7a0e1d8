"""Receivers that keep bans right when other rows change under them."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from bans import services
from bans.models import Ban
from jails.models import Jail


@receiver(pre_delete, sender=Jail)
def lift_bans_of_a_deleted_jail(sender: Any, instance: Jail, **kwargs: Any) -> None:
    """A deleted jail's bans are lifted with it. Without this, its rows would lose their jail
    (on_delete SET_NULL) and could no longer be told from the all-ports blocklist's: a ban on one
    port must never become a ban on every port. Its sets go at the firewall worker's next run."""
    hosts = set(Ban.objects.in_force().filter(jail=instance).values_list("host", flat=True))
    Ban.objects.in_force().filter(jail=instance).update(state=Ban.State.LIFTING)
    for host in sorted(hosts):
        services.request_firewall_sync(host)
