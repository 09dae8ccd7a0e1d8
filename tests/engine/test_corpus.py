"""fail2ban's own annotated sample logs, scored against our engine.

The corpus and its scoring tool live outside the repository (tests/paths.py); the tool
is imported, not copied. fail2ban itself scores 1822/1822.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from jails.engine.filter import CompiledFilter
from jails.engine.ini import load_filter_file
from tests.paths import CORPUS, F2B_CORPUS_TOOL, REPO, corpus_tool
from tests.zones import local_zone

# The best score reached so far: a regression below it fails the suite.
BEST_LINES_RIGHT = 1822

@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return corpus_tool()


@pytest.fixture
def corpus_tz(tool: ModuleType) -> Iterator[None]:
    """The corpus' dates are local times in CET/CEST, as the tool sets TZ."""
    with local_zone(tool.TZ):
        yield


def _run_in_process(run: dict[str, Any], now: float) -> list[dict[str, Any]]:
    definition = load_filter_file(run["conf"], run["options"])
    matcher = CompiledFilter.from_definition(definition, check_all=True)
    results = []
    for lineno, line in enumerate(run["lines"], 1):
        found = matcher.process_line(line["text"], now, journal=run["journal"])
        fails = [
            {"host": f.host, "time": f.time, "attempts": f.attempts, "fields": f.fields}
            for f in found.failures
            if f.host is not None and not f.nofail
        ]
        results.append({"lineno": lineno, "fails": fails})
    return results


def test_it_scores_the_fail2ban_corpus(tool: ModuleType, corpus_tz: None) -> None:
    runs = tool.all_runs(str(CORPUS))
    total = wrong = 0
    per_filter: dict[str, list[int]] = {}
    problems: list[str] = []
    for run in runs:
        checked, bad = tool.compare(run, _run_in_process(run, tool.NOW))
        total += checked
        wrong += len(bad)
        counts = per_filter.setdefault(run["filter"], [0, 0])
        counts[0] += checked
        counts[1] += len(bad)
        problems.extend(bad[:3])
    failing = {name: c for name, c in per_filter.items() if c[1]}
    for name, (checked, bad) in sorted(failing.items()):
        print(f"filter {name:32} {checked - bad:4d}/{checked:4d} lines right")
    print("\n".join(problems[:30]))
    right = total - wrong
    print(f"lines right: {right}/{total}; filters fully right: {len(per_filter) - len(failing)}/{len(per_filter)}")
    assert total >= 1822
    assert right >= max(BEST_LINES_RIGHT, 1804)


def test_it_scores_sshd_through_the_command_line() -> None:
    cmd = (
        f"{shlex.quote(sys.executable)} -m jails.engine.filtertest --json {{journal}} --now {{now}} {{log}} {{filter}}"
    )
    proc = subprocess.run(
        [sys.executable, str(F2B_CORPUS_TOOL), "check", "--filter", "sshd", "--jobs", "1", "--cmd", cmd],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("lines right: ")
    right, total = last.split(":")[1].split("=")[0].strip().split("/")
    assert int(total) > 500
    assert int(right) == int(total), proc.stdout[-2000:]
