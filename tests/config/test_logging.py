"""LOGGING: INFO is for events; the idle stack's routine lines (Celery's "Task ... received" and
"succeeded" of the tasks beat sends every 2 s, beat's "Scheduler: Sending due task") are not shown
unless IPS_LOG_TASKS asks for them. Each case configures logging in a child process, as a worker does
(django.setup() applies LOGGING), and logs through Celery's own loggers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.paths import REPO

PROBE = """
import logging, django
django.setup()
logging.getLogger("celery.worker.strategy").info("Task bans.tasks.watch_firewall[1] received")
logging.getLogger("celery.app.trace").info("Task bans.tasks.watch_firewall[1] succeeded in 0.01s: {}")
logging.getLogger("celery.app.trace").error("Task bans.tasks.sync_firewall[2] raised unexpected: boom")
logging.getLogger("celery.beat").info("Scheduler: Sending due task watch the firewall (local)")
logging.getLogger("celery.beat").info("beat: Starting...")
logging.getLogger("celery.apps.worker").info("watchers@host ready.")
logging.getLogger("bans.tasks").info("[sshd] Ban 203.0.113.9")
"""
ROUTINE = ["received", "succeeded in", "Sending due task"]
EVENTS = ["raised unexpected: boom", "beat: Starting...", "watchers@host ready.", "[sshd] Ban 203.0.113.9"]


def logged(**env: str) -> str:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("IPS_LOG_")}
    environ.update(DJANGO_SETTINGS_MODULE="config.settings", **env)
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=environ, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stderr


def test_the_routine_lines_are_not_shown_and_events_are() -> None:
    output = logged()
    assert [line for line in ROUTINE if line in output] == []
    assert [line for line in EVENTS if line not in output] == []


@pytest.mark.parametrize("env", [{"IPS_LOG_TASKS": "true"}, {"IPS_LOG_LEVEL": "DEBUG"}])
def test_ips_log_tasks_or_debug_shows_them(env: dict[str, str]) -> None:
    output = logged(**env)
    assert [line for line in ROUTINE + EVENTS if line not in output] == []


def test_ips_log_level_error_still_hides_warnings_of_those_loggers() -> None:
    output = logged(IPS_LOG_LEVEL="ERROR")
    assert "raised unexpected: boom" in output
    assert "beat: Starting..." not in output and "received" not in output
