"""Our built-in filters (jails/builtin/filter.d), scored with our engine against the
annotated samples we wrote for them (tests/samples/<filter>).

The samples use the annotation format of fail2ban's corpus (`# failJSON: {...}` before
each line, `# filterOptions: [...]` to switch options), so the shared scoring tool's
reader (`runs_for`) and checker (`compare`) are reused, imported from its place beside
the repository, never copied.

Time: the sample times are UTC. Syslog lines carry no year, so every line is read
with the same fixed "now", 2026-11-22T12:00:00Z, and with TZ=UTC (the tool's
`compare` converts the expected times with the process' local zone).
"""

from __future__ import annotations

import calendar
import ipaddress
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.paths import REPO, corpus_tool
from tests.zones import local_zone

# Only skip while the engine is not there yet; once it exists, import errors must fail.
ini = pytest.importorskip("jails.engine.ini", reason="filter engine (jails.engine.ini) not written yet")
engine_filter = pytest.importorskip("jails.engine.filter", reason="filter engine (jails.engine.filter) not written yet")

BUILTIN = REPO / "jails" / "builtin" / "filter.d"
SAMPLES = REPO / "tests" / "samples"
NOW = float(calendar.timegm((2026, 11, 22, 12, 0, 0)))

# Every filter we ship; each must have its samples.
FILTERS = (
    "apache-auth",
    "apache-botsearch",
    "apache-envscan",
    "dovecot",
    "nginx-botsearch",
    "nginx-http-auth",
    "panel",
    "postfix",
    "postfix-postscreen",
    "postfix-protocol",
    "postfix-sasl",
    "recidive",
    "sshd",
    "wordpress-auth",
    "wordpress-auth-hook",
)

# Addresses the samples' injection lines smuggle into attacker-written text.
INJECTED = ipaddress.ip_address("198.51.100.1")


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return corpus_tool()


@pytest.fixture
def utc() -> Iterator[None]:
    """The samples' times are UTC; `compare` reads them in the local zone."""
    with local_zone("UTC"):
        yield


@pytest.fixture(scope="module")
def sample_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`runs_for` expects CORPUS/logs/NAME: a throw-away layout pointing at our samples."""
    root = tmp_path_factory.mktemp("builtin-samples")
    (root / "logs").mkdir()
    for sample in SAMPLES.iterdir():
        if sample.is_file():
            (root / "logs" / sample.name).symlink_to(sample)
    return root


def _compile(name: str, options: dict[str, str] | None = None) -> Any:
    definition = ini.load_filter_file(BUILTIN / f"{name}.conf", options or {})
    return engine_filter.CompiledFilter.from_definition(definition, logtimezone="UTC", check_all=True)


def _results(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Feed a run's lines to our engine; answer in the shape `compare` reads."""
    matcher = _compile(run["filter"], run["options"])
    results = []
    for lineno, line in enumerate(run["lines"], 1):
        found = matcher.process_line(line["text"], NOW, journal=run["journal"])
        assert found.timed_out is None, f"{run['key']} line {lineno}: {found.timed_out}"
        fails = [
            {"host": f.host, "time": f.time, "attempts": f.attempts, "fields": f.fields}
            for f in found.failures
            if f.host is not None and not f.nofail
        ]
        results.append({"lineno": lineno, "fails": fails})
    return results


