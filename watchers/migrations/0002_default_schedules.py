"""The default schedules, as rows that admins can change in Django admin (django-celery-beat).

Only created when absent, so an admin's edits survive upgrades. Firewall tasks name the host
"local" (IPS_HOST_NAME's default); a second server adds its own rows for its own host.
"""

import json

from django.db import migrations

SCHEDULES = [
    # (name, task, every seconds, kwargs)
    ("read log sources", "watchers.tasks.read_all_sources", 2, {}),
    ("apply pending bans (local)", "bans.tasks.sync_firewall", 30, {"host": "local"}),
    ("reconcile the firewall (local)", "bans.tasks.reconcile_firewall", 300, {"host": "local"}),
]


def create(apps, schema_editor):  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds, kwargs in SCHEDULES:
        if task_model.objects.filter(name=name).exists():
            continue
        every, _ = interval_model.objects.get_or_create(every=seconds, period="seconds")
        queue = f"firewall.{kwargs['host']}" if "host" in kwargs else None
        task_model.objects.create(name=name, task=task, interval=every, kwargs=json.dumps(kwargs), queue=queue)


def remove(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("watchers", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
