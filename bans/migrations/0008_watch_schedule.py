"""The firewall watch (bans.tasks.watch_firewall) every 2 s for host "local", as an editable row.

Created only when absent. Its messages expire after 2 s: a firewall worker busy for longer (a big
batch) finds one watch waiting, not a pile. A second server adds its own row for its own host.
"""

import json

from django.db import migrations

NAME = "watch the firewall (local)"


def create(apps, schema_editor):  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    if task_model.objects.filter(name=NAME).exists():
        return
    every = interval_model.objects.filter(every=2, period="seconds").first()
    if every is None:
        every = interval_model.objects.create(every=2, period="seconds")
    task_model.objects.create(name=NAME, task="bans.tasks.watch_firewall", interval=every,
                              kwargs=json.dumps({"host": "local"}), queue="firewall.local", expire_seconds=2)


def remove(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("bans", "0007_firewallhost_drift"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
