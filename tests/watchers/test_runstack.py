"""runstack: the README's run command starts the panel, a real Celery worker (real Redis) and
beat in the foreground, beat starts the log followers in the watcher worker (which has a process
for each of them besides its ordinary ones), and one Ctrl-C stops them all at once."""

from __future__ import annotations

import importlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from django.apps import apps
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.paths import REPO
from tests.procfs import child_pids, shared_dirty_kb, title
from watchers.management.commands.runstack import Command, scheduled_followers

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('IPS_E2E_REDIS_DB', '15')}"

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  # the test stack's own http://127.0.0.1
            return int(response.status)
    except OSError:
        return None


def follower_schedules() -> int:
    """The rows watchers/migrations/0003 creates (a transactional test before this one flushed them);
    returns how many shards they follow (1 on SQLite, 2 on PostgreSQL)."""
    importlib.import_module("watchers.migrations.0003_follow_schedule").create(apps, None)
    return int(PeriodicTask.objects.filter(task="watchers.tasks.follow").count())


def follow_row(shard: int, shards: int) -> PeriodicTask:
    every = IntervalSchedule.objects.create(every=10, period="seconds")
    return PeriodicTask.objects.create(name=f"test follower {shard}/{shards}", task="watchers.tasks.follow",
                                       interval=every, kwargs=json.dumps({"shard": shard, "shards": shards}))


def test_it_runs_web_worker_and_beat_and_stops_on_ctrl_c(settings_db_env: dict[str, str], tmp_path: Path) -> None:
    shards = follower_schedules()
    port = free_port()
    log = tmp_path / "stack.log"
    control = tmp_path / "run" / "gunicorn.ctl"
    with log.open("w") as out:
        stack = subprocess.Popen([sys.executable, "manage.py", "runstack", "--bind", f"127.0.0.1:{port}",
                                  "--web-workers", "1", "--concurrency", "1",
                                  "--beat-schedule", str(tmp_path / "beat" / "schedule"),
                                  "--control-socket", str(control)],
                                 # IPS_FIREWALL off: this runs in the host's own network namespace, whose
                                 # ruleset a test must never touch (the firewall's tests run in namespaces)
                                 cwd=REPO, env={**settings_db_env, "IPS_REDIS_URL": REDIS_URL, "IPS_FIREWALL": "off"},
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: http_status(f"http://127.0.0.1:{port}/accounts/login/") == 200), log.read_text()
        assert http_status(f"http://127.0.0.1:{port}/static/css/panel.css") == 200
        assert wait_for(lambda: log.read_text().count(" ready.") == 2), log.read_text()  # watchers, firewall
        assert wait_for(lambda: "beat: Starting" in log.read_text()), log.read_text()
        # beat starts one follower per shard; the worker has a process for each, plus --concurrency 1
        assert wait_for(lambda: all(f"follow shard {shard}/{shards}: following" in log.read_text()
                                    for shard in range(shards))), log.read_text()
        assert f"concurrency: {1 + shards} (prefork)" in log.read_text()
        assert control.is_socket() and f"Control socket listening at {control}" in log.read_text()
        # the commands are forks of runstack (watchers/zygote.py), named in ps. The firewall worker
        # (one process, no children of its own) shares the pages runstack wrote before forking
        # (Shared_Dirty) only because it is a fork: as a new interpreter it shares ~0 (measured:
        # 32 kB with --no-fork). The other two fork children of their own, so theirs proves nothing.
        roles = {next((role for role in ("gunicorn: master", "celeryd: watchers@", "celeryd: firewall-")
                       if role in title(pid)), title(pid)): pid for pid in child_pids(stack.pid)}
        assert sorted(roles) == ["celeryd: firewall-", "celeryd: watchers@", "gunicorn: master"], roles
        assert shared_dirty_kb(roles["celeryd: firewall-"]) > 5_000
    finally:
        stack.send_signal(signal.SIGINT)
        code = stack.wait(timeout=60)
    text = log.read_text()
    assert code == 0, text
    assert "runstack: stopping" in text
    # the followers let the worker stop at once
    assert all(f"follow shard {shard}/{shards}: worker stopping" in text for shard in range(shards)), text
    assert "did not stop" not in text
    assert http_status(f"http://127.0.0.1:{port}/accounts/login/") is None
    assert not control.exists()


def test_runstack_starts_new_processes_when_a_thread_would_not_survive_a_fork(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from watchers import zygote

    monkeypatch.setattr(zygote, "preload", lambda: None)
    monkeypatch.setattr(zygote, "can_fork", lambda: False)
    stderr = io.StringIO()
    command = Command(stdout=io.StringIO(), stderr=stderr)
    assert command.ready_to_fork() is False
    assert "started as new processes" in stderr.getvalue()


def test_a_thread_of_this_process_means_no_fork() -> None:
    from watchers import zygote

    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert not zygote.can_fork()
    finally:
        release.set()
        thread.join()


def test_a_fork_runs_only_python_m_commands() -> None:
    from watchers import zygote

    with pytest.raises(ValueError, match="python -m MODULE"):
        zygote.fork_command(["/bin/true"], "nothing")


def test_a_fork_ends_with_the_commands_exit_status_and_never_returns_here() -> None:
    from watchers import zygote

    pid = zygote.fork_command([sys.executable, "-m", "json.tool", "/nonexistent/input.json"], "ips test")
    # (had the child come back here, it would run the rest of this test, and exit through pytest)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2  # argparse's status for a file it cannot open


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (3, 3), (256 + 70, 70), ("a message", 1)])
def test_a_forks_exit_status_is_what_sys_exit_gives(code: object, status: int) -> None:
    from watchers import zygote

    assert zygote.exit_status(code) == status


