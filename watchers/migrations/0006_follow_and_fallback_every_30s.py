"""The follower restart (`follow log sources`) and the fallback read (`read log sources`) every 30 s
instead of 10 s, where followers are scheduled.

Neither is how followers normally start or keep going any more: a watcher worker asks for its
followers as it starts (watchers.tasks.start_followers, waiting out a dead follower's lease), and a
follower keeps its shard across a Redis restart (watchers.lease.Lease.keep). The rows only bring
back a follower lost some other way (its pool process killed alone). Each send costs beat, the
worker and a pool process a wake-up: at 10 s the two rows were a fifth of the idle stack's CPU
(measured per process, 0.86% -> 0.69% of a core with both at 60 s).

Only rows still at the old default move (an admin's own interval stays); the follow rows' messages
expire after one interval, as 0003 set them. Going back moves the rows at 30 s to 10 s, an admin's
own 30 s included: the reverse is approximate.
"""

from django.db import migrations
from django.utils import timezone

OLD_SECONDS, NEW_SECONDS = 10, 30
FALLBACK = "read log sources"  # the row 0002 made (an admin's other rows of the task are theirs)


def move(apps, schema_editor, old, new):  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    if not task_model.objects.filter(task="watchers.tasks.follow", enabled=True).exists():
        return  # without followers read_all_sources is the reader: its interval is not ours to change
    at_old = task_model.objects.filter(interval__every=old, interval__period="seconds")
    rows = [*at_old.filter(task="watchers.tasks.follow"), *at_old.filter(name=FALLBACK)]
    if not rows:
        return
    every = interval_model.objects.filter(every=new, period="seconds").first()
    if every is None:  # get_or_create would fail on the duplicates Django admin allows
        every = interval_model.objects.create(every=new, period="seconds")
    for row in rows:
        row.interval = every
        fields = ["interval"]
        if row.task == "watchers.tasks.follow" and row.expire_seconds == old:
            row.expire_seconds = new
            fields.append("expire_seconds")
        row.save(update_fields=fields)
    # beat notices a changed schedule through this row (what PeriodicTask.save's signal does)
    apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
        ident=1, defaults={"last_update": timezone.now()})


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    move(apps, schema_editor, OLD_SECONDS, NEW_SECONDS)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    move(apps, schema_editor, NEW_SECONDS, OLD_SECONDS)


class Migration(migrations.Migration):
    dependencies = [
        ("watchers", "0005_fallback_read_every_10s"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
