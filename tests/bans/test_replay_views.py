"""The replay pages: start a replay, watch its progress bar, read the comparison."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from pytest_django import DjangoCaptureOnCommitCallbacks

from bans import hostaddrs, replay
from bans.models import Ban, ReplayRun
from jails.models import AuditEntry, Jail
from tests.factories import DATED_FAIL_SOURCE, make_filter, make_jail

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 11, 20, 10, 0, 0, tzinfo=dt.UTC)


def client_for(role: str) -> Client:
    user = User.objects.create_user(f"{role}-user", password="x")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def jail(tmp_path: Path) -> Jail:
    log = tmp_path / "app.log"
    lines = [f"{START + dt.timedelta(seconds=s):%Y-%m-%d %H:%M:%S} fail {address}\n"
             for s, address in ((0, "192.0.2.7"), (5, "192.0.2.8"), (10, "192.0.2.7"), (20, "192.0.2.7"))]
    log.write_text("".join(lines))
    return make_jail("web", flt=make_filter("replay-test", DATED_FAIL_SOURCE), logpath=[str(log)])


def test_an_operator_starts_a_replay_and_its_task_is_queued(
        operator: Client, jail: Jail, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = operator.post(reverse("replay_start"), {"jail": jail.pk, "maxretry": "2", "findtime": "5m",
                                                           "bantime": "1d", "filter_options": "mode = aggressive"})

    run = ReplayRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("replay_detail", args=[run.pk])
    assert run.state == ReplayRun.State.QUEUED
    assert run.overrides == {"maxretry": 2, "findtime": 300, "bantime": 86400,
                             "filter_options": {"mode": "aggressive"}}
    assert len(callbacks) == 1  # bans.tasks.replay_jail, sent once the run is committed
    entry = AuditEntry.objects.get()
    assert entry.after is not None
    assert entry.action == "replay.start" and entry.after["jail"] == "web"


def test_the_replay_runs_through_the_task_when_celery_runs_tasks_eagerly(
        operator: Client, jail: Jail, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from config.celery import app

    monkeypatch.setattr(app.conf, "task_always_eager", True)
    monkeypatch.setattr(hostaddrs, "read_addresses", lambda: [])
    hostaddrs.forget()
    with django_capture_on_commit_callbacks(execute=True):
        operator.post(reverse("replay_start"), {"jail": jail.pk})

    run = ReplayRun.objects.get()
    assert run.state == ReplayRun.State.DONE, run.error
    page = operator.get(reverse("replay_detail", args=[run.pk]))
    assert b'id="replay-results"' in page.content and b"192.0.2.7" in page.content
    assert b"hx-trigger" not in page.content  # finished: no more polling


def test_a_viewer_can_read_a_replay_but_not_start_one(viewer: Client, jail: Jail) -> None:
    run = ReplayRun.objects.create(jail=jail)

    assert viewer.get(reverse("replay_start")).status_code == 403
    assert viewer.post(reverse("replay_start"), {"jail": jail.pk}).status_code == 403
    assert viewer.get(reverse("replay_detail", args=[run.pk])).status_code == 200
    assert ReplayRun.objects.count() == 1


def test_a_failregex_that_does_not_compile_is_a_form_error(operator: Client, jail: Jail) -> None:
    response = operator.post(reverse("replay_start"), {"jail": jail.pk, "failregex": "^no host here$"})

    assert response.status_code == 200 and "failregex" in response.context["form"].errors
    assert b'id="id_failregex-error"' in response.content
    assert not ReplayRun.objects.exists()


@pytest.mark.parametrize(("values", "field"), [
    ({"findtime": "permanent"}, "findtime"),
    ({"bantime": "whenever"}, "bantime"),
    ({"maxretry": "0"}, "maxretry"),
    ({"filter_options": "no equals sign"}, "filter_options"),
])
def test_it_explains_a_bad_override(operator: Client, jail: Jail, values: dict[str, str], field: str) -> None:
    response = operator.post(reverse("replay_start"), {"jail": jail.pk, **values})

    assert field in response.context["form"].errors and not ReplayRun.objects.exists()


def test_the_form_lists_the_jails_and_recent_runs(operator: Client, jail: Jail) -> None:
    ReplayRun.objects.create(jail=jail, overrides={"maxretry": 2})

    response = operator.get(reverse("replay_start"), {"jail": jail.pk})

    assert b'id="replay-form"' in response.content and b'id="replay-runs"' in response.content
    assert f'<option value="{jail.pk}" selected>'.encode() in response.content


def test_a_running_replay_shows_a_progress_bar_that_polls(viewer: Client, jail: Jail) -> None:
    run = ReplayRun.objects.create(jail=jail, state=ReplayRun.State.RUNNING, bytes_total=1000, bytes_read=250)

    page = viewer.get(reverse("replay_detail", args=[run.pk]))
    partial = viewer.get(reverse("replay_detail", args=[run.pk]), HTTP_HX_REQUEST="true")

    assert b'<progress id="replay-progress" max="100" value="25">' in page.content
    assert b'http-equiv="refresh"' in page.content  # without JavaScript the page reloads itself
    assert partial.content.lstrip().startswith(b'<section id="replay-status"')
    assert b'hx-trigger="every 1s"' in partial.content and b"<html" not in partial.content


def test_a_finished_replay_shows_the_comparison(viewer: Client, jail: Jail) -> None:
    Ban.objects.create(jail=jail, jail_name="web", network="203.0.113.9/32", family=4, bantime=600,
                       started_at=START + dt.timedelta(seconds=30), state=Ban.State.EXPIRED)
    run = ReplayRun.objects.create(jail=jail)
    replay.run_replay(run.pk, own_addresses=[])

    partial = viewer.get(reverse("replay_detail", args=[run.pk]), HTTP_HX_REQUEST="true")

    assert b'id="replay-results"' in partial.content and b"hx-trigger" not in partial.content
    assert b'class="diff-replay"' in partial.content and b'class="diff-live"' in partial.content
    assert b"192.0.2.7" in partial.content and b"203.0.113.9" in partial.content
    assert b"1h" in partial.content  # how long the replay would have banned


def test_a_failed_replay_says_why(viewer: Client, jail: Jail) -> None:
    run = ReplayRun.objects.create(jail=jail, state=ReplayRun.State.FAILED, error="no log file matches /x")

    page = viewer.get(reverse("replay_detail", args=[run.pk]))

    assert b'id="replay-error"' in page.content and b"no log file matches /x" in page.content
