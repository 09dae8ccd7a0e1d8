"""CompiledFilter.tally_block, the counting loop of filtertest, against the slow path.

tally_block handles the usual line inline (the date template's counters added up, date
texts read once per block, the session cache touched directly, failregexes skipped by
their required prefixes); it must decide every line as process_line does, and leave
the filter in the state tally() per line leaves it in. Checked line by line on every
sample log of fail2ban's corpus, with the corpus' own filter options, then as whole
blocks (with and without the literal prefilter's masks).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from jails.engine import blockloop
from jails.engine.errors import RegexTimeout
from jails.engine.filter import BlockTally, CompiledFilter, LineResult
from jails.engine.ini import load_filter_file
from jails.engine.literals import Prefilter, date_cut_for, required_prefixes, required_string
from tests.paths import CORPUS, corpus_tool
from tests.zones import local_zone


@pytest.fixture(scope="module")
def runs() -> Iterator[tuple[ModuleType, list[dict[str, Any]]]]:
    tool = corpus_tool()
    with local_zone(tool.TZ):  # the corpus' dates are local times in CET/CEST
        yield tool, [run for run in tool.all_runs(str(CORPUS)) if not run["journal"]]


def _filter(run: dict[str, Any]) -> CompiledFilter:
    return CompiledFilter.from_definition(load_filter_file(run["conf"], run["options"]), check_all=True)


def _lines(run: dict[str, Any]) -> list[str]:
    # twice: sessions and dates carry over into the second copy
    lines = [line["text"].rstrip("\r") for line in run["lines"]] * 2
    return [ln for ln in lines if ln and not ln.startswith("#") and "\n" not in ln]


def _slow_outcome(result: LineResult) -> tuple[str, list[int], int | None]:
    """How filtertest counts a process_line result (Runner._count)."""
    if result.timed_out is not None:
        kind = "timeout"
    elif result.ignored:
        kind = "ignored"
    elif any(not f.nofail for f in result.failures):
        kind = "matched"
    else:
        kind = "missed"
    return kind, sorted(f.regex_index for f in result.failures), result.ignore_index


def _block_outcome(counted: BlockTally) -> tuple[str, list[int], int | None]:
    """The same for a tally_block over one line."""
    if counted.notable:
        assert len(counted.notable) == 1
        return _slow_outcome(counted.notable[0][1])
    kinds = [k for k in ("matched", "ignored", "missed") if getattr(counted, k)]
    assert len(kinds) == 1, kinds
    hits = sorted(i for i, n in enumerate(counted.fail_hits) for _ in range(n))
    ignored = [i for i, n in enumerate(counted.ignore_hits) if n]
    return kinds[0], hits, ignored[0] if ignored else None


def _state(cf: CompiledFilter) -> tuple[Any, ...]:
    """What the next lines depend on: sessions, last date, the date detector's memory."""
    dates: Any = cf._dates
    templates = [(t.name, t.hits, t.matches, t.distance) for t in getattr(dates, "templates", [])]
    last = getattr(dates, "_last", None)
    where = (getattr(dates, "_start", None), getattr(dates, "_end", None), getattr(last, "name", None))
    return list(cf._sessions._data.items()), cf._last_date, templates, where


def test_it_decides_each_corpus_line_as_process_line(runs: tuple[ModuleType, list[dict[str, Any]]]) -> None:
    tool, all_runs = runs
    checked = 0
    for run in all_runs:
        slow, fast = _filter(run), _filter(run)
        for line in _lines(run):
            expected = _slow_outcome(slow.process_line(line, tool.NOW))
            got = _block_outcome(blockloop.tally_block(fast, line + "\n", [(0, -1)], tool.NOW))
            assert got == expected, (run["filter"], run["options"], line)
            checked += 1
    assert checked > 3000


def test_a_whole_block_counts_and_ends_as_tally_per_line(runs: tuple[ModuleType, list[dict[str, Any]]]) -> None:
    tool, all_runs = runs
    for run in all_runs:
        lines = _lines(run)
        if not lines:
            continue
        block = "\n".join(lines) + "\n"
        starts = [0]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        per_line, whole = _filter(run), _filter(run)
        expected = BlockTally(len(per_line.failregex_patterns), len(per_line.ignoreregex_patterns))
        for line in lines:
            try:
                result = per_line.tally(line, tool.NOW)
            except RegexTimeout as exc:
                result = LineResult(timed_out=str(exc))
            expected.add(line, result, 0, False)
        got = blockloop.tally_block(whole, block, [(s, -1) for s in starts], tool.NOW)
        where = (run["filter"], run["options"])
        assert (got.matched, got.ignored, got.missed, got.fail_hits, got.ignore_hits) == (
            expected.matched,
            expected.ignored,
            expected.missed,
            expected.fail_hits,
            expected.ignore_hits,
        ), where
        assert _state(whole) == _state(per_line), where