def _runs(tool: ModuleType, corpus: Path, name: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = tool.runs_for(name, str(BUILTIN / f"{name}.conf"), str(corpus))
    assert runs, f"no samples for {name}"
    return runs


def test_it_ships_every_filter_with_samples() -> None:
    shipped = sorted(p.stem for p in BUILTIN.glob("*.conf") if not p.stem.endswith("common"))
    assert shipped == sorted(FILTERS)
    for name in FILTERS:
        assert (SAMPLES / name).is_file(), f"tests/samples/{name} missing"


@pytest.mark.parametrize("name", FILTERS)
def test_it_loads_and_compiles_every_builtin_filter(name: str) -> None:
    definition = ini.load_filter_file(BUILTIN / f"{name}.conf", {})
    assert definition.failregex, name
    assert _compile(name) is not None


def test_it_compiles_sshd_in_aggressive_mode() -> None:
    normal = ini.load_filter_file(BUILTIN / "sshd.conf", {})
    aggressive = ini.load_filter_file(BUILTIN / "sshd.conf", {"mode": "aggressive"})
    assert len(aggressive.failregex) > len(normal.failregex)


@pytest.mark.parametrize("name", FILTERS)
def test_it_anchors_every_regex(name: str) -> None:
    """Our rule: every regex is anchored at both ends (^ ... $)."""
    definition = ini.load_filter_file(BUILTIN / f"{name}.conf", {"mode": "aggressive"} if name == "sshd" else {})
    for regex in definition.failregex:
        assert regex.pattern.startswith("^"), f"{name}: {regex.pattern}"
        assert regex.pattern.endswith("$"), f"{name}: {regex.pattern}"
    if definition.prefregex is not None:
        assert definition.prefregex.pattern.startswith("^")
        assert definition.prefregex.pattern.endswith("$")


@pytest.mark.parametrize("name", FILTERS)
def test_it_has_enough_samples(tool: ModuleType, sample_corpus: Path, name: str) -> None:
    lines = [line for run in _runs(tool, sample_corpus, name) for line in run["lines"]]
    matching = [line for line in lines if line["expect"].get("match")]
    assert len(matching) >= 8, name
    assert len(lines) - len(matching) >= 5, name


@pytest.mark.parametrize("name", FILTERS)
def test_it_scores_every_sample_right(tool: ModuleType, sample_corpus: Path, utc: None, name: str) -> None:
    problems: list[str] = []
    for run in _runs(tool, sample_corpus, name):
        _, bad = tool.compare(run, _results(run))
        problems.extend(bad)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", FILTERS)
def test_it_never_blames_the_injected_address(tool: ModuleType, sample_corpus: Path, name: str) -> None:
    """Whatever the annotations say, no line may ever yield 198.51.100.1: in our
    samples that address only ever appears inside text an attacker wrote."""
    for run in _runs(tool, sample_corpus, name):
        for lineno, result in enumerate(_results(run), 1):
            for fail in result["fails"]:
                assert ipaddress.ip_address(fail["host"]) != INJECTED, (
                    f"{run['key']} line {lineno}: {run['lines'][lineno - 1]['text']}"
                )


def test_it_keeps_injection_samples_for_every_filter() -> None:
    """Each sample file must try the injected address at least once (recidive excepted:
    its lines are written by the ban engine only)."""
    for name in FILTERS:
        if name == "recidive":
            continue
        text = (SAMPLES / name).read_text(encoding="utf-8")
        assert re.search(r"^[^#].*198\.51\.100\.1\b", text, re.MULTILINE), name


def test_it_matches_long_hostile_lines_quickly() -> None:
    """No regex may backtrack badly: 20 kB of attacker text per line stays fast."""
    junk = "a from 198.51.100.1 port 1 " * 800
    backslashes = "\\" * 5000
    lines = {
        "sshd": f"Nov 22 03:04:05 h sshd[1]: Failed password for invalid user {junk} from 203.0.113.9",
        "nginx-http-auth": (
            f'2026/11/22 03:04:05 [error] 1#1: *1 user "{junk}": password mismatch, client: 203.0.113.9, '
            f'server: x, request: "GET / HTTP/1.1", host: "{junk}'
        ),
        "dovecot": f"Nov 22 03:04:05 h dovecot[1]: auth: sql({junk},203.0.113.9,<a>): Password mismatch x",
        "wordpress-auth-hook": f"Nov 22 03:04:05 h wordpress[1]: Authentication failure for {junk} from x",
        "apache-envscan": f'203.0.113.9 - - [22/Nov/2026:03:04:05 +0000] "GET /{"a/" * 5000}x HTTP/1.1" 404 1',
        "panel": f'2026-11-22T03:04:05+00:00 panel[1]: login failed from 203.0.113.9 user="{backslashes}',
    }
    for name, line in lines.items():
        matcher = _compile(name)
        started = time.perf_counter()
        matcher.process_line(line, NOW)
        assert time.perf_counter() - started < 0.5, name
