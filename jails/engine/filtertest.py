"""Our fail2ban-regex: run a filter over a log and say what it finds.

    python -m jails.engine.filtertest LOG FILTER [options]

LOG is a file path, `-` for stdin, or else one literal log line. FILTER is a path to
a fail2ban .conf (options in brackets: `/x/filter.d/sshd.conf[mode=aggressive]`), a
filter name (only when a resolver is given, e.g. by the Django command), or a raw
failregex (it must contain a host tag such as <HOST>).

Logs are read as UTF-8 with errors="surrogateescape": invalid bytes become lone
surrogates, so the rest of such a line still matches and nothing is silently dropped.

Speed: the file is read in large blocks; when the literal prefilter can be built,
only lines holding one of the filter's required strings go through the matcher (the
others cannot match: they are counted as missed without running a regex). A
candidate line without a date of its own uses `now` rather than the date of a skipped
line before it (fail2ban would borrow a date younger than 60 s): with a historic log
this never differs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import blockloop, parallel
from .definition import FilterDefinition, RegexLine
from .errors import EngineError, FilterError, RegexTimeout
from .filter.compiled import CompiledFilter
from .filter.results import BlockTally, LineResult
from .guard import Watchdog
from .regex import has_host_tag

Resolver = Callable[[str, dict[str, str]], FilterDefinition]

BLOCK_SIZE = 8 << 20  # bytes read at once from a log file
SHOW_LINES = 20  # up to this many missed/ignored lines are printed without --print-all-*
_SAMPLE_CHARS = 1 << 16  # the start of the first block (~700 lines) measures the prefilter's clauses
_BUILD_ON_FIRST_BLOCK: Any = object()
_BARE_NAME_RE = re.compile(r"^[\w.-]+(?:\[.*\])?$")
_COMMENT_OR_EMPTY_RE = re.compile(r"^(?:#|\r?$)", re.MULTILINE)
# The same lines found from the newline before them: a literal the regex engine can
# skip to, not a `^` tried at every character (about 15x faster on a log block).
_AFTER_NEWLINE_COMMENT_OR_EMPTY_RE = re.compile(r"\n(?=#|\r?(?:\n|\Z))")


def _comment_or_empty_count(text: str, pos: int = 0) -> int:
    """len(_COMMENT_OR_EMPTY_RE.findall(text[pos:])): lines that are empty, "\\r" or
    start with "#" (counting the empty text after a final newline), computed faster
    (and without copying the text)."""
    find = text.find
    if find("\n#", pos) < 0 and find("\n\n", pos) < 0 and find("\n\r", pos) < 0:
        count = 1 if len(text) > pos and text[-1] == "\n" else 0  # only the "" after the last line
    else:
        count = len(_AFTER_NEWLINE_COMMENT_OR_EMPTY_RE.findall(text, pos))
    if text.startswith(("#", "\n", "\r\n"), pos) or (len(text) - pos <= 1 and text[pos:] in ("", "\r")):
        count += 1
    return count


def _count_piece(piece: str, pos: int = 0) -> tuple[int, int]:
    """Lines of a newline-terminated piece (from `pos` on), and how many are comments
    or empty."""
    return piece.count("\n", pos), _comment_or_empty_count(piece, pos) - 1  # -1: the "" after the last \n


class UsageError(EngineError):
    """The command line names something unusable (missing log, unknown filter...)."""


# --- command line -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="filtertest",
        description="Test a fail2ban-style filter against a log (like fail2ban-regex).",
    )
    p.add_argument("log", help="log file, '-' for stdin, or a literal log line")
    p.add_argument("filter", help="filter .conf path[options], filter name, or a raw failregex")
    p.add_argument("--json", action="store_true", help="one JSON object per input line")
    p.add_argument("--journal", action="store_true", help="lines are journal messages: no date parsing, time is now")
    p.add_argument("--now", type=float, default=None, help="the current time, epoch seconds")
    p.add_argument("--datepattern", default=None, help="override the filter's datepattern")
    p.add_argument("--logtimezone", default=None, help="zone of dates written without one")
    p.add_argument("--maxlines", type=int, default=None, help="override the filter's maxlines")
    p.add_argument("--timeout", type=float, default=1.0, help="regex time budget per line, seconds (default 1)")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="processes that match a log larger than 8 MB, for the summary (default and most: the "
        "CPUs this process may use; 1: all in this process). The results are the same either way",
    )
    p.add_argument("--print-all-matched", action="store_true")
    p.add_argument("--print-all-missed", action="store_true")
    p.add_argument("--print-all-ignored", action="store_true")
    return p


# --- filter and log resolution ------------------------------------------------------


def _split_options(spec: str) -> tuple[str, dict[str, str]]:
    """`path[a=1, b="x"]` -> (`path`, {...}) through the INI module's own parser."""
    from .ini.filters import parse_filter_spec  # noqa: PLC0415 - the INI reader only for a filter file

    name, opts = parse_filter_spec(spec)
    return name, dict(opts)


