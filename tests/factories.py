"""Shared builders for the rows tests need: filters, jails, stored failures and bans.

One place for what a test jail looks like, so a change to the Jail model changes one builder. A
test states what matters to it (a log path, maxretry, an ignore list) and takes the rest from here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bans import bulk
from bans.models import Ban, Failure
from jails import services
from jails.models import Filter, Host, Jail

FAIL_SOURCE = "[Definition]\nfailregex = ^fail <HOST>$\n"
LOGIN_FAILED_SOURCE = "[Definition]\nfailregex = ^login failed from <HOST>$\n"
# after the date ("2026-11-22 12:00:00 fail 192.0.2.7"): the replay tests' log lines
DATED_FAIL_SOURCE = "[Definition]\nfailregex = ^\\s*fail <HOST>$\n"


def make_filter(name: str = "test-filter", source: str = FAIL_SOURCE, *, derived: bool = False) -> Filter:
    """The filter `name` (made once, then reused). derived=True also fills the columns the engine derives
    from the text (its regex list, datepattern...), as the panel does when it saves a filter."""
    existing = Filter.objects.filter(name=name).first()
    if existing is not None:
        return existing
    fields = services.derive_stored_fields(name, source) if derived else {}
    return Filter.objects.create(name=name, source=source, **fields)


def make_jail(name: str = "sshd", **options: Any) -> Jail:
    """An enabled jail (3 failures in 10 minutes ban for an hour) on the filter `flt=`, or on
    make_filter()'s; any other option is a Jail field."""
    flt: Filter | None = options.pop("flt", None)
    values: dict[str, Any] = {"enabled": True, "maxretry": 3, "findtime": 600, "bantime": 3600}
    values.update(options)
    return Jail.objects.create(name=name, filter=flt or make_filter(), **values)


def stored_failure(jail: Jail, address: str, when: dt.datetime, *, line: str = "", **fields: Any) -> Failure:
    """A failure as the watchers store it: its row, and its count in the charts' statistics and the tops."""
    row = Failure.objects.create(jail=jail, address=address, time=when, line=line, fields=fields)
    bulk.add_to_stats(jail.name, [when.timestamp()])
    bulk.add_to_tops(jail.name, [(when.timestamp(), address, fields.get("user"))])
    return row


def stored_ban(jail: Jail, network: str, started: dt.datetime, **values: Any) -> Ban:
    """A ban row in a state of the test's choosing (ACTIVE unless told), counted in the statistics."""
    fields: dict[str, Any] = {"jail": jail, "jail_name": jail.name, "network": network, "family": 4, "bantime": 600,
                              "started_at": started, "state": Ban.State.ACTIVE}
    fields.update(values)
    ban = Ban.objects.create(**fields)
    bulk.add_to_stats(jail.name, ban_times=[started.timestamp()])
    return ban


def make_host(name: str, *, groups: tuple[str, ...] = (), addresses: tuple[str, ...] = (),
              state: str = Host.State.ACTIVE) -> Host:
    """A fleet host's row as `hostctl add` leaves it, without its credentials (tests/fleet.py makes
    real ones where a test needs them)."""
    return Host.objects.create(name=name, kind=Host.Kind.AGENT, state=state, groups=list(groups),
                               addresses=list(addresses))
