"""Small builders for bans tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bans import bulk
from bans.models import Ban, Failure
from jails.models import Filter, Jail


def make_jail(name: str = "sshd", **options: Any) -> Jail:
    flt, _ = Filter.objects.get_or_create(name="test-filter",
                                          defaults={"source": "[Definition]\nfailregex = ^fail <HOST>$\n"})
    values: dict[str, Any] = {"enabled": True, "maxretry": 3, "findtime": 600, "bantime": 3600, "filter": flt}
    values.update(options)
    return Jail.objects.create(name=name, **values)


def stored_failure(jail: Jail, address: str, when: dt.datetime, *, line: str = "", **fields: Any) -> Failure:
    """A failure as the watchers store it: its row, and its count in the charts' statistics."""
    row = Failure.objects.create(jail=jail, address=address, time=when, line=line, fields=fields)
    bulk.add_to_stats(jail.name, [when.timestamp()])
    return row


def stored_ban(jail: Jail, network: str, started: dt.datetime, **values: Any) -> Ban:
    """A ban row in a state of the test's choosing (ACTIVE unless told), counted in the statistics."""
    fields: dict[str, Any] = {"jail": jail, "jail_name": jail.name, "network": network, "family": 4, "bantime": 600,
                              "started_at": started, "state": Ban.State.ACTIVE}
    fields.update(values)
    ban = Ban.objects.create(**fields)
    bulk.add_to_stats(jail.name, ban_times=[started.timestamp()])
    return ban
