"""Statistics are counted as rows are written from now on (bans.bulk.add_to_stats), no longer
recounted by the minute's rollup. The rollup recounted the buckets from a little before the newest
one it wrote; what came after its last run is counted here once, the way it did, so the switch
loses nothing. Reversing leaves the rows (the old rollup recounts them anyway)."""

from __future__ import annotations

import datetime as dt

from django.db import migrations
from django.db.models import Count, Max, Min
from django.db.models.functions import Trunc

OVERLAP = dt.timedelta(minutes=10)


def recount_recent(apps, schema_editor):  # type: ignore[no-untyped-def]
    JailStat = apps.get_model("bans", "JailStat")
    Failure = apps.get_model("bans", "Failure")
    Ban = apps.get_model("bans", "Ban")
    Jail = apps.get_model("jails", "Jail")
    for resolution in ("minute", "hour"):
        newest = JailStat.objects.filter(resolution=resolution).aggregate(newest=Max("bucket"))["newest"]
        if newest is None:
            oldest = Failure.objects.order_by("time").values_list("time", flat=True).first()
            if oldest is None:
                continue
            start = oldest
        else:
            since = newest - OVERLAP
            # as the rollup did: also from the oldest failure stored since then but dated earlier
            # (a watcher catching up stores failures up to its jail's findtime in the past)
            longest = Jail.objects.aggregate(longest=Max("findtime"))["longest"] or 0
            late = (Failure.objects.filter(time__lt=since, time__gte=since - dt.timedelta(seconds=longest),
                                           created_at__gte=since).aggregate(oldest=Min("time"))["oldest"])
            start = since if late is None else min(since, late)
        # whole buckets only: a bucket recounted from part of it would lose the rest
        start = start.astimezone(dt.UTC).replace(second=0, microsecond=0)
        if resolution == "hour":
            start = start.replace(minute=0)
        counts: dict[tuple[str, dt.datetime], list[int]] = {}
        for jail_name, bucket, n in (Failure.objects.filter(time__gte=start)
                                     .annotate(bucket=Trunc("time", resolution, tzinfo=dt.UTC))
                                     .values_list("jail__name", "bucket").annotate(n=Count("pk")).order_by()):
            counts.setdefault((jail_name, bucket), [0, 0])[0] += n
        for jail_name, bucket, n in (Ban.objects.filter(started_at__gte=start)
                                     .annotate(bucket=Trunc("started_at", resolution, tzinfo=dt.UTC))
                                     .values_list("jail_name", "bucket").annotate(n=Count("pk")).order_by()):
            counts.setdefault((jail_name, bucket), [0, 0])[1] += n
        for (jail_name, bucket), (failures, bans) in counts.items():
            JailStat.objects.update_or_create(jail_name=jail_name, resolution=resolution, bucket=bucket,
                                              defaults={"failures": failures, "bans": bans})


class Migration(migrations.Migration):
    dependencies = [("bans", "0009_ban_claimed_by"), ("jails", "0001_initial")]

    operations = [migrations.RunPython(recount_recent, migrations.RunPython.noop)]
