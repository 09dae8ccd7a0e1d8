"""The default schedules of the bans app, as rows that admins can change in Django admin.

Created only when absent (by name), so an admin's edits survive upgrades; the tasks go to the
default queue ("celery"), read by the watchers' worker: none of them touches the firewall.
"""

from django.db import migrations

SCHEDULES = [
    # (name, task, every seconds)
    ("recidive: ban repeat offenders", "bans.tasks.run_recidive", 60),
    ("roll up statistics", "bans.tasks.rollup_stats", 60),
    ("clean up old history", "bans.tasks.cleanup_history", 3600),
]


def create(apps, schema_editor):  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds in SCHEDULES:
        if task_model.objects.filter(name=name).exists():
            continue
        every = interval_model.objects.filter(every=seconds, period="seconds").first()
        if every is None:  # get_or_create would fail on the duplicates Django admin allows
            every = interval_model.objects.create(every=seconds, period="seconds")
        task_model.objects.create(name=name, task=task, interval=every, kwargs="{}")


def remove(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("bans", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
