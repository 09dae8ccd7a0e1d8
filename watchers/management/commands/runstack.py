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
import os
import signal
import subprocess
import sys
from argparse import ArgumentParser
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError

from bans import periodic
from config.fleet import FLEET_QUEUE, firewall_queue, watch_queue
from watchers import follow, zygote

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    pid: int | None = None


class Command(BaseCommand):
    help = ("Run the panel (gunicorn), the Celery workers (log watchers; firewall) and Celery beat in the "
            "foreground until Ctrl-C.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000", help="address:port for the panel (gunicorn)")
        parser.add_argument("--web-workers", type=int, default=settings.IPS_WEB_WORKERS,
                            help="gunicorn worker processes (default IPS_WEB_WORKERS, 2); slow requests "
                                 "(exports, tester runs) may hold all of them but one")
        parser.add_argument("--concurrency", type=int, default=2,
                            help="Celery worker processes for ordinary tasks (plus one per log follower)")
        parser.add_argument("--followers", type=int, default=None,
                            help="worker processes kept for log followers (default: the enabled follower "
                                 "schedules, one per shard)")
        parser.add_argument("--no-beat", action="store_true", help="do not start Celery beat (run it elsewhere)")
        parser.add_argument("--beat-schedule", default=str(settings.BASE_DIR / "var" / "celerybeat-schedule"),
                            help="where Celery beat keeps its state (default: var/celerybeat-schedule)")
        parser.add_argument("--no-fork", dest="fork", action="store_false",
                            help="start each command as a new Python process instead of a fork of this one, which "
                                 "has loaded Django and the apps once for all of them (forks share those pages: "
                                 "about 60 MB less for the stack)")
        parser.add_argument("--control-socket", default=str(control_socket_default()),
                            help="gunicorn's control socket, this stack's own (default: var/run/gunicorn.ctl; "
                                 "gunicorn's own default is one path in the home directory for every stack)")

    def handle(self, *args: Any, **options: Any) -> None:
        Path(options["beat_schedule"]).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        Path(options["control_socket"]).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
        # the web workers' slow lanes count the workers (jails/slowlane.py): forks read the setting,
        # new processes the environment
        settings.IPS_WEB_WORKERS = options["web_workers"]
        os.environ["IPS_WEB_WORKERS"] = str(options["web_workers"])
        children = self.plan(options)
        stopping: list[int] = []  # the signals received while starting

        def stop(signum: int, frame: FrameType | None) -> None:
            stopping.append(signum)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        forking = options["fork"] and self.ready_to_fork()
        for child in children:
            self.stdout.write(f"runstack: starting {child.name}: {' '.join(child.argv)}")
            self.stdout.flush()
            if forking:
                child.pid = zygote.fork_command(child.argv, f"ips {child.name}: {' '.join(child.argv[2:])}")
            else:
                # S603: plan()'s argv, this Python running gunicorn or Celery; a list, no shell
                child.pid = subprocess.Popen(child.argv, start_new_session=True).pid  # noqa: S603
        self.become_supervisor(children, stopping)

    def ready_to_fork(self) -> bool:
        """Load what the children share (watchers/zygote.py); False when they must be started afresh."""
        zygote.preload()
        if zygote.can_fork():
            return True
        self.stderr.write("runstack: a thread is running in this process, so the stack's commands are started "
                          "as new processes (they will not share memory)")
        return False

    def become_supervisor(self, children: list[Child], stopping: list[int]) -> None:
        """Replace this process (Django loaded: ~55 MB) with watchers/supervise.py (no site packages:
        ~5 MB), which watches the same children. SIGINT and SIGTERM are blocked first, so that none
        comes between reading `stopping` and the exec, and none kills the supervisor before it has
        its handlers (the mask survives the exec; it unblocks them)."""
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        spec = {"children": [{"name": c.name, "pid": c.pid, "argv": c.argv}
                             for c in children if c.pid is not None],
                "grace": 10, "stopping": bool(stopping)}
        sys.stdout.flush()
        sys.stderr.flush()
        script = str(Path(__file__).resolve().parents[2] / "supervise.py")
        try:
            # S606: becomes this Python running supervise.py, the spec passed as one JSON argument
            os.execv(sys.executable, [sys.executable, "-S", script, json.dumps(spec)])  # noqa: S606
        except OSError:
            for child in children:  # nothing will watch them: stop them rather than leave them running
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
            raise

    def plan(self, options: dict[str, Any]) -> list[Child]:
        if settings.IPS_FLEET_ROLE == "agent":
            return self.agent_plan(options)
        python = sys.executable
        followers = options.get("followers")
        followers = scheduled_followers() if followers is None else followers
        watcher_processes = options["concurrency"] + followers
        # Beat runs inside the watcher worker's main process, on its event loop (config/beat.py: where a
        # beat process of its own cost 22-30 MB); one stack has one watcher worker, so one beat.
        beat = [] if options["no_beat"] else ["--beat-in-loop", "--schedule-filename", options["beat_schedule"]]
        children = [
            # --preload: the app is loaded once in the master and the workers share its pages
            Child("web", [python, "-m", "gunicorn", "config.wsgi:application", "--bind", options["bind"],
                          "--workers", str(options["web_workers"]), "--preload", "--access-logfile", "-",
                          "--control-socket", str(options.get("control_socket") or control_socket_default())]),
            Child("worker", [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
                             "--concurrency", str(watcher_processes), "--queues", f"celery,{FLEET_QUEUE}",
                             "--hostname", "watchers@%h", *QUIET_WORKER, *beat]),
            # The only process that changes the firewall (needs CAP_NET_ADMIN): one at a time, in order, in
            # one process (solo pool), which also times its watch of the kernel (bans/watching.py).
            Child("firewall", [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
                               "--pool", "solo", "--concurrency", "1", "--queues", f"firewall.{settings.IPS_HOST_NAME}",
                               "--hostname", f"firewall-{settings.IPS_HOST_NAME}@%h", *QUIET_WORKER]),
        ]
        return children

    def agent_plan(self, options: dict[str, Any]) -> list[Child]:
        """A fleet agent (docs/fleet.md): its log watchers on its own queue and its firewall worker; no
        panel and no beat (the central server's beat sends the agent's schedules to its queues)."""
        python, host = sys.executable, settings.IPS_HOST_NAME
        followers = options.get("followers")
        followers = (settings.IPS_FOLLOWER_SHARDS or AGENT_FOLLOWERS) if followers is None else followers
        return [
            Child("worker", [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
                             "--concurrency", str(options["concurrency"] + followers), "--queues", watch_queue(host),
                             "--hostname", f"watchers-{host}@%h", *QUIET_WORKER]),
            Child("firewall", [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
                               "--pool", "solo", "--concurrency", "1", "--queues", firewall_queue(host),
                               "--hostname", f"firewall-{host}@%h", *QUIET_WORKER]),
        ]


# An agent's log followers (bans.periodic.install_agent schedules this many for it by default).
AGENT_FOLLOWERS = 1

# Workers that do not gossip, mingle or send heartbeat events: nothing here reads worker events, and
# each of the three woke every worker every 2 s (a heartbeat published, the others' received).
# Remote control (celery inspect/control) does not depend on them.
QUIET_WORKER = ["--without-gossip", "--without-mingle", "--without-heartbeat"]


def control_socket_default() -> Path:
    return Path(settings.BASE_DIR) / "var" / "run" / "gunicorn.ctl"


def scheduled_followers() -> int:
    """How many follower shards beat keeps running (enabled `watchers.tasks.follow` rows)."""
    try:
        rows = list(periodic.central_followers().filter(enabled=True).values_list("kwargs", flat=True))
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
