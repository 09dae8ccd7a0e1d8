"""The schedules that (re)start the log followers (watchers.tasks.follow), one row per shard.

A follower holds a Redis lease on its shard, so a start while one runs returns at once: the rows
only bring back a follower that is missing (first start, a killed worker). Each message expires
after one interval, so a stopped worker does not find a pile of them when it comes back.
Created only when absent, so an admin's edits survive upgrades. `read log sources` (0002) stays:
it now reads only the shards no follower holds.

How many shards: two on PostgreSQL (sources of different shards are read in parallel), ONE on
SQLite. SQLite has a single writer and a read holds it from its first matched line to its commit,
so a second follower only waits for the first, and their back-to-back transactions starve the
firewall worker's writes (bench/latency.py measured a plain UPDATE waiting 230-740 ms at p99 with
two followers under 2,000 lines/s, 35 ms with one). An admin may add rows (Django admin) after
moving to PostgreSQL; `runstack` sizes the watcher worker from the rows.
"""

import json

from django.db import migrations

LEASE_SECONDS = 300
EVERY_SECONDS = 10


def shards_for(vendor):  # type: ignore[no-untyped-def]
    return 1 if vendor == "sqlite" else 2


def names(shards):  # type: ignore[no-untyped-def]
    return [f"follow log sources (shard {shard} of {shards})" for shard in range(shards)]


def create(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor is not None:
        vendor = schema_editor.connection.vendor
    else:  # called by a test after its database was flushed
        from django.db import connection

        vendor = connection.vendor
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    if task_model.objects.filter(task="watchers.tasks.follow").exists():
        return  # the admin's followers, whatever their number
    shards = shards_for(vendor)
    every = interval_model.objects.filter(every=EVERY_SECONDS, period="seconds").first()
    if every is None:  # get_or_create would fail on the duplicates Django admin allows
        every = interval_model.objects.create(every=EVERY_SECONDS, period="seconds")
    for shard, name in enumerate(names(shards)):
        kwargs = {"shard": shard, "shards": shards, "lease_seconds": LEASE_SECONDS}
        task_model.objects.create(name=name, task="watchers.tasks.follow", interval=every, kwargs=json.dumps(kwargs),
                                  expire_seconds=EVERY_SECONDS)


def remove(apps, schema_editor):  # type: ignore[no-untyped-def]
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    task_model.objects.filter(name__in=names(1) + names(2)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("watchers", "0002_default_schedules"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
