"""`read log sources` (watchers.tasks.read_all_sources) every 10 s instead of 2 s, where followers
are scheduled (watchers/0003): they read each source the moment it changes, so this task only
covers a shard whose follower is missing, which the follow schedule itself restarts within
10 s. At 2 s it was half of an idle stack's CPU (a beat message, the worker's receipt and a
pool process's run, every 2 s, to find nothing to do).

Only a row still at the old default is moved (an admin's own interval stays), and only when
follower schedules exist: without followers this task is the reader, and stays at 2 s.
"""

from django.db import migrations
from django.utils import timezone

NAME = "read log sources"
OLD_SECONDS, NEW_SECONDS = 2, 10


def move(apps, schema_editor, old, new):  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    if not task_model.objects.filter(task="watchers.tasks.follow", enabled=True).exists():
        return
    row = task_model.objects.filter(name=NAME, interval__every=old, interval__period="seconds").first()
    if row is None:
        return
    every = interval_model.objects.filter(every=new, period="seconds").first()
    if every is None:  # get_or_create would fail on the duplicates Django admin allows
        every = interval_model.objects.create(every=new, period="seconds")
    row.interval = every
    row.save(update_fields=["interval"])
    # beat notices a changed schedule through this row (what PeriodicTask.save's signal does)
    apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
        ident=1, defaults={"last_update": timezone.now()})


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    move(apps, schema_editor, OLD_SECONDS, NEW_SECONDS)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    move(apps, schema_editor, NEW_SECONDS, OLD_SECONDS)


class Migration(migrations.Migration):
    dependencies = [
        ("watchers", "0004_source_skips_and_slow_filters"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
