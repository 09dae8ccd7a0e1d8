"""manage.py filtertest: a filter given by name comes from the database (with its includes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jails.models import Filter
from tests.paths import CORPUS, F2B_CORPUS_TOOL, REPO

SSHD_LINE = "Nov 22 03:04:05 host sshd[811]: Invalid user admin from 203.0.113.9 port 4242"


@pytest.fixture
def stored_sshd(db: None) -> None:
    for name in ("common", "sshd"):
        Filter.objects.create(name=name, source=(CORPUS / "config" / "filter.d" / f"{name}.conf").read_text())


@pytest.mark.django_db(transaction=True)
def test_it_tests_a_stored_filter_by_name(stored_sshd: None, tmp_path: Path, settings_db_env: dict[str, str]) -> None:
    log = tmp_path / "auth.log"
    log.write_text(SSHD_LINE + "\nNov 22 03:04:06 host cron[1]: nothing\n")
    result = run(settings_db_env, str(log), "sshd[mode=aggressive]", "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["fails"][0]["host"] if row["fails"] else None for row in rows] == ["203.0.113.9", None]


@pytest.mark.django_db(transaction=True)
def test_it_says_when_a_named_filter_does_not_exist(stored_sshd: None, settings_db_env: dict[str, str]) -> None:
    result = run(settings_db_env, SSHD_LINE, "no-such-filter")
    assert result.returncode != 0
    assert "no-such-filter" in result.stderr
    assert "Traceback" not in result.stderr


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", "filtertest", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_it_scores_fail2ban_corpus_through_manage_py() -> None:
    # The must-show, exactly: fail2ban's corpus tool drives `manage.py filtertest --json`
    # over every annotated sample (fail2ban itself: 1822/1822). Kept here so it cannot regress.
    cmd = f"{sys.executable} manage.py filtertest --json {{journal}} --now {{now}} {{log}} {{filter}}"
    result = subprocess.run([sys.executable, str(F2B_CORPUS_TOOL), "check", "--jobs", "2", "--cmd", cmd],
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    score = result.stdout.strip().splitlines()[-1]
    assert score == "lines right: 1822/1822 = 100.0%", result.stdout[-3000:]
