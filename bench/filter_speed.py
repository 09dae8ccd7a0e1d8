#!/usr/bin/env python3
"""Time our `filtertest` against fail2ban's `fail2ban-regex` on the same logs and filters.

For each benchmark (the stock sshd filter on a generated auth.log, the admin's
apache-envscan filter on a generated access log) both tools run the same command shape
`TOOL LOG FILTER`. The script records the wall-clock time of the whole command (best of
N runs), the CPU time of that run and the time the tool reports itself, then checks that
both tools sorted the lines the same way: a fast filter engine that counts differently
is not a result. Figures go to a table on stdout and to a small JSON file.

It reports figures and ratios; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import genlogs

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SHARED = REPO.parent / "shared"
QUICK_LINES = 100_000

_COUNTS_RE = re.compile(r"Lines:\s*([\d,]+) lines?, ([\d,]+) ignored, ([\d,]+) matched, ([\d,]+) missed")
_REPORTED_RE = re.compile(r"\[processed in ([\d.]+) ?s")


@dataclass(frozen=True)
class Benchmark:
    """One filter timed on one generated log."""

    name: str
    log_kind: str  # a key of genlogs.LOGS
    filter_path: Path


BENCHMARKS = (
    # fail2ban-regex reads the filter's includes (common.conf) from beside it, so the
    # stock filter is used in place in the corpus tree, never copied.
    Benchmark("sshd", "auth", SHARED / "corpus" / "fail2ban" / "config" / "filter.d" / "sshd.conf"),
    Benchmark("apache-envscan", "access", SHARED / "seed-configs" / "filter.d" / "apache-envscan.conf"),
)


@dataclass
class Counts:
    """The tool's own summary line: `Lines: N lines, I ignored, M matched, X missed`."""

    lines: int
    ignored: int
    matched: int
    missed: int


@dataclass
class Run:
    """One timed execution of a command."""

    wall: float  # seconds, the whole command including interpreter start-up
    cpu: float  # user + system seconds of the child; less sensitive to a busy machine
    reported: float | None  # "[processed in X sec]" if the tool prints it
    counts: Counts | None
    returncode: int
    output: str  # where stdout+stderr were saved
    load: float  # 1-minute load average just before the run


@dataclass
class ToolResult:
    """Best of N runs of one tool on one benchmark."""

    command: str
    runs: list[Run] = field(default_factory=list)

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda run: run.wall)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.returncode == 0 and r.counts is not None for r in self.runs)

    def summary(self, lines: int) -> dict[str, object]:
        best = self.best
        return {
            "command": self.command,
            "runs": len(self.runs),
            "wall_best_s": round(best.wall, 3),
            "walls_s": [round(r.wall, 3) for r in self.runs],
            "cpu_s": round(best.cpu, 3),
            "reported_s": best.reported,
            "lines_per_s": round(lines / best.wall) if best.wall else None,
            "load_1min": round(best.load, 2),
            "counts": asdict(best.counts) if best.counts else None,
        }


# --------------------------------------------------------------------------- running


def parse_counts(text: str) -> Counts | None:
    found = _COUNTS_RE.search(text)
    if not found:
        return None
    lines, ignored, matched, missed = (int(group.replace(",", "")) for group in found.groups())
    return Counts(lines, ignored, matched, missed)


def parse_reported(text: str) -> float | None:
    found = _REPORTED_RE.search(text)
    return float(found.group(1)) if found else None


def warm_page_cache(path: Path) -> None:
    """Read the log once so that the first tool timed does not pay for the disk alone."""
    with path.open("rb") as handle:
        while handle.read(8 << 20):
            pass


def time_command(argv: list[str], output: Path, env: dict[str, str] | None = None) -> Run:
    """Run argv with stdout+stderr to a file; measure wall time and the child's CPU time."""
    output.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    with output.open("wb") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        # wait4 gives this child's own rusage (not every child's since the start)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    text = output.read_text(errors="replace")
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        reported=parse_reported(text),
        counts=parse_counts(text),
        returncode=os.waitstatus_to_exitcode(status),
        output=str(output.relative_to(REPO)) if output.is_relative_to(REPO) else str(output),
        load=load,
    )


