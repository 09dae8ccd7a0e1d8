"""The dashboard's tops are read from hourly rollups (AddressStat, UserStat), which the watchers add
to from now on (bans.bulk.add_to_tops). The failures stored before are counted into them here once,
a week of failures at a time (memory bounded by a week's address-hours, whatever the history).
Stop the log watchers before migrating (README, Upgrading): failures an old watcher writes after this
ran are in no rollup. Reversing leaves the tables to the previous migration, which drops them."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections import Counter

from django.db import migrations

CHUNK = dt.timedelta(days=7)
USER_LENGTH = 100  # UserStat.USER_LENGTH


def attacker_network(address: str) -> str:
    """As bans.policy.attacker_network (a migration keeps its own copy: it must not change later)."""
    ip = ipaddress.ip_address(address)
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False))


def count_tops(apps, schema_editor):  # type: ignore[no-untyped-def]
    Failure = apps.get_model("bans", "Failure")
    AddressStat = apps.get_model("bans", "AddressStat")
    UserStat = apps.get_model("bans", "UserStat")
    Jail = apps.get_model("jails", "Jail")
    oldest = Failure.objects.order_by("time").values_list("time", flat=True).first()
    if oldest is None:
        return
    newest = Failure.objects.order_by("-time").values_list("time", flat=True).first()
    names = dict(Jail.objects.values_list("pk", "name"))
    start = oldest.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    networks: dict[str, str] = {}
    while start <= newest:
        end = start + CHUNK  # whole hours: no hour is split between two chunks
        per_address: Counter[tuple[str, dt.datetime, str]] = Counter()
        per_user: Counter[tuple[str, dt.datetime, str]] = Counter()
        rows = Failure.objects.filter(time__gte=start, time__lt=end).values_list("jail_id", "time", "address", "fields")
        for jail_id, when, address, fields in rows.iterator(chunk_size=10_000):
            hour = when.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
            jail_name = names.get(jail_id, "")
            per_address[jail_name, hour, address] += 1
            user = fields.get("user") if isinstance(fields, dict) else None
            if user is not None and str(user):
                per_user[jail_name, hour, str(user)[:USER_LENGTH]] += 1
        AddressStat.objects.bulk_create(
            [AddressStat(jail_name=jail_name, hour=hour, address=address,
                         network=networks.get(address) or networks.setdefault(address, attacker_network(address)),
                         failures=n)
             for (jail_name, hour, address), n in per_address.items()], batch_size=2000,
            # the raw count is the whole truth of its hour: it replaces what a watcher running the
            # new code may have added meanwhile (its failures are among the rows counted here)
            update_conflicts=True, unique_fields=["hour", "address", "jail_name"], update_fields=["failures"])
        UserStat.objects.bulk_create(
            [UserStat(jail_name=jail_name, hour=hour, user=user, failures=n)
             for (jail_name, hour, user), n in per_user.items()], batch_size=2000,
            update_conflicts=True, unique_fields=["hour", "user", "jail_name"], update_fields=["failures"])
        start = end


class Migration(migrations.Migration):
    dependencies = [("bans", "0014_dashboard_tops"), ("jails", "0001_initial")]

    operations = [migrations.RunPython(count_tops, migrations.RunPython.noop)]
