"""The firewall watch is timed by the firewall worker itself (bans/watching.py), no longer by beat:
the schedule rows of bans.tasks.watch_firewall go (0008 made one per host; each host's firewall
worker now watches its own kernel). Backwards, 0008's row comes back.
"""

import importlib

from django.db import migrations
from django.utils import timezone

WATCH_SCHEDULE = importlib.import_module("bans.migrations.0008_watch_schedule")


def remove(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="bans.tasks.watch_firewall").delete()
    # a beat running meanwhile notices the change through this row (what PeriodicTask's signals do)
    apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
        ident=1, defaults={"last_update": timezone.now()})


class Migration(migrations.Migration):
    dependencies = [
        ("bans", "0011_failure_fewer_indexes"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(remove, WATCH_SCHEDULE.create)]
