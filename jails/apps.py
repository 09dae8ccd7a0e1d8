"""The jails app: filters, jails, access and audit. Ready means the process reads log dates in the host's
local time again (Django set TZ to TIME_ZONE), as fail2ban does."""

import os
import time

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate


class JailsConfig(AppConfig):
    name = "jails"
    verbose_name = "Jails and filters"

    def ready(self) -> None:
        restore_host_timezone(settings.HOST_TZ)
        post_migrate.connect(regrant_agents, sender=self)


def regrant_agents(**kwargs: object) -> None:
    """After a migration, the fleet's agents get their grants on the tables as they now are (a
    release may add a table they need); nothing where no agent was ever added (jails.fleet.postgres)."""
    from jails.fleet import postgres  # noqa: PLC0415  (models are not loaded when this module is)

    if not kwargs.get("plan"):  # nothing migrated (a test's flush sends this signal too)
        return
    if postgres.agent_roles_exist():
        postgres.apply_grants()


def restore_host_timezone(host_tz: str | None) -> None:
    """Undo Django's TZ=TIME_ZONE for this process: the engine reads dates written without a zone in
    the host's local time, like fail2ban. Django's own aware datetimes do not depend on TZ."""
    if host_tz is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = host_tz
    time.tzset()
