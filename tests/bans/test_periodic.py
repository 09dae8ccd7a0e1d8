"""bans/periodic.py and `manage.py installschedules`: beat's rows from the settings, installed
idempotently, an admin's intervals and switched-off rows kept, the queue and arguments corrected."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from bans import periodic

pytestmark = pytest.mark.django_db


def install(*args: str) -> str:
    out = StringIO()
    call_command("installschedules", *args, stdout=out)
    return out.getvalue()


def rows() -> dict[str, PeriodicTask]:
    return {task.name: task for task in PeriodicTask.objects.select_related("interval")}


def test_the_migrated_rows_are_what_the_code_wants_and_a_second_install_changes_nothing() -> None:
    first = install()
    assert "already in place" in first, first  # the migrations made the same rows for host "local"
    wanted = periodic.wanted("local", periodic.default_shards(connection.vendor))
    assert {row.name for row in wanted} <= set(rows())
    assert "already in place" in install()


def test_another_host_gets_rows_on_its_own_queue_and_the_old_hosts_rows_are_reported() -> None:
    with override_settings(IPS_HOST_NAME="web1"):
        text = install()
    assert "Created: apply pending bans (web1)" in text and "Created: reconcile the firewall (web1)" in text
    sync = rows()["apply pending bans (web1)"]
    assert sync.queue == "firewall.web1" and json.loads(sync.kwargs) == {"host": "web1"}
    assert "apply pending bans (local)" in text.split("Left alone")[1]  # reported, not removed
    assert rows()["apply pending bans (local)"].enabled


def test_an_admins_interval_and_switch_stay_but_a_wrong_queue_is_corrected() -> None:
    every_45 = IntervalSchedule.objects.create(every=45, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name="roll up statistics").update(interval=every_45, enabled=False)
    PeriodicTask.objects.filter(name="apply pending bans (local)").update(queue="celery", kwargs="{}")
    text = install()
    assert "Corrected: apply pending bans (local) (kwargs, queue)" in text
    after = rows()
    assert after["apply pending bans (local)"].queue == "firewall.local"
    assert json.loads(after["apply pending bans (local)"].kwargs) == {"host": "local"}
    assert (after["roll up statistics"].interval.every, after["roll up statistics"].enabled) == (45, False)


def test_the_follower_count_follows_the_setting_and_otherwise_what_is_scheduled() -> None:
    text = install("--shards", "3")
    assert "Log followers: 3 scheduled." in text
    enabled = sorted(t.name for t in PeriodicTask.objects.filter(task=periodic.FOLLOW_TASK, enabled=True))
    assert enabled == [periodic.follower_name(shard, 3) for shard in range(3)]
    assert "Switched off (another shard count)" in text
    for shard in range(3):
        kwargs = json.loads(rows()[periodic.follower_name(shard, 3)].kwargs)
        assert (kwargs["shard"], kwargs["shards"]) == (shard, 3)
    assert "Log followers: 3 scheduled." in install()  # 0 (the default): keeps what is scheduled
    with override_settings(IPS_FOLLOWER_SHARDS=1):
        assert "Log followers: 1 scheduled." in install("--shards", "1")


def test_unset_the_follower_rows_are_left_as_the_admin_arranged_them() -> None:
    install("--shards", "2")
    first = PeriodicTask.objects.get(name=periodic.follower_name(0, 2))
    first.enabled = False  # the admin switched one follower off
    first.save()
    before = sorted(PeriodicTask.objects.filter(task=periodic.FOLLOW_TASK).values_list("name", "enabled"))
    text = install()
    assert "already in place" in text and "Log followers: 1 scheduled." in text
    assert sorted(PeriodicTask.objects.filter(task=periodic.FOLLOW_TASK).values_list("name", "enabled")) == before


def test_a_row_already_scheduling_this_hosts_firewall_task_is_not_duplicated() -> None:
    # the admin pointed the "(local)" rows at this host, renamed web1, instead of making new ones
    PeriodicTask.objects.filter(task__in=periodic.FIREWALL_TASKS).update(kwargs=json.dumps({"host": "web1"}),
                                                                         queue="firewall.web1")
    with override_settings(IPS_HOST_NAME="web1"):
        text = install()
    assert "already in place" in text and "Left alone" not in text
    assert PeriodicTask.objects.filter(task="bans.tasks.sync_firewall").count() == 1


def test_a_new_install_without_rows_gets_them_all() -> None:
    PeriodicTask.objects.all().delete()
    text = install()
    expected = periodic.wanted("local", periodic.default_shards(connection.vendor))
    assert sorted(rows()) == sorted(row.name for row in expected)
    assert text.count("Created:") == len(expected)
    follow = rows()[periodic.follower_name(0, periodic.default_shards(connection.vendor))]
    assert (follow.interval.every, follow.expire_seconds) == (periodic.FOLLOW_EVERY, periodic.FOLLOW_EVERY)