def load_definition(spec: str, resolve_name: Resolver | None) -> FilterDefinition:
    """Turn the FILTER argument into a definition (file, resolved name or raw regex)."""
    base = spec.split("[", 1)[0] if spec.endswith("]") else spec
    if base.endswith(".conf") or (os.sep in base and os.path.exists(base)):
        path, options = _split_options(spec) if base != spec else (spec, {})
        if not os.path.isfile(path):
            raise UsageError("no such filter file", path)
        from .ini.filters import load_filter_file  # noqa: PLC0415 - the INI reader only for a filter file

        return load_filter_file(path, options)
    if _BARE_NAME_RE.match(spec) and "<" not in spec:
        name, options = _split_options(spec) if base != spec else (spec, {})
        if resolve_name is None:
            raise UsageError(f"filter {name!r}: a bare name needs the filter store; give the path of a .conf file")
        return resolve_name(name, options)
    if not has_host_tag(spec):
        raise FilterError(
            "the raw failregex has no host tag (<HOST>, <ADDR>, <IP4>, <IP6>, <DNS>, <F-ID>...)",
            "<command line>",
        )
    return FilterDefinition("<command line>", (RegexLine(spec, "<command line>"),))


@dataclass
class LogSource:
    label: str
    blocks: Iterator[str]  # newline-terminated text blocks


def _read_blocks(stream: Any, path: str) -> Iterator[str]:
    """Newline-terminated, decoded blocks. Splitting at b"\\n" is safe for UTF-8:
    that byte never occurs inside a multi-byte sequence."""
    rest = b""
    while True:
        try:
            data = stream.read(BLOCK_SIZE)
        except OSError as exc:
            raise UsageError(f"cannot read log: {exc.strerror or exc}", path) from None
        if not data:
            break
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        rest = data[cut:]
        yield data[:cut].decode("utf-8", "surrogateescape")
    if rest:
        yield rest.decode("utf-8", "surrogateescape") + "\n"


def open_log(arg: str) -> LogSource:
    if arg == "-":
        return LogSource("<stdin>", _read_blocks(sys.stdin.buffer, "<stdin>"))
    if os.path.exists(arg):
        if os.path.isdir(arg):
            raise UsageError("is a directory, not a log file", arg)
        try:
            stream = open(arg, "rb")  # noqa: SIM115 - closed by the generator below
        except OSError as exc:
            raise UsageError(f"cannot open log: {exc.strerror or exc}", arg) from None
        return LogSource(arg, _closing_blocks(stream, arg))
    if not any(c.isspace() for c in arg) and (os.sep in arg or arg.endswith(".log")):
        raise UsageError("no such log file", arg)
    return LogSource("<command line>", iter([arg.rstrip("\r\n") + "\n"]))


def _closing_blocks(stream: Any, path: str) -> Iterator[str]:
    with stream:
        yield from _read_blocks(stream, path)


# --- statistics and output ----------------------------------------------------------


@dataclass
class Stats:
    lines: int = 0
    matched: int = 0
    ignored: int = 0
    missed: int = 0
    timed_out: int = 0
    fail_hits: list[int] = field(default_factory=list)
    ignore_hits: list[int] = field(default_factory=list)
    matched_lines: list[str] = field(default_factory=list)
    missed_lines: list[str] = field(default_factory=list)
    ignored_lines: list[str] = field(default_factory=list)
    timeout_lines: list[str] = field(default_factory=list)


