"""Install or refresh the built-in filter library (jails/builtin/filter.d) in the database, and
what the panel needs to protect itself: its "panel" jail and the login throttle's cache table.

Run by scripts/run.sh at every start. Only rows that are still built-in are refreshed: a
filter imported from fail2ban or edited in the panel under the same name is left alone. The
"panel" jail is created when missing and never changed afterwards (the admin may edit it; to
turn it off, disable it rather than delete it, or it comes back at the next start).
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from jails import changes
from jails.access import audit
from jails.builtin import install_builtin_filters
from jails.engine.errors import EngineError
from jails.models import Filter, Jail

PANEL_JAIL = "panel"


class Command(BaseCommand):
    help = "Install or refresh the built-in filters; filters imported or edited by an admin are kept as they are."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = install_builtin_filters()
        except EngineError as exc:
            raise CommandError(f"built-in filter library is broken: {exc}") from None
        if result.created or result.updated:
            self.stdout.write(
                f"Built-in filters: {len(result.created)} installed, {len(result.updated)} refreshed, "
                f"{len(result.kept)} kept as the admin left them."
            )
        # The login throttle's counters (settings.CACHES); quiet and idempotent.
        call_command("createcachetable", verbosity=0)
        prepare_panel_log()
        if install_panel_jail():
            self.stdout.write(f"Created the jail '{PANEL_JAIL}': it bans clients that fail to log in to the panel "
                              f"(log {settings.IPS_PANEL_LOG}).")


def prepare_panel_log() -> None:
    """Create the panel's log (and its directory) so that the jail's log source exists from the start."""
    path = settings.IPS_PANEL_LOG
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640))


def panel_ports() -> str:
    """The ports the panel is reached on: http, https, and the port it listens on (IPS_BIND)."""
    bind = os.environ.get("IPS_BIND", "127.0.0.1:8000")
    port = bind.rsplit(":", 1)[-1]
    return f"http,https,{port}" if port.isdigit() and port not in ("80", "443") else "http,https"


def install_panel_jail() -> bool:
    """The panel's own jail (filter "panel"): 5 failures in 15 minutes bans for an hour."""
    panel_filter = Filter.objects.filter(name=PANEL_JAIL).first()
    if panel_filter is None or Jail.objects.filter(name=PANEL_JAIL).exists():
        return False
    with transaction.atomic():
        jail = Jail(name=PANEL_JAIL, enabled=True, filter=panel_filter, logpath=[str(settings.IPS_PANEL_LOG)],
                    maxretry=5, findtime=15 * 60, bantime=60 * 60, port=panel_ports(),
                    description="The panel's own failed logins (built in). Put the admins' networks in ignoreip.")
        jail.full_clean()
        changes.create_jail(jail, audit.Actor.system())
    return True
