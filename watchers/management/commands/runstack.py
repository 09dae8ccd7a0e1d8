"""Run the whole product in the foreground: web panel, Celery worker(s) and Celery beat.

One Ctrl-C (SIGINT) or SIGTERM stops everything. If one process dies, the others are stopped
too and the exit status says so: a half-running firewall panel is worse than a stopped one.

The watcher worker gets one process per log follower (watchers.tasks.follow holds one for as long
as it runs; the follower schedules say how many shards there are) on top of `--concurrency`
processes for ordinary tasks (reads of unfollowed sources, recidive, statistics).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from argparse import ArgumentParser
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError
from django_celery_beat.models import PeriodicTask

from watchers import follow

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None


class Command(BaseCommand):
    help = ("Run the panel (gunicorn), the Celery workers (log watchers; firewall) and Celery beat in the "
            "foreground until Ctrl-C.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000", help="address:port for the panel (gunicorn)")
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
        parser.add_argument("--concurrency", type=int, default=2,
                            help="Celery worker processes for ordinary tasks (plus one per log follower)")
        parser.add_argument("--followers", type=int, default=None,
                            help="worker processes kept for log followers (default: the enabled follower "
                                 "schedules, one per shard)")
        parser.add_argument("--no-beat", action="store_true", help="do not start Celery beat (run it elsewhere)")
        parser.add_argument("--beat-schedule", default=str(settings.BASE_DIR / "var" / "celerybeat-schedule"),
                            help="where Celery beat keeps its state (default: var/celerybeat-schedule)")
        parser.add_argument("--control-socket", default=str(control_socket_default()),
                            help="gunicorn's control socket, this stack's own (default: var/run/gunicorn.ctl; "
                                 "gunicorn's own default is one path in the home directory for every stack)")

    def handle(self, *args: Any, **options: Any) -> None:
        Path(options["beat_schedule"]).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        Path(options["control_socket"]).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
        children = self.plan(options)
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for child in children:
            self.stdout.write(f"runstack: starting {child.name}: {' '.join(child.argv)}")
            child.process = subprocess.Popen(child.argv, start_new_session=True)
        exit_code = self.watch(children, lambda: stopping)
        self.stop_all(children)
        if exit_code:
            sys.exit(exit_code)

    def plan(self, options: dict[str, Any]) -> list[Child]:
        python = sys.executable
        followers = options.get("followers")
        followers = scheduled_followers() if followers is None else followers
        watcher_processes = options["concurrency"] + followers
        children = [
            Child("web", [python, "-m", "gunicorn", "config.wsgi:application", "--bind", options["bind"],
                          "--workers", str(options["web_workers"]), "--access-logfile", "-",
                          "--control-socket", str(options.get("control_socket") or control_socket_default())]),
            Child("worker", [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
                             "--concurrency", str(watcher_processes), "--queues", "celery",
                             "--hostname", "watchers@%h"]),
            # The only process that changes the firewall (needs CAP_NET_ADMIN): one at a time, in order.
            Child("firewall", [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
                               "--concurrency", "1", "--queues", f"firewall.{settings.IPS_HOST_NAME}",
                               "--hostname", f"firewall-{settings.IPS_HOST_NAME}@%h"]),
        ]
        if not options["no_beat"]:
            children.append(Child("beat", [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                                           "--schedule", options["beat_schedule"]]))
        return children

    def watch(self, children: list[Child], stopping: Any) -> int:
        while not stopping():
            for child in children:
                assert child.process is not None
                code = child.process.poll()
                if code is not None:
                    self.stderr.write(f"runstack: {child.name} exited with status {code}; stopping the others")
                    return code or 1
            time.sleep(0.2)
        self.stdout.write("runstack: stopping")
        return 0

    def stop_all(self, children: list[Child], grace: float = 10.0) -> None:
        for child in children:
            if child.process and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"runstack: {child.name} did not stop in {grace:.0f}s; killing it")
                child.process.kill()
                child.process.wait()


def control_socket_default() -> Path:
    return Path(settings.BASE_DIR) / "var" / "run" / "gunicorn.ctl"


def scheduled_followers() -> int:
    """How many follower shards beat keeps running (enabled `watchers.tasks.follow` rows)."""
    try:
        rows = list(PeriodicTask.objects.filter(task="watchers.tasks.follow", enabled=True)
                    .values_list("kwargs", flat=True))
    except DatabaseError as exc:  # not migrated yet: the default the migration will create
        log.warning("runstack: cannot read the follower schedules (%s); assuming %d", exc, follow.DEFAULT_SHARDS)
        return follow.DEFAULT_SHARDS
    shards = set()
    for raw in rows:
        try:
            kwargs = json.loads(raw or "{}")
            shards.add((int(kwargs["shard"]), int(kwargs["shards"])))
        except (ValueError, KeyError, TypeError):
            continue  # a row the follow task itself will refuse
    return len(shards)