class Runner:
    """Feeds lines to a compiled filter, keeps statistics, writes JSON if asked."""

    def __init__(self, cf: CompiledFilter, args: argparse.Namespace, out: TextIO) -> None:
        self.cf = cf
        self.args = args
        self.out = out
        self.now = args.now if args.now is not None else time.time()
        self.watchdog: Watchdog | None = None
        self.stats = Stats(fail_hits=[0] * len(cf.failregex_patterns), ignore_hits=[0] * len(cf.ignoreregex_patterns))
        self.pending: list[str] = []
        self.keep_missed = args.print_all_missed
        self.keep_ignored = args.print_all_ignored
        self.keep_matched = args.print_all_matched

    # -- one line through the matcher --
    def feed(self, lineno: int, line: str) -> None:
        if line.endswith("\r"):
            line = line[:-1]
        if not self.args.json and (not line or line.startswith("#")):
            return  # fail2ban-regex skips comments and empty lines
        if self.watchdog is not None:
            self.watchdog.step()
        try:
            result = self.cf.process_line(line, self.now, self.args.journal)
        except RegexTimeout as exc:
            # landed outside a regex (process_line catches those): same outcome
            result = LineResult(timed_out=str(exc))
        self._count(line, result)
        if self.args.json:
            self._json(lineno, result)

    def _count(self, line: str, r: LineResult) -> None:
        s = self.stats
        s.lines += 1
        for f in r.failures:
            s.fail_hits[f.regex_index] += 1
        if r.ignore_index is not None:
            s.ignore_hits[r.ignore_index] += 1
        if r.timed_out is not None:
            s.timed_out += 1
            s.timeout_lines.append(f"{line}  <- {r.timed_out}")
        if r.ignored:
            s.ignored += 1
            if self.keep_ignored or s.ignored <= SHOW_LINES + 1:
                s.ignored_lines.append(line)
        elif any(not f.nofail for f in r.failures):
            s.matched += 1
            if self.keep_matched:
                s.matched_lines.extend(r.failures[0].lines if self.cf.maxlines > 1 else [line])
        else:
            self.missed(line)

    def missed(self, line: str) -> None:
        s = self.stats
        s.missed += 1
        if self.keep_missed or s.missed <= SHOW_LINES + 1:
            s.missed_lines.append(line)

    def _json(self, lineno: int, r: LineResult) -> None:
        fails = [
            {"host": f.host, "time": f.time, "attempts": f.attempts, "fields": f.fields}
            for f in r.failures
            if f.host is not None and not f.nofail
        ]
        obj: dict[str, Any] = {"lineno": lineno, "fails": fails}
        if r.ignored:
            obj["ignored"] = True
        if r.timed_out is not None:
            obj["timeout"] = r.timed_out
        self.pending.append(json.dumps(obj, default=str))
        if len(self.pending) >= 4096:
            self.flush()

    def empty_json(self, first: int, last: int) -> None:
        """Lines first..last (inclusive) that cannot match: no failures."""
        if first > last:
            return
        self.pending.extend(f'{{"lineno": {n}, "fails": []}}' for n in range(first, last + 1))
        if len(self.pending) >= 4096:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.out.write("\n".join(self.pending) + "\n")
            self.pending = []

    # -- whole sources --
    def run(self, source: LogSource) -> float:
        # Millions of short-lived, acyclic objects: the cyclic collector would only
        # rescan them over and over. Reference counting still frees them.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run(source)
        finally:
            if was_enabled:
                gc.enable()

    def _run(self, source: LogSource) -> float:
        started = time.perf_counter()
        prefilter = None if self.keep_missed else _BUILD_ON_FIRST_BLOCK
        if self.args.timeout and self.args.timeout > 0:
            with Watchdog(self.args.timeout) as watchdog:
                self.watchdog = watchdog if watchdog.active else None
                self._run_blocks(source, prefilter)
            self.watchdog = None
        else:
            self._run_blocks(source, prefilter)
        self.flush()
        return time.perf_counter() - started

    def _run_blocks(self, source: LogSource, prefilter: Any) -> None:
        lineno = 0
        blocks = source.blocks
        while True:
            with self._waiting():  # reading (stdin may wait) is not regex time
                block = next(blocks, None)
            if block is None:
                break
            if prefilter is _BUILD_ON_FIRST_BLOCK:
                with self._waiting():  # analysing the regexes is not a line's time
                    prefilter = self._prefilter(block[:_SAMPLE_CHARS])
            if prefilter is not None and lineno == 0:
                workers = self._workers()
                if workers > 1:
                    with self._waiting():
                        second = next(blocks, None)
                    if second is not None:  # a log worth the fork: more than a block
                        self._run_parallel(itertools.chain((block, second), blocks), prefilter, workers)
                        return
                    blocks = iter(())
            if prefilter is None:
                lineno = self._all_lines(block, lineno)
            else:
                lineno = self._candidates_only(block, lineno, prefilter)

    def _waiting(self) -> AbstractContextManager[Any]:
        return self.watchdog.paused() if self.watchdog is not None else contextlib.nullcontext()

    def _workers(self) -> int:
        """Worker processes for the counting path (parallel.py): only when nothing
        needs every line in order (JSON, --print-all-missed) and the block loop runs."""
        jobs = self.args.jobs if self.args.jobs is not None else parallel.usable_cpus()
        if jobs < 2 or self.args.json or self.args.journal or self.keep_missed or not self.cf.block_loop_ok:
            return 1
        # more workers than CPUs would only hold more pieces in memory
        return min(jobs, parallel.usable_cpus()) if parallel.can_fork() else 1

    def _run_parallel(self, blocks: Iterator[str], prefilter: Any, workers: int) -> None:
        """The blocks' pieces prematched by workers, committed here in order; while
        missed lines are still to be shown, a piece is taken line by line here."""
        lineno = 0
        timeout = max(self.args.timeout or 0, 0)
        try:
            with parallel.Prematcher(
                self.cf, prefilter, self.now, timeout, _count_piece, workers, self._waiting
            ) as prematcher:
                for piece, prematched in prematcher.results(parallel.pieces(blocks)):
                    if self.stats.missed > SHOW_LINES:
                        lineno += self._prematched_counted(piece, prematched, prefilter)
                    else:
                        lineno = self._candidates_only(piece, lineno, prefilter)
        except BrokenProcessPool:
            raise EngineError(
                "a worker process died while matching (killed, or out of memory?); "
                "--jobs 1 matches in this process only"
            ) from None

    def _prefilter(self, sample: str | None = None) -> Any:
        cf = self.cf
        if cf.maxlines > 1:
            return None  # every line enters the multi-line buffer
        try:
            from .literals.prefilter import Prefilter  # noqa: PLC0415 - optional: no prefilter without it
        except ImportError:
            return None
        patterns = list(cf.failregex_patterns)
        if cf.ignore_first:
            patterns += cf.ignoreregex_patterns  # such lines count as ignored
        try:
            from .literals.prefilter import date_cut_for  # noqa: PLC0415 - as Prefilter above

            cut = date_cut_for(getattr(cf, "datepattern", None), self.args.journal)
            return Prefilter.build(patterns, cf.regex_flags, date_cut=cut, sample=sample, single_line=True)
        except Exception:  # a prefilter is an optimisation, never a failure
            return None

    def _all_lines(self, block: str, lineno: int) -> int:
        lines = block.split("\n")
        lines.pop()  # the block ends with "\n"
        feed = self.feed
        for line in lines:
            lineno += 1
            feed(lineno, line)
        return lineno

    def _candidates_only(self, block: str, lineno: int, prefilter: Any) -> int:
        # the counting path (tally_block) dates every line: journal messages have no
        # date of their own, so they stay on process_line(journal=True)
        human = not self.args.json and not self.args.journal
        if human and self.stats.missed > SHOW_LINES:
            return lineno + self._candidates_counted(block, self._scan(prefilter.candidate_masks, block))
        # in human mode the masks serve the rest of the block once enough missed lines
        # are shown: one scan of the block either way
        masks = self._scan(prefilter.candidate_masks, block) if human else None
        offsets = [start for start, _ in masks] if masks is not None else self._scan(prefilter.candidate_offsets, block)
        find, count = block.find, block.count
        pos = 0
        for index, start in enumerate(offsets):
            if masks is not None and self.stats.missed > SHOW_LINES:
                # enough missed lines to show: count the rest of the block
                return lineno + self._candidates_counted(block, masks[index:], pos)
            skipped = count("\n", pos, start)
            if skipped:
                self._skip(block, pos, start, lineno + 1, skipped)
                lineno += skipped
            end = find("\n", start)
            lineno += 1
            self.feed(lineno, block[start:end])
            pos = end + 1
        total_left = count("\n", pos)
        if total_left:
            self._skip(block, pos, len(block), lineno + 1, total_left)
            lineno += total_left
        return lineno

    def _scan(self, scan: Callable[[str], Any], block: str) -> Any:
        """A prefilter's scan of a block: no line's time (the watchdog would take a slow
        scan for a runaway regex and raise where nothing catches it)."""
        if self.watchdog is None:
            return scan(block)
        with self.watchdog.paused():
            return scan(block)

    def _candidates_counted(self, block: str, masks: list[tuple[int, int]], pos: int = 0) -> int:
        """Human mode once enough missed lines are shown: the lines (of the block, from
        `pos` on) between candidates are only counted (one pass), not walked, and
        candidates go through blockloop.tally_block (the failregexes their
        literals allow, no per-line objects unless something matched)."""
        counted = blockloop.tally_block(
            self.cf,
            block,
            masks,
            self.now,
            watchdog=self.watchdog,
            keep_ignored=self._keep_ignored(),
            keep_matched=self.keep_matched,
        )
        lines, comments = _count_piece(block, pos)
        self._add_counted(counted, lines, comments, len(masks))
        return lines

    def _prematched_counted(self, piece: str, prematched: parallel.Prematched, prefilter: Any) -> int:
        """_candidates_counted for a piece a worker prematched (parallel.py)."""
        counted = blockloop.commit_prematched(
            self.cf,
            piece,
            prematched.segments,
            lambda: self._scan(prefilter.candidate_masks, piece),  # only if a segment must be redone
            self.now,
            watchdog=self.watchdog,
            keep_ignored=self._keep_ignored(),
            keep_matched=self.keep_matched,
        )
        self._add_counted(counted, prematched.lines, prematched.comments, prematched.candidates)
        return prematched.lines

    def _keep_ignored(self) -> int:
        return -1 if self.keep_ignored else max(0, SHOW_LINES + 1 - self.stats.ignored)

    def _add_counted(self, counted: BlockTally, lines: int, comments: int, candidates: int) -> None:
        """Add what tally_block counted to the statistics, with the block's other lines
        (`lines` in all, `comments` of them comments or empty) as missed."""
        s = self.stats
        for line, result in counted.notable:  # first: the lines to show are the first ones
            self._count(line, result)
        s.lines += counted.matched + counted.ignored + counted.missed
        s.matched += counted.matched
        s.ignored += counted.ignored
        s.missed += counted.missed
        for index, hits in enumerate(counted.fail_hits):
            s.fail_hits[index] += hits
        for index, hits in enumerate(counted.ignore_hits):
            s.ignore_hits[index] += hits
        skipped = (lines - candidates) - (comments - counted.comments)
        s.lines += skipped
        s.missed += skipped

    def _skip(self, block: str, start: int, end: int, first: int, n: int) -> None:
        """Account for n lines that hold no required literal: they cannot match."""
        if self.args.json:
            self.empty_json(first, first + n - 1)
            self.stats.lines += n
            self.stats.missed += n
            return
        text = block[start:end]
        comments = _comment_or_empty_count(text) - (1 if text.endswith("\n") else 0)
        tested = n - comments
        s = self.stats
        if s.missed + tested <= SHOW_LINES + 1:
            for line in text.split("\n")[:-1]:
                line = line.rstrip("\r")
                if line and not line.startswith("#"):
                    self.missed(line)
        else:
            s.missed += tested
        s.lines += tested


