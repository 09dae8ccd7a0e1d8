"""The fleet's fan-out safety net (bans.tasks.fan_out) every 30 s on the central `fleet` queue, as an
editable row (bans/periodic.py wants it). Created only when absent."""

from django.db import migrations

NAME = "copy bans to the fleet's other hosts"


def create(apps, schema_editor):  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    if task_model.objects.filter(name=NAME).exists():
        return
    every = interval_model.objects.filter(every=30, period="seconds").first()
    if every is None:
        every = interval_model.objects.create(every=30, period="seconds")
    task_model.objects.create(name=NAME, task="bans.tasks.fan_out", interval=every, queue="fleet")


def remove(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("bans", "0018_tally_host"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
