"""The dashboard's top addresses, networks and user names since a moment.

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

from django.db.models import Count, Sum

from bans import policy
from bans.models import AddressStat, Failure, UserStat

TOP_ROWS = 10


def from_rollups(since: dt.datetime) -> bool:
    """Whether the rollups hold exactly the failures since `since`: it starts an hour."""
    return since.minute == 0 and since.second == 0 and since.microsecond == 0


def top_addresses(since: dt.datetime, rows: int = TOP_ROWS) -> list[dict[str, Any]]:
    """[{"address", "count" (failures), "jails" (how many jails saw it)}], most failures first."""
    return (addresses_from_rollups if from_rollups(since) else addresses_from_failures)(since, rows)


def top_networks(since: dt.datetime, rows: int = TOP_ROWS) -> list[dict[str, Any]]:
    """[{"network" (the /24 or /64), "count" (failures), "addresses" (distinct ones)}]."""
    return (networks_from_rollups if from_rollups(since) else networks_from_failures)(since, rows)


def top_users(since: dt.datetime, rows: int = TOP_ROWS) -> list[dict[str, Any]]:
    """[{"user", "count"}]: the user names failures named (a filter's <F-USER> capture)."""
    return (users_from_rollups if from_rollups(since) else users_from_failures)(since, rows)


def addresses_from_rollups(since: dt.datetime, rows: int) -> list[dict[str, Any]]:
    found = (AddressStat.objects.filter(hour__gte=since).values("address")
             .annotate(count=Sum("failures"), jails=Count("jail_name", distinct=True)).order_by("-count", "address"))
    return [dict(row) for row in found[:rows]]


def addresses_from_failures(since: dt.datetime, rows: int) -> list[dict[str, Any]]:
    found = (Failure.objects.filter(time__gte=since).values("address")
             .annotate(count=Count("pk"), jails=Count("jail", distinct=True)).order_by("-count", "address"))
    return [dict(row) for row in found[:rows]]


def networks_from_rollups(since: dt.datetime, rows: int) -> list[dict[str, Any]]:
    found = (AddressStat.objects.filter(hour__gte=since).values("network")
             .annotate(count=Sum("failures"), addresses=Count("address", distinct=True)).order_by("-count", "network"))
    return [dict(row) for row in found[:rows]]


def networks_from_failures(since: dt.datetime, rows: int) -> list[dict[str, Any]]:
    """Summed per address by the database, per network here."""
    failures: Counter[str] = Counter()
    addresses: Counter[str] = Counter()
    per_address = Failure.objects.filter(time__gte=since).values_list("address").annotate(n=Count("pk")).order_by()
    for address, n in per_address.iterator():
        key = policy.attacker_network(address)
        failures[key] += n
        addresses[key] += 1
    return [{"network": key, "count": count, "addresses": addresses[key]}
            for key, count in sorted(failures.items(), key=lambda item: (-item[1], item[0]))[:rows]]


def users_from_rollups(since: dt.datetime, rows: int) -> list[dict[str, Any]]:
    found = (UserStat.objects.filter(hour__gte=since).values("user")
             .annotate(count=Sum("failures")).order_by("-count", "user"))
    return [{"user": row["user"], "count": row["count"]} for row in found[:rows]]


def users_from_failures(since: dt.datetime, rows: int) -> list[dict[str, Any]]:
    counts: Counter[str] = Counter()
    named = (Failure.objects.filter(time__gte=since, fields__has_key="user").values_list("fields__user")
             .annotate(n=Count("pk")).order_by())
    for user, n in named.iterator():
        name = policy.stat_user_name(user, UserStat.USER_LENGTH)
        if name:
            counts[name] += n
    return [{"user": user, "count": count}
            for user, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:rows]]
