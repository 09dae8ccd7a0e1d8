"""Slow requests take turns (jails/slowlane.py): at most IPS_WEB_WORKERS - 1 at once, the rest are
told the panel is busy, and a page still answers meanwhile. Real lock files, real threads."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from bans.models import Ban
from jails import slowlane
from tests.factories import make_jail

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def run_dir(settings: Settings, tmp_path: Path) -> Path:
    settings.IPS_RUN_DIR = tmp_path
    return tmp_path


@pytest.mark.parametrize(("workers", "lanes"), [(1, 1), (2, 1), (3, 2), (8, 7)])
def test_slow_requests_may_hold_all_workers_but_one(settings: Settings, workers: int, lanes: int) -> None:
    settings.IPS_WEB_WORKERS = workers
    held = [slowlane.take(wait=0) for _ in range(lanes)]

    assert all(lane is not None for lane in held)
    assert slowlane.take(wait=0) is None
    held[0].release()  # type: ignore[union-attr]
    again = slowlane.take(wait=0)
    assert again is not None
    for lane in [again, *held[1:]]:
        lane.release()  # type: ignore[union-attr]


def test_a_request_waits_a_moment_for_a_lane_before_giving_up(settings: Settings) -> None:
    settings.IPS_WEB_WORKERS = 2
    first = slowlane.take(wait=0)
    assert first is not None
    threading.Timer(0.2, first.release).start()

    started = time.monotonic()
    second = slowlane.take(wait=2.0)

    assert second is not None and 0.15 < time.monotonic() - started < 1.5
    second.release()


def test_another_thread_is_excluded_too(settings: Settings) -> None:
    settings.IPS_WEB_WORKERS = 2
    first = slowlane.take(wait=0)
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(slowlane.take(wait=0)))
    thread.start()
    thread.join()

    assert seen == [None]
    first.release()  # type: ignore[union-attr]


def test_an_export_while_every_lane_is_held_is_told_to_retry(settings: Settings, viewer: Client) -> None:
    settings.IPS_WEB_WORKERS = 2
    jail = make_jail("sshd")
    Ban.objects.create(jail=jail, jail_name="sshd", network="203.0.113.9/32", family=4, bantime=600)
    other = slowlane.take(wait=0)
    assert other is not None
    try:
        busy = viewer.get(reverse("ban_export", args=["csv"]))
        page = viewer.get(reverse("ban_list"))
    finally:
        other.release()
    export = viewer.get(reverse("ban_export", args=["csv"]))

    assert busy.status_code == 503 and busy["Retry-After"] == str(slowlane.RETRY_SECONDS)
    assert b"busy" in busy.content
    assert page.status_code == 200  # pages do not take a lane
    assert export.status_code == 200 and b"203.0.113.9/32" in b"".join(export.streaming_content)  # type: ignore[attr-defined]
    assert slowlane.take(wait=0) is not None  # the export gave its lane back once streamed


def test_a_tester_run_while_every_lane_is_held_says_the_panel_is_busy(
        settings: Settings, viewer: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.IPS_WEB_WORKERS = 2
    monkeypatch.setattr(slowlane, "WAIT_SECONDS", 0.1)
    other = slowlane.take(wait=0)
    try:
        html = viewer.post(reverse("filter_tester"), {"source": "regex", "failregex": "^fail <HOST>$",
                                                      "log": "fail 192.0.2.7"}, headers={"HX-Request": "true"})
    finally:
        other.release()  # type: ignore[union-attr]

    assert html.status_code == 200 and b"busy with other long requests" in html.content


def test_a_stream_closed_before_its_first_chunk_gives_its_lane_back(settings: Settings) -> None:
    settings.IPS_WEB_WORKERS = 2
    stream = slowlane.HeldStream(slowlane.take(wait=0), iter(["a", "b"]))  # type: ignore[arg-type]
    assert slowlane.take(wait=0) is None

    stream.close()  # what the WSGI server does with a response, read or not

    lane = slowlane.take(wait=0)
    assert lane is not None
    lane.release()


def test_an_export_response_thrown_away_unread_gives_its_lane_back(settings: Settings, viewer: Client) -> None:
    settings.IPS_WEB_WORKERS = 2
    Ban.objects.create(jail=make_jail("sshd"), jail_name="sshd", network="203.0.113.9/32", family=4, bantime=600)

    dropped = viewer.get(reverse("ban_export", args=["json"]))
    assert dropped.status_code == 200 and slowlane.take(wait=0) is None  # the unread stream holds it
    del dropped  # a middleware failing after the view: the response is never sent nor closed
    gc.collect()

    lane = slowlane.take(wait=0)
    assert lane is not None
    lane.release()