def run_tool(
    label: str,
    base: list[str],
    bench: Benchmark,
    log: Path,
    runs: int,
    out_dir: Path,
    env: dict[str, str] | None = None,
) -> ToolResult:
    argv = [*base, str(log), str(bench.filter_path)]
    result = ToolResult(command=portable_command(argv))
    for index in range(1, runs + 1):
        print(f"  {label:8} run {index}/{runs}: {shlex.join(argv)}", flush=True)
        run = time_command(argv, out_dir / f"{bench.name}-{label}-{index}.txt", env)
        result.runs.append(run)
        if run.returncode != 0 or run.counts is None:
            # no point repeating a command that fails; show why
            print(f"  {label} FAILED (exit {run.returncode}); output in {run.output}:", file=sys.stderr)
            tail = (REPO / run.output).read_text(errors="replace").splitlines()[-15:]  # absolute stays absolute
            print("    " + "\n    ".join(tail), file=sys.stderr)
            break
        print(f"           {run.wall:8.2f} s wall, {run.cpu:8.2f} s CPU, load {run.load:.2f}", flush=True)
    return result


# --------------------------------------------------------------------------- commands


def default_ours_command() -> tuple[list[str], str]:
    """`manage.py filtertest` if it works, else the engine module (Django-free) directly."""
    python = REPO / ".venv" / "bin" / "python"
    interpreter = str(python) if python.exists() else sys.executable
    module = [interpreter, "-m", "jails.engine.filtertest"]
    manage = REPO / "manage.py"
    if not manage.exists():
        return module, "manage.py is missing: using the engine module"
    command = [interpreter, str(manage), "filtertest"]
    probe = subprocess.run([*command, "--help"], cwd=REPO, env=ours_env(), capture_output=True, timeout=120)
    if probe.returncode != 0:
        return module, "`manage.py filtertest --help` fails: using the engine module"
    return command, ""


def ours_env() -> dict[str, str]:
    # Django refuses to start without a secret key outside debug mode; a throwaway one
    # keeps production settings (DEBUG off) for the timed run without touching .env.
    env = dict(os.environ)
    env.setdefault("IPS_SECRET_KEY", "bench-" + secrets.token_urlsafe(32))
    return env


def fail2ban_version(command: list[str]) -> str:
    try:
        done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return "unknown"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "unknown"


def machine_info() -> dict[str, object]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


# --------------------------------------------------------------------------- report


def compare(name: str, theirs: Counts, ours: Counts) -> list[str]:
    """Differences that make the speed figures meaningless."""
    problems = []
    for what in ("lines", "matched", "missed", "ignored"):
        a, b = getattr(theirs, what), getattr(ours, what)
        if a != b:
            problems.append(f"MISMATCH {name}: {what}: fail2ban {a:,} vs ours {b:,} (diff {b - a:+,})")
    return problems