def test_prefilter_masks_change_no_count(runs: tuple[ModuleType, list[dict[str, Any]]]) -> None:
    # a line the prefilter leaves out, or a failregex its mask clears, cannot match
    tool, all_runs = runs
    for run in all_runs:
        lines = _lines(run)
        everything, masked = _filter(run), _filter(run)
        if not lines or masked.maxlines > 1:
            continue
        block = "\n".join(lines) + "\n"
        cut = date_cut_for(masked.datepattern)
        prefilter = Prefilter.build(
            masked.failregex_patterns, masked.regex_flags, date_cut=cut, sample=block, single_line=True
        )
        if prefilter is None:
            continue
        starts = [0]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        full = blockloop.tally_block(everything, block, [(s, -1) for s in starts], tool.NOW)
        candidates = prefilter.candidate_masks(block)
        some = blockloop.tally_block(masked, block, candidates, tool.NOW)
        skipped = len(lines) - len(candidates)
        where = (run["filter"], run["options"])
        assert (some.matched, some.ignored, some.missed + skipped, some.fail_hits) == (
            full.matched,
            full.ignored,
            full.missed,
            full.fail_hits,
        ), where


def test_dispatch_guards_hold_for_every_corpus_match(runs: tuple[ModuleType, list[dict[str, Any]]]) -> None:
    # the prefix and string checks may only skip a failregex that would not have matched
    tool, all_runs = runs
    seen = 0
    for run in all_runs:
        cf = _filter(run)
        guards = [
            (prefixes, required_string(p, cf.regex_flags, prefixes))
            for p in cf.failregex_patterns
            for prefixes in [required_prefixes(p, cf.regex_flags)]
        ]
        for line in _lines(run):
            for regex, (prefixes, needed) in zip(cf._fail, guards, strict=True):
                if prefixes is None and needed is None:
                    continue
                for text in (line, *_texts_after_prefregex(cf, line, tool.NOW)):
                    if regex.regex.search(text + "\n") is not None:
                        assert prefixes is None or text.startswith(prefixes), (run["filter"], regex.source, text)
                        assert needed is None or needed in text, (run["filter"], regex.source, text)
                        seen += 1
    assert seen > 500


def _texts_after_prefregex(cf: CompiledFilter, line: str, now: float) -> list[str]:
    """The texts the failregexes of a line are searched in: the line without its date,
    and the prefregex's content."""
    hit = cf._dates.match(line, now) if cf._dates is not None else None
    text = line[: hit.start] + line[hit.end :] if hit is not None and hit.end > hit.start else line
    texts = [text]
    if cf._pref is not None:
        pm = cf._pref.regex.search(text + "\n")
        if pm is not None and "content" in pm.re.groupindex and pm.group("content"):
            texts.append(pm.group("content"))
    return texts


def test_keep_options_hand_over_the_lines_to_show() -> None:
    conf = CORPUS / "config" / "filter.d" / "sshd.conf"
    if not conf.is_file():
        pytest.skip("no sshd filter in the corpus")
    lines = [
        "Nov 20 00:00:01 host sshd[1]: Connection from 192.0.2.1 port 1 on 10.0.0.1 port 22",
        "Nov 20 00:00:02 host sshd[1]: Failed password for root from 192.0.2.1 port 1 ssh2",
        "Nov 20 00:00:03 host sshd[2]: Connection from 192.0.2.2 port 1 on 10.0.0.1 port 22",
        "Nov 20 00:00:04 host sshd[3]: Accepted publickey for bob from 192.0.2.3 port 1 ssh2",
        "Nov 20 00:00:05 host sshd[4]: Server listening on 0.0.0.0 port 22.",
    ]
    block = "\n".join(lines) + "\n"
    starts = [block.index(line) for line in lines]
    now = time.mktime((2026, 11, 21, 0, 0, 0, 0, 0, -1))

    def counted(**keep: Any) -> BlockTally:
        cf = CompiledFilter.from_definition(load_filter_file(str(conf)), check_all=True)
        return blockloop.tally_block(cf, block, [(s, -1) for s in starts], now, **keep)

    plain = counted()
    assert (plain.matched, plain.ignored, plain.missed, plain.notable) == (1, 3, 1, [])
    one = counted(keep_ignored=1)
    assert [line for line, _ in one.notable] == [lines[0]] and one.ignored == 2
    every = counted(keep_ignored=-1, keep_matched=True)
    assert [line for line, _ in every.notable] == lines[:4]
    assert (every.matched, every.ignored, every.missed) == (0, 0, 1)