def _print_list(out: TextIO, header: str, rows: list[str]) -> None:
    out.write(f"|- {header}\n" if header else "")
    for row in rows:
        out.write(f"|  {row}\n")
    out.write("`-\n")


def print_report(out: TextIO, runner: Runner, elapsed: float, spec: str, log: str) -> None:
    cf, s, args = runner.cf, runner.stats, runner.args
    out.write("\nRunning tests\n=============\n\n")
    out.write(f"Use      failregex filter : {spec}\n")
    if args.datepattern:
        out.write(f"Use          datepattern : {args.datepattern}\n")
    out.write(f"Use                   log : {log}\n")
    out.write("Use              encoding : UTF-8 (invalid bytes kept as surrogate escapes)\n")
    out.write("\n\nResults\n=======\n")
    if cf.prefregex_pattern is not None:
        out.write("\nPrefregex:\n")
        _print_list(out, "", [cf.prefregex_lines[0].pattern])
    for title, hits, lines in (
        ("Failregex", s.fail_hits, cf.failregex_lines),
        ("Ignoreregex", s.ignore_hits, cf.ignoreregex_lines),
    ):
        out.write(f"\n{title}: {sum(hits)} total\n")
        rows = [f"{i + 1:2d}) [{n}] {lines[i].pattern}" for i, n in enumerate(hits) if n]
        if rows:
            _print_list(out, "#) [# of hits] regular expression", rows)
    template_hits = cf.date_template_hits()
    if template_hits is not None:
        out.write("\nDate template hits:\n")
        _print_list(out, "[# of hits] date format", [f"[{n}] {name}" for name, n in template_hits if n])
    rate = s.lines / elapsed if elapsed > 0 else float("inf")
    out.write(f"\nLines: {s.lines} lines, {s.ignored} ignored, {s.matched} matched, {s.missed} missed\n")
    out.write(f"[processed in {elapsed:.2f} sec, {rate:,.0f} lines/s]\n")
    if s.timed_out:
        out.write(f"\nTimed out ({args.timeout:g} s per line): {s.timed_out} line(s)\n")
        _print_list(out, "", s.timeout_lines[:SHOW_LINES])
    _print_lines(out, "Matched", s.matched, s.matched_lines, args.print_all_matched, "matched")
    _print_lines(out, "Ignored", s.ignored, s.ignored_lines, args.print_all_ignored, "ignored")
    _print_lines(out, "Missed", s.missed, s.missed_lines, args.print_all_missed, "missed")


