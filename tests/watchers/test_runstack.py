"""runstack: the README's run command starts the panel, a real Celery worker (real Redis) and
beat in the foreground, and one Ctrl-C stops them all."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.paths import REPO

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return None


def test_it_runs_web_worker_and_beat_and_stops_on_ctrl_c(settings_db_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "stack.log"
    with log.open("w") as out:
        stack = subprocess.Popen([sys.executable, "manage.py", "runstack", "--bind", f"127.0.0.1:{port}",
                                  "--web-workers", "1", "--concurrency", "1",
                                  "--beat-schedule", str(tmp_path / "beat" / "schedule")],
                                 cwd=REPO, env=settings_db_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: http_status(f"http://127.0.0.1:{port}/accounts/login/") == 200), log.read_text()
        assert http_status(f"http://127.0.0.1:{port}/static/css/panel.css") == 200
        assert wait_for(lambda: log.read_text().count(" ready.") == 2), log.read_text()  # watchers, firewall
        assert wait_for(lambda: "beat: Starting" in log.read_text()), log.read_text()
    finally:
        stack.send_signal(signal.SIGINT)
        code = stack.wait(timeout=60)
    assert code == 0, log.read_text()
    assert "runstack: stopping" in log.read_text()
    assert http_status(f"http://127.0.0.1:{port}/accounts/login/") is None
