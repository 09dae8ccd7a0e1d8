"""Regexes that can backtrack catastrophically are found (jails/engine/backtrack.py, guard.dangerous_regex),
and nothing else: fail2ban's stock filters, the seed's and our own are checked regex by regex through the
engine's own loader, and every stock regex the check flags is shown to really run away on a crafted line."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from jails.engine import ini
from jails.engine.backtrack import (
    AMBIGUOUS_BODY,
    NESTED,
    OVERLAPPING_ADJACENT,
    OVERLAPPING_ALTERNATION,
    find_backtracking,
)
from jails.engine.definition import FilterDefinition
from jails.engine.errors import RegexTimeout
from jails.engine.guard import DANGEROUS, Watchdog, dangerous_regex, lint_regex
from jails.engine.regex import translate
from tests.paths import CORPUS, REPO, SEED_CONFIGS

STOCK = CORPUS / "config"
BUILTIN = REPO / "jails" / "builtin"
MODE_REFERENCE = re.compile(r"<([\w.-]+)-<mode>>")  # as jails.services.detect_modes reads them


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        (r"^(a+)+$ <HOST>", NESTED),
        (r"(a*)*", NESTED),
        (r"^(\w+\s?)+$", NESTED),
        (r"^(?:\d*)*:", NESTED),
        (r"(\w|\d+)+", NESTED),
        (r"(x+x+)+y", OVERLAPPING_ADJACENT),
        (r"(\d+\d+)+", OVERLAPPING_ADJACENT),
        (r"(([a-z])+.)+", AMBIGUOUS_BODY),
        (r"(a|aa)+", OVERLAPPING_ALTERNATION),
        (r"(a|a)+", OVERLAPPING_ALTERNATION),
        (r"(\w|\d\d)+", OVERLAPPING_ALTERNATION),
        (r"(foo|fo+)+$", OVERLAPPING_ALTERNATION),
        (r"^(?:a{2,5})+$", NESTED),
        (r"(?:\s*\S+)*$", NESTED),
        (r"^user (?:<F-USER>\S+</F-USER>=\S*)+ from <HOST>", AMBIGUOUS_BODY),
        (r"(?>(a+)+b)", NESTED),  # an atomic group still backtracks inside until it first matches
        (r"^(?:[a-z]+){1,50}x", NESTED),  # more copies than are written out: a loop
    ],
)
def test_it_finds_each_shape_of_catastrophic_backtracking(pattern: str, kind: str) -> None:
    found = dangerous_regex(pattern)
    assert [f.kind for f in found] == [kind], found
    message = lint_regex(pattern)[0]
    assert message.startswith(DANGEROUS) and kind in message and found[0].shape in message


def test_it_names_the_outer_repeat() -> None:
    assert [f.shape for f in dangerous_regex(r"^(a+)+$ <HOST>")] == ["(a+)+"]
    assert [f.shape for f in dangerous_regex(r"^x (?:\d+\d+)+ y")] == [r"(?:\d+\d+)+"]


@pytest.mark.parametrize(
    "pattern",
    [
        r"^(?:\w+\.)+com$",  # each copy ends at a dot the words cannot hold
        r"^(?: (?:port \d+|on \S+)){0,3}$",
        r"^User \S+ from <HOST>$",
        r"^Failed .*? from <HOST>",
        r"^Failed .* from <HOST>(?: port \d+)?$",
        r"^.*\S+ from <HOST>",  # two loops one after the other: polynomial, not exponential
        r"(?>a+)+b",  # atomic: never split again
        r"a++b",
        r"(?:a|b)+",
        r"(a?)*",
        r'(?:[^"\\]|\\.)*"',
        r"(?:x\d{0,3}y)+",
        r"(?:\S+ ){0,20}x",
        r"^(?:\d{1,3}\.){3}\d{1,3}$",
        r"^a<SKIPLINES>b <HOST>$",
        # CPython reads an alternation of single characters as one class ([\w\d]+): linear, and so not refused
        r"(\w|\d)+$",
        r"(?i:(A|a)+)$",
    ],
)
def test_it_stays_quiet_about_loops_that_read_text_one_way(pattern: str) -> None:
    assert dangerous_regex(pattern) == []


def test_cpython_really_merges_single_character_alternatives() -> None:
    # why (\w|\d)+ is not refused: the loop CPython runs has one position, not two
    assert find_backtracking(r"(\w|\d)+") == find_backtracking(r"[\w\d]+") == []


def test_it_leaves_a_regex_that_does_not_parse_to_the_compiler() -> None:
    assert dangerous_regex("^(unclosed <HOST>") == []


def test_it_checks_a_long_pasted_regex_quickly_enough_to_answer() -> None:
    # many loops, long alternations: the check is polynomial and bounded (no timing asserted here)
    pattern = "^(?:" + "|".join(f"[a-z]{{1,9}}{n}" for n in range(300)) + ")+x" + r"(?:\w+\.)+" * 50
    assert dangerous_regex(pattern) == []


# --- the filters that exist: stock, seed, ours ----------------------------------------------------


def filter_files(*roots: Path) -> dict[str, str]:
    """filter.d of each root, later roots laid over earlier ones, as loader files."""
    files: dict[str, str] = {}
    for root in roots:
        for path in sorted((root / "filter.d").glob("*.*")):
            if path.suffix in (".conf", ".local") and path.is_file():
                files[f"filter.d/{path.name}"] = path.read_text(encoding="utf-8")
    return files


def every_regex(files: dict[str, str], names: list[str]) -> list[tuple[str, str]]:
    """(filter[mode], regex) for every failregex, ignoreregex and prefregex of each filter, in every mode."""
    loader = ini.MemoryLoader(files)
    found: list[tuple[str, str]] = []
    for name in names:
        if name.endswith("common"):
            continue  # shared definitions (common.conf), never used on their own (jails.services.is_include_only)
        text = files.get(f"filter.d/{name}.conf", "")
        base = ini.load_filter(loader, name)
        modes = {""} | {key[len(prefix) + 1:] for prefix in MODE_REFERENCE.findall(text)
                        for key in base.variables if key.startswith(prefix + "-")}
        for mode in sorted(modes):
            definition: FilterDefinition = ini.load_filter(loader, name, {"mode": mode} if mode else None)
            lines = [*definition.failregex, *definition.ignoreregex]
            if definition.prefregex is not None:
                lines.append(definition.prefregex)
            found.extend((f"{name}[mode={mode}]" if mode else name, line.pattern) for line in lines)
    return found


def names_in(root: Path) -> list[str]:
    return sorted(path.stem for path in (root / "filter.d").glob("*.conf"))


# The stock regexes that really can take exponential time, each with a line that makes it run away
# (written for the whole regex: the matcher's minimum-length check needs long enough lines).
N = 100
STOCK_RUNAWAYS = {
    "slapd": "RESULT" + " a=b=c" * N + " x",
    "apache-modsecurity": "[] [error] [client 192.0.2.1] ModSecurity: " + '[a "b"]' * N + "x",
    "assp": "192.0.2.1 " + "to: a@b.c.d@e.f.g " * N + "x",
    "courier-auth": "LOGIN FAILED, " + "user=a, " * N + "x",
    "dovecot": "Disconnected:" + "(a) b)" * N + "x",
    "exim": 'SMTP protocol error in "a' + '"' * N + "x",
    "grafana": ' msg="Invalid username or password"' + ' uname="a"' * N + " x",
    "selinux-ssh": "type=USER_AUTH msg=audit(:1): pid=1 uid=0 auid=1 ses=1 "
                   "subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 msg='" + 'a="b" ' * N + "x",
}


def flagged(regexes: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, pattern) for name, pattern in regexes if dangerous_regex(pattern)]


def test_the_stock_filters_are_checked_and_only_real_runaways_are_flagged() -> None:
    regexes = every_regex(filter_files(STOCK), names_in(STOCK))
    assert len(regexes) > 500  # every stock filter, every mode, was read
    found = flagged(regexes)
    assert {name.split("[")[0] for name, _ in found} == set(STOCK_RUNAWAYS)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM timers")
@pytest.mark.parametrize("name", sorted(STOCK_RUNAWAYS))
def test_each_flagged_stock_regex_really_runs_away(name: str) -> None:
    """No false positive: on its crafted line each flagged regex needs far more than any budget (2^100
    ways), so the watchdog stops it; the outcome is asserted, not a time."""
    files = filter_files(STOCK)
    patterns = {pattern for filter_name, pattern in flagged(every_regex(files, [name]))}
    assert patterns
    for pattern in patterns:
        regex = re.compile(translate(pattern).source)
        with Watchdog(0.05) as watchdog:
            watchdog.step()
            with pytest.raises(RegexTimeout):
                regex.search(STOCK_RUNAWAYS[name])


def test_the_seed_filters_and_ours_are_clean() -> None:
    seed = every_regex(filter_files(STOCK, SEED_CONFIGS), names_in(SEED_CONFIGS))
    ours = every_regex(filter_files(BUILTIN), names_in(BUILTIN))
    assert len(seed) >= 6 and len(ours) >= 30
    assert flagged(seed) == [] and flagged(ours) == []
