"""Matching on several cores (jails/engine/parallel.py, blockloop.commit_prematched).

Workers only prematch; the main process commits in order and redoes any segment made
with another date template than its own. Checked on every sample log of fail2ban's
corpus against the one-process loop (counts, shown lines and the filter state left
behind), with workers whose date detector starts elsewhere, then end to end through
filtertest with real forked workers.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from jails.engine import blockloop, filtertest, parallel
from jails.engine.blockloop import BlockLoop, Segment
from jails.engine.filter import BlockTally, CompiledFilter
from jails.engine.ini import load_filter_file
from tests.engine.test_tally_block import _filter, _lines, _state, runs  # noqa: F401 - runs is a fixture
from tests.paths import CORPUS

SSHD = str(CORPUS / "config" / "filter.d" / "sshd.conf")


def _pieces(lines: list[str], parts: int) -> list[str]:
    size = max(1, len(lines) // parts)
    return ["\n".join(lines[i : i + size]) + "\n" for i in range(0, len(lines), size)]


def _every_line(piece: str) -> list[tuple[int, int]]:
    return [(0, -1)] + [(m.end(), -1) for m in re.finditer("\n", piece[:-1])]


def _prematch(worker: CompiledFilter, piece: str, now: float) -> list[Segment]:
    unused = BlockTally(len(worker.failregex_patterns), len(worker.ignoreregex_patterns))
    segments = BlockLoop(worker, now, None, 0, False, unused).prematch_all(piece, _every_line(piece))
    crossed: list[Segment] = pickle.loads(pickle.dumps(segments))  # noqa: S301  # our own bytes, as from a worker
    return crossed


def _block_loop_runs(all_runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # only these go parallel (filtertest asks block_loop_ok): the others are multi-line
    return [run for run in all_runs if _filter(run).block_loop_ok]


def _counts(tally: BlockTally) -> tuple[Any, ...]:
    notable = [
        (line, r.ignored, r.timed_out, [(f.regex_index, f.nofail) for f in r.failures]) for line, r in tally.notable
    ]
    return tally.matched, tally.ignored, tally.missed, tally.comments, tally.fail_hits, tally.ignore_hits, notable


@pytest.mark.parametrize("keep", [(0, False), (5, False), (-1, True)], ids=["count", "show-5-ignored", "show-all"])
def test_it_commits_what_workers_prematched_as_one_process_counts(
    runs: tuple[ModuleType, list[dict[str, Any]]],  # noqa: F811 - the fixture
    keep: tuple[int, bool],
) -> None:
    tool, all_runs = runs
    keep_ignored, keep_matched = keep
    checked = 0
    for run in _block_loop_runs(all_runs):
        pieces = _pieces(_lines(run) * 2, 3)
        one, committing = _filter(run), _filter(run)
        for piece in pieces:
            candidates = _every_line(piece)
            expected = blockloop.tally_block(
                one,
                piece, candidates, tool.NOW, keep_ignored=keep_ignored, keep_matched=keep_matched
            )
            # a fresh worker per piece: its date detector knows nothing of the lines before
            segments = _prematch(_filter(run), piece, tool.NOW)
            got = blockloop.commit_prematched(
                committing,
                piece, segments, functools.partial(list, candidates), tool.NOW, keep_ignored=keep_ignored,
                keep_matched=keep_matched
            )
            assert _counts(got) == _counts(expected), (run["filter"], run["options"])
            checked += len(candidates)
        assert _state(committing) == _state(one), (run["filter"], run["options"])
    assert checked > 3000


def test_it_matches_again_a_segment_made_with_another_template(
    runs: tuple[ModuleType, list[dict[str, Any]]],  # noqa: F811 - the fixture
) -> None:
    tool, all_runs = runs
    redone = 0
    for run in _block_loop_runs(all_runs):
        piece = "\n".join(_lines(run)) + "\n"
        candidates = _every_line(piece)
        one, committing = _filter(run), _filter(run)
        expected = blockloop.tally_block(one, piece, candidates, tool.NOW)
        segments = _prematch(_filter(run), piece, tool.NOW)
        for segment in segments:
            if segment.template is not None:
                segment.template = "a template this process does not have"
                redone += 1
        got = blockloop.commit_prematched(committing, piece, segments, functools.partial(list, candidates), tool.NOW)
        assert _counts(got) == _counts(expected), (run["filter"], run["options"])
        assert _state(committing) == _state(one), (run["filter"], run["options"])
    assert redone > 50


def test_it_cuts_blocks_into_pieces_of_whole_lines() -> None:
    blocks = ["a\nbb\nccc\n", "dddd\n", "e\n"]
    got = list(parallel.pieces(blocks, size=3))
    assert "".join(got) == "".join(blocks)
    assert all(piece.endswith("\n") for piece in got)
    assert got == ["a\nbb\n", "ccc\n", "dddd\n", "e\n"]


# --- end to end: filtertest with forked workers ----------------------------------------


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    # a log of a few hundred KB goes parallel as an 8 MB one would
    monkeypatch.setattr(filtertest, "BLOCK_SIZE", 16 << 10)
    monkeypatch.setattr(parallel, "PIECE_SIZE", 4 << 10)


def _report(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert filtertest.main(list(argv)) == 0
    out = capsys.readouterr().out
    return re.sub(r"\[processed in .*\]", "[processed]", out)


def _mixed_log(tmp_path: Path) -> Path:
    """fail2ban's sshd samples, over and over: several date formats, sessions that
    span pieces, comments and lines of every kind."""
    samples = (CORPUS / "logs" / "sshd").read_text(errors="surrogateescape")
    path = tmp_path / "auth.log"
    path.write_text(samples * 40, errors="surrogateescape")
    return path


@pytest.mark.usefixtures("small_blocks")
def test_it_reports_the_same_with_workers_as_without(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = _mixed_log(tmp_path)
    alone = _report(capsys, str(log), SSHD, "--jobs", "1", "--now", "1700000000")
    shared = _report(capsys, str(log), SSHD, "--jobs", "2", "--now", "1700000000")
    assert shared == alone
    assert re.search(r"Lines: \d+ lines, \d+ ignored, [1-9]\d* matched", shared)


@pytest.mark.usefixtures("small_blocks")
def test_a_worker_stops_a_runaway_regex_and_the_rest_is_counted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    noise = [f"Mar  1 10:00:{i % 60:02d} host app[1]: nothing to see from here {i}" for i in range(3000)]
    # it holds what the regex needs ("a from "), so it is tried, and fails after 2**40 ways
    slow = "Mar  1 10:01:00 host app[1]: " + "a" * 40 + " from 192.0.2.1 x"
    fine = [f"Mar  1 10:02:{i % 60:02d} host app[1]: aaa from 192.0.2.{i % 200 + 2}" for i in range(300)]
    log = tmp_path / "slow.log"
    log.write_text("\n".join([*noise, slow, *fine]) + "\n")
    out = _report(capsys, str(log), r"(a+)+ from <HOST>$", "--jobs", "2", "--timeout", "0.2")
    assert "Timed out (0.2 s per line): 1 line(s)" in out
    assert "aaaaa from 192.0.2.1 x  <- failregex 1: a regex ran longer than 0.2s" in out
    assert "300 matched" in out


_MAIN_PID = os.getpid()


def _killed_in_worker(piece: str) -> parallel.Prematched:
    # (at module level: workers get the function by name)
    if os.getpid() != _MAIN_PID:  # in a worker, as the kernel's OOM killer would
        os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("prematch runs in workers")


@pytest.mark.usefixtures("small_blocks")
def test_a_worker_that_dies_stops_the_run_with_an_error_not_a_hang(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "prematch", _killed_in_worker)
    code = filtertest.main([str(_mixed_log(tmp_path)), SSHD, "--jobs", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert "a worker process died while matching" in err and "--jobs 1" in err


def test_it_stays_in_one_process_for_a_small_log(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fork(*args: object, **kwargs: object) -> Iterator[None]:
        raise AssertionError("a log of one block needs no workers")

    monkeypatch.setattr(parallel, "Prematcher", no_fork)
    log = _mixed_log(tmp_path)
    assert "matched" in _report(capsys, str(log), SSHD, "--jobs", "2")


def test_a_segment_without_a_dated_line_leaves_the_last_date_alone() -> None:
    # comments, then a line the template that dated the line before cannot date: the
    # segment of the comments comes from a worker with nothing to say of the last date
    now = 1700000000.0
    primer = "Mar  1 10:00:00 host sshd[1]: Connection closed by 192.0.2.1 port 22\n"
    piece = "# one\n# two\n2024-03-01T10:00:05 host sshd[2]: Connection closed by 192.0.2.2 port 22\n"
    committing, worker = (CompiledFilter.from_definition(_sshd(), check_all=True) for _ in range(2))
    for cf in (committing, worker):
        blockloop.tally_block(cf, primer, _every_line(primer), now)
    before = committing._last_date
    assert before is not None
    segments = _prematch(worker, piece, now)
    assert segments[0].first < segments[0].stop and segments[0].dated == 0  # the comments
    unused = BlockTally(len(committing.failregex_patterns), 0)
    BlockLoop(committing, now, None, 0, False, unused).commit(piece, segments[0])
    assert committing._last_date == before


def _sshd() -> Any:
    return load_filter_file(SSHD, {})


@pytest.mark.usefixtures("small_blocks")
def test_ctrl_c_stops_the_workers_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(filtertest.Runner, "_prematched_counted", interrupted)
    code = filtertest.main([str(_mixed_log(tmp_path)), SSHD, "--jobs", "2"])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert multiprocessing.active_children() == []  # the workers are gone