def _print_lines(out: TextIO, title: str, count: int, lines: list[str], all_: bool, flag: str) -> None:
    if not count or (flag == "matched" and not all_):
        return
    out.write("\n")
    if all_ or count <= SHOW_LINES:
        _print_list(out, f"{title} line(s):", [ln.rstrip() for ln in lines])
    else:
        out.write(f"{title} line(s): too many to print.  Use --print-all-{flag} to print all {count} lines\n")


# --- entry point --------------------------------------------------------------------


def main(argv: list[str] | None = None, resolve_name: Resolver | None = None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout
    try:
        definition = load_definition(args.filter, resolve_name)
        cf = CompiledFilter.from_definition(
            definition,
            logtimezone=args.logtimezone,
            datepattern=args.datepattern,
            maxlines=args.maxlines,
            check_all=True,
        )
        source = open_log(args.log)
        runner = Runner(cf, args, out)
        elapsed = runner.run(source)
    except EngineError as exc:
        sys.stderr.write(f"ERROR: {exc}\n")
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"ERROR: {where}{exc.strerror or exc}\n")
        return 1
    except KeyboardInterrupt:  # Ctrl-C: the workers are stopped on the way out
        sys.stderr.write("interrupted: no summary\n")
        return 130
    if not args.json:
        print_report(out, runner, elapsed, args.filter, source.label)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