def agrees_with_generator(counts: Counts, expected: object) -> bool:
    return isinstance(expected, dict) and all(
        getattr(counts, bucket) == expected.get(bucket) for bucket in ("matched", "ignored", "missed")
    )


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("filter", "lines", "fail2ban lines/s", "ours lines/s", "ratio", "CPU ratio", "matched", "agree")
    body = []
    for row in rows:
        f2b, ours = row["fail2ban"], row["ours"]
        ours_lps = ours["lines_per_s"] if ours else None
        counts = f2b["counts"]
        body.append(
            (
                str(row["filter"]),
                f"{row['lines']:,}",
                f"{f2b['lines_per_s']:,}",
                f"{ours_lps:,}" if ours_lps else "-",
                f"{row['ratio']:.1f}x" if row.get("ratio") else "-",
                f"{row['cpu_ratio']:.1f}x" if row.get("cpu_ratio") else "-",
                f"{counts['matched']:,}" if isinstance(counts, dict) else "-",
                {True: "yes", False: "NO", None: "-"}[row["agree"]],
            )
        )
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]
    lines = [
        "  ".join(
            cell.rjust(width) if i else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        for cells in (header, *body)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def portable_command(argv: list[str]) -> str:
    """The command as run, with absolute paths made relative to the repository."""
    return shlex.join(relative(Path(arg)) if os.path.isabs(arg) else arg for arg in argv)


def relative(path: Path) -> str:
    """Paths in the JSON are relative to the repository, so the file is the same everywhere."""
    try:
        return os.path.relpath(path, REPO)
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""\
what it does, in order:
  1. generates (or reuses from --cache-dir) two deterministic logs of --lines lines:
     an sshd auth.log and an Apache access log, each ~10% attacks plus near-misses
     (see bench/genlogs.py; the manifest there holds their sha256)
  2. for each filter, runs `fail2ban-regex LOG FILTER` --fail2ban-runs times and
     `OURS LOG FILTER` --ours-runs times, keeping the fastest wall-clock run
  3. parses "Lines: N lines, I ignored, M matched, X missed" from both and prints
     MISMATCH (exit 1) if the counts differ
  4. prints a table and writes the JSON (--json-out)

columns:
  lines/s    lines / best wall-clock seconds of the whole command (start-up included)
  ratio      ours lines/s / fail2ban lines/s (higher is better for us)
  CPU ratio  the same from the children's user+system CPU time: steadier than the wall
             clock when other work shares the machine (the load is recorded per run)

exit status: 0 all counts agree, 1 a count differs or a tool failed, 2 bad usage.
Each tool's full output is kept in CACHE_DIR/out/ for inspection.

example:
  bench/run.sh --quick                       # 100,000-line logs, a fast check
  bench/filter_speed.py --filters sshd --ours-runs 5
""",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"use {QUICK_LINES:,}-line logs (results go to filter_speed_quick.json)"
    )
    parser.add_argument(
        "--lines", type=int, default=genlogs.DEFAULT_LINES, help="lines per generated log (default: %(default)s)"
    )
    parser.add_argument(
        "--filters",
        default=",".join(b.name for b in BENCHMARKS),
        help="comma-separated benchmarks to run (default: %(default)s)",
    )
    parser.add_argument(
        "--fail2ban-runs",
        type=int,
        default=1,
        help="runs of fail2ban-regex per filter, best kept (default: %(default)s)",
    )
    parser.add_argument(
        "--ours-runs", type=int, default=3, help="runs of our filtertest per filter, best kept (default: %(default)s)"
    )
    parser.add_argument(
        "--fail2ban-cmd",
        default="fail2ban-regex",
        help="fail2ban's tester; LOG and FILTER are appended (default: %(default)s)",
    )
    parser.add_argument(
        "--ours-cmd",
        default=None,
        help="our tester; LOG and FILTER are appended (default: <repo>/.venv/bin/python "
        "<repo>/manage.py filtertest, or `-m jails.engine.filtertest` when "
        "manage.py is missing or its filtertest does not start)",
    )
    parser.add_argument(
        "--fail2ban-only",
        action="store_true",
        help="time fail2ban-regex alone (no comparison), e.g. while ours is unfinished",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=BENCH_DIR / ".cache",
        help="generated logs and tool outputs (default: bench/.cache)",
    )
    parser.add_argument(
        "--json-out",
        type=Path,
        default=None,
        help="where to write the results (default: bench/results/filter_speed.json, "
        "or filter_speed_quick.json with --quick)",
    )
    args = parser.parse_args(argv)
    known = {b.name for b in BENCHMARKS}
    args.filter_names = [name.strip() for name in args.filters.split(",") if name.strip()]
    unknown = set(args.filter_names) - known
    if unknown or not args.filter_names:
        parser.error(f"--filters: unknown {sorted(unknown)}; choose from {sorted(known)}")
    if args.fail2ban_runs < 1 or args.ours_runs < 1 or args.lines < 1:
        parser.error("run counts and --lines must be at least 1")
    if args.quick:
        args.lines = QUICK_LINES
    if args.json_out is None:
        name = "filter_speed_quick.json" if args.quick else "filter_speed.json"
        args.json_out = BENCH_DIR / "results" / name
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fail2ban = shlex.split(args.fail2ban_cmd)
    if shutil.which(fail2ban[0]) is None:
        print(
            f"error: {fail2ban[0]} not found: run bench/run.sh (it installs Debian's fail2ban) "
            "or apt-get install fail2ban",
            file=sys.stderr,
        )
        return 2
    benches = [b for b in BENCHMARKS if b.name in args.filter_names]
    for bench in benches:
        if not bench.filter_path.exists():
            print(f"error: filter {bench.filter_path} is missing (../shared beside the repository)", file=sys.stderr)
            return 2

    ours: list[str] | None = None
    if not args.fail2ban_only:
        if args.ours_cmd:
            ours = shlex.split(args.ours_cmd)
        else:
            ours, note = default_ours_command()
            if note:
                print(f"note: {note}", flush=True)

    logs = genlogs.ensure_logs(args.cache_dir, args.lines)
    out_dir = args.cache_dir / "out"
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores", flush=True)

    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for bench in benches:
        entry = logs[bench.log_kind]
        log = Path(str(entry["path"]))
        lines = int(str(entry["lines"]))
        print(f"\n{bench.name}: {relative(log)} ({lines:,} lines) with {relative(bench.filter_path)}", flush=True)
        warm_page_cache(log)
        theirs = run_tool("fail2ban", fail2ban, bench, log, args.fail2ban_runs, out_dir)
        row: dict[str, Any] = {
            "filter": bench.name,
            "filter_path": relative(bench.filter_path),
            "log": log.name,
            "log_sha256": entry["sha256"],
            "lines": lines,
            "generator_counts": entry["expected"],
            "fail2ban": theirs.summary(lines),
            "ours": None,
            "ratio": None,
            "cpu_ratio": None,
            "agree": None,
        }
        rows.append(row)
        if not theirs.ok:
            problems.append(f"ERROR {bench.name}: fail2ban-regex failed (see {theirs.best.output})")
            continue
        assert theirs.best.counts is not None
        if not agrees_with_generator(theirs.best.counts, entry["expected"]):
            # not fatal: the generator's labels are a third opinion, fail2ban is the reference
            print(
                f"  note: fail2ban's counts {asdict(theirs.best.counts)} differ from the generator's "
                f"labels {entry['expected']}",
                flush=True,
            )
        if ours is None:
            continue
        mine = run_tool("ours", ours, bench, log, args.ours_runs, out_dir, ours_env())
        row["ours"] = mine.summary(lines)
        if not mine.ok:
            problems.append(f"ERROR {bench.name}: our filtertest failed (see {mine.best.output})")
            continue
        assert mine.best.counts is not None
        found = compare(bench.name, theirs.best.counts, mine.best.counts)
        problems += found
        row["agree"] = not found
        row["ratio"] = round(theirs.best.wall / mine.best.wall, 2)
        row["cpu_ratio"] = round(theirs.best.cpu / mine.best.cpu, 2) if mine.best.cpu else None

    print("\n" + format_table(rows))
    report = {
        "benchmark": "filter_speed",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lines_per_log": args.lines,
        "machine": machine_info(),
        "fail2ban": fail2ban_version(fail2ban),
        "status": "ok" if not problems else "mismatch" if any("MISMATCH" in p for p in problems) else "error",
        "problems": problems,
        "results": rows,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {relative(args.json_out)}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
