"""The dashboard's top addresses, networks and user names in a time range (since a moment, or between two).

Since the start of an hour (the day, week and month dashboards), they are summed from the hourly
rollups AddressStat and UserStat, which the watchers add to as they write failures
(bans.bulk.add_to_tops): a month at a million failures reads about a tenth as many rows, from
covering indexes. Since any other moment (the hour dashboard, whose start is a minute), from the
raw failures of that hour or less, which the time index bounds.

Each answer is the TOP_ROWS rows with the most failures, ties by the key; the same figures either way.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from django.db.models import Count, QuerySet, Sum
from django.db.models.fields.json import KT

from bans import policy
from bans.models import AddressStat, Failure, UserStat

TOP_ROWS = 10


def from_rollups(since: dt.datetime, until: dt.datetime | None = None) -> bool:
    """Whether the rollups hold exactly the failures in [since, until): both start an hour."""
    return all(moment.minute == 0 and moment.second == 0 and moment.microsecond == 0
               for moment in (since, until) if moment is not None)


def in_range(queryset: QuerySet[Any], field: str, since: dt.datetime, until: dt.datetime | None) -> QuerySet[Any]:
    found = queryset.filter(**{f"{field}__gte": since})
    return found if until is None else found.filter(**{f"{field}__lt": until})


def top_addresses(since: dt.datetime, rows: int = TOP_ROWS, *,
                  until: dt.datetime | None = None) -> list[dict[str, Any]]:
    """[{"address", "count" (failures), "jails" (how many jails saw it)}], most failures first."""
    return (addresses_from_rollups if from_rollups(since, until) else addresses_from_failures)(since, rows, until)


def top_networks(since: dt.datetime, rows: int = TOP_ROWS, *,
                 until: dt.datetime | None = None) -> list[dict[str, Any]]:
    """[{"network" (the /24 or /64), "count" (failures), "addresses" (distinct ones)}]."""
    return (networks_from_rollups if from_rollups(since, until) else networks_from_failures)(since, rows, until)


def top_users(since: dt.datetime, rows: int = TOP_ROWS, *,
              until: dt.datetime | None = None) -> list[dict[str, Any]]:
    """[{"user", "count"}]: the user names failures named (a filter's <F-USER> capture)."""
    return (users_from_rollups if from_rollups(since, until) else users_from_failures)(since, rows, until)


def addresses_from_rollups(since: dt.datetime, rows: int, until: dt.datetime | None = None) -> list[dict[str, Any]]:
    found = (in_range(AddressStat.objects.all(), "hour", since, until).values("address")
             .annotate(count=Sum("failures"), jails=Count("jail_name", distinct=True)).order_by("-count", "address"))
    return [dict(row) for row in found[:rows]]


def addresses_from_failures(since: dt.datetime, rows: int, until: dt.datetime | None = None) -> list[dict[str, Any]]:
    found = (in_range(Failure.objects.all(), "time", since, until).values("address")
             .annotate(count=Count("pk"), jails=Count("jail", distinct=True)).order_by("-count", "address"))
    return [dict(row) for row in found[:rows]]


def networks_from_rollups(since: dt.datetime, rows: int, until: dt.datetime | None = None) -> list[dict[str, Any]]:
    found = (in_range(AddressStat.objects.all(), "hour", since, until).values("network")
             .annotate(count=Sum("failures"), addresses=Count("address", distinct=True)).order_by("-count", "network"))
    return [dict(row) for row in found[:rows]]


def networks_from_failures(since: dt.datetime, rows: int, until: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Summed per address by the database, per network here."""
    failures: Counter[str] = Counter()
    addresses: Counter[str] = Counter()
    per_address = (in_range(Failure.objects.all(), "time", since, until).values_list("address")
                   .annotate(n=Count("pk")).order_by())
    for address, n in per_address.iterator():
        key = policy.attacker_network(address)
        failures[key] += n
        addresses[key] += 1
    return [{"network": key, "count": count, "addresses": addresses[key]}
            for key, count in sorted(failures.items(), key=lambda item: (-item[1], item[0]))[:rows]]


def users_from_rollups(since: dt.datetime, rows: int, until: dt.datetime | None = None) -> list[dict[str, Any]]:
    found = (in_range(UserStat.objects.all(), "hour", since, until).values("user")
             .annotate(count=Sum("failures")).order_by("-count", "user"))
    return [{"user": row["user"], "count": row["count"]} for row in found[:rows]]


def users_from_failures(since: dt.datetime, rows: int, until: dt.datetime | None = None) -> list[dict[str, Any]]:
    counts: Counter[str] = Counter()
    # KT: the value as text on both backends (SQLite's JSON path would decode "null" and numbers)
    named = (in_range(Failure.objects.filter(fields__has_key="user"), "time", since, until)
             .annotate(user=KT("fields__user")).values_list("user").annotate(n=Count("pk")).order_by())
    for user, n in named.iterator():
        name = policy.stat_user_name(user, UserStat.USER_LENGTH)
        if name:
            counts[name] += n
    return [{"user": user, "count": count}
            for user, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:rows]]