@pytest.mark.django_db
def test_it_gives_the_watcher_worker_one_process_per_follower(db: None) -> None:
    PeriodicTask.objects.filter(task="watchers.tasks.follow").delete()
    assert scheduled_followers() == 0
    rows = [follow_row(shard, 3) for shard in range(3)]
    assert scheduled_followers() == 3
    PeriodicTask.objects.filter(pk=rows[0].pk).update(enabled=False)
    assert scheduled_followers() == 2
    plan = Command().plan({"bind": "127.0.0.1:8000", "web_workers": 1, "concurrency": 2, "no_beat": True,
                           "beat_schedule": "x", "followers": None})
    [worker] = [child for child in plan if child.name == "worker"]
    assert worker.argv[worker.argv.index("--concurrency") + 1] == "4"  # 2 + one per enabled follower


@pytest.mark.django_db
def test_the_migration_schedules_one_follower_on_sqlite_and_two_on_postgresql(db: None) -> None:
    from django.db import connection

    PeriodicTask.objects.filter(task="watchers.tasks.follow").delete()
    shards = follower_schedules()
    assert shards == (1 if connection.vendor == "sqlite" else 2)
    kwargs = [json.loads(raw) for raw in PeriodicTask.objects.filter(task="watchers.tasks.follow")
              .order_by("name").values_list("kwargs", flat=True)]
    assert kwargs == [{"shard": s, "shards": shards, "lease_seconds": 300} for s in range(shards)]
    assert follower_schedules() == shards  # a second run adds nothing


def test_gunicorns_control_socket_is_the_stacks_own_under_var() -> None:
    options = {"bind": "127.0.0.1:8000", "web_workers": 1, "concurrency": 1, "no_beat": True,
               "beat_schedule": "x", "followers": 0}
    [web] = [child for child in Command().plan(options) if child.name == "web"]
    assert web.argv[web.argv.index("--control-socket") + 1] == str(REPO / "var" / "run" / "gunicorn.ctl")
    [web] = [child for child in Command().plan({**options, "control_socket": "/tmp/x.ctl"}) if child.name == "web"]
    assert web.argv[web.argv.index("--control-socket") + 1] == "/tmp/x.ctl"


SUPERVISED = """
import json, os, signal, subprocess, sys
children = [subprocess.Popen(argv, start_new_session=True) for argv in json.loads(sys.argv[1])]
spec = {"children": [{"name": f"child{i}", "pid": c.pid, "argv": argv}
                     for i, (c, argv) in enumerate(zip(children, json.loads(sys.argv[1])))], "grace": 2}
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
os.execv(sys.executable, [sys.executable, "-S", sys.argv[2], json.dumps(spec)])
"""


@pytest.mark.django_db(transaction=False)
def test_the_supervisor_runstack_becomes_stops_everything_when_one_child_ends(tmp_path: Path) -> None:
    """runstack execs into watchers/supervise.py once the stack runs (Django is not needed to watch
    it): a child that exits stops the others and its status is the stack's; one that ignores SIGTERM
    is killed after the grace period."""
    stubborn = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                      "time.sleep(60)"]
    argvs = [["sleep", "60"], stubborn, ["sh", "-c", "sleep 0.5; exit 3"]]
    script = str(REPO / "watchers" / "supervise.py")
    done = subprocess.run([sys.executable, "-c", SUPERVISED, json.dumps(argvs), script], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 3, done.stderr
    assert "child2 exited with status 3; stopping the others" in done.stderr
    assert "child1 did not stop in 2s; killing it" in done.stderr
    assert "child0" not in done.stderr  # sleep stops on SIGTERM


@pytest.mark.django_db(transaction=False)
def test_the_supervisor_stops_everything_on_sigterm(tmp_path: Path) -> None:
    running = subprocess.Popen([sys.executable, "-c", SUPERVISED, json.dumps([["sleep", "60"], ["sleep", "60"]]),
                                str(REPO / "watchers" / "supervise.py")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # (whether the signal comes before or after the exec, it is handled: blocked across it)
    running.send_signal(signal.SIGTERM)
    out, err = running.communicate(timeout=30)
    assert running.returncode == 0, err
    assert "runstack: stopping" in out and "did not stop" not in err



@pytest.mark.django_db(transaction=False)
def test_the_supervisor_starts_again_a_child_that_asks_for_it(tmp_path: Path) -> None:
    """The firewall worker ends with status 70 when a task outlives its hard time limit: started again,
    with its signals unblocked (it stops on SIGTERM with the others); any other status stops all."""
    marker = tmp_path / "started-once"
    once = ["sh", "-c", f"if [ -e {marker} ]; then exec sleep 60; else touch {marker}; exit 70; fi"]
    running = subprocess.Popen([sys.executable, "-c", SUPERVISED, json.dumps([["sleep", "60"], once]),
                                str(REPO / "watchers" / "supervise.py")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline, "the child never ran"
        time.sleep(0.05)
    time.sleep(1.0)  # restarted meanwhile, and running
    assert running.poll() is None
    running.send_signal(signal.SIGTERM)
    _out, err = running.communicate(timeout=30)
    assert running.returncode == 0, err
    assert "child1 asked to be started again (status 70)" in err
    assert "did not stop" not in err  # the restarted child took SIGTERM
