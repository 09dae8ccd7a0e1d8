"""The filter tester behind the panel's tester page: fail2ban-regex, line by line, for people.

A thin adapter over the engine's public functions (jails.engine is plain Python, shared with the
CLI and the workers): it builds a definition from a stored filter, a pasted .conf or raw regexes,
runs each line through `CompiledFilter.process_line` under the regex watchdog, and keeps for every
line what a person wants to see: matched, ignored or missed, which regex, the date it read, the
captured fields, and where in the line the address it blames sits (for the highlight).

Bounded: at most MAX_LINES lines / MAX_BYTES of text, a time budget per line (MAX_LINE_SECONDS, or
less when IPS_REGEX_BUDGET_MS says so) and per request (MAX_SECONDS), and a stop after a few
runaway lines, so even a regex that backtracks catastrophically on every pasted line gets its
answer within 2 seconds and never holds a worker.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import SafeString

from jails import services
from jails.access.audit import escape_controls
from jails.engine import ini
from jails.engine.definition import FilterDefinition, RegexLine
from jails.engine.errors import EngineError, FilterError, RegexTimeout
from jails.engine.filter import CompiledFilter, Failure, LineResult
from jails.engine.guard import DANGEROUS, Watchdog, lint_regex
from jails.engine.regex import CompiledRegex, compile_failregex, compile_regex
from jails.models import Filter

MAX_LINES = 2000
MAX_BYTES = 1 << 20
# The whole run stops after this long (the rest is reported as not tested), and after this many
# lines whose regex ran out of time: one catastrophic regex must not hold a web worker. One line may
# take at most MAX_LINE_SECONDS (the watchdog notices within an eighth more), and the deadline is
# checked after each line, so the lines take at most about MAX_SECONDS + MAX_LINE_SECONDS * 1.125 =
# 1.5 s in all, leaving room within the page's 2 s for compiling, linting and rendering. Lines a
# regex handles in microseconds are unaffected; one that needs a third of a second is reported.
MAX_SECONDS = 1.1
MAX_LINE_SECONDS = 0.3
MAX_TIMEOUTS = 3
TAIL_MAX_LINES = 500
TAIL_READ_BYTES = 1 << 20
# Never read for "load the last lines", whatever a jail's logpath says (an admin may point one at
# any file, and the web process may run as root): system and credential files. The panel's own
# directory (its database, secret key, settings) is refused too, except its own login log.
PRIVATE_ROOTS = ("/proc", "/sys", "/dev", "/etc", "/root", "/boot", "/run")

PASTED_NAME = "pasted-filter"
# The groups that name the culprit, in the order the highlight prefers them (an address over an id).
HOST_GROUPS = ("ip4", "ip6", "dns", "fid")
# Groups that are the engine's bookkeeping, or the culprit itself: not shown as "captured".
HIDDEN_FIELDS = frozenset({*HOST_GROUPS, "cidr", "mlfid", "ip", "users"})


class TesterRefused(Exception):
    """The input cannot be tested as given (too large, unreadable log...): say why, test nothing."""


@dataclass
class RegexWarning:
    kind: str  # "failregex", "prefregex" or "ignoreregex"
    number: int  # 1-based, as fail2ban-regex numbers them
    pattern: str
    messages: list[str]

    @property
    def dangerous(self) -> bool:
        """Can it backtrack catastrophically (what a filter save refuses without the override)?"""
        return any(message.startswith(DANGEROUS) for message in self.messages)


@dataclass
class LineOutcome:
    number: int  # 1-based line number in the input
    text: str
    status: str  # matched, ignored, missed, skipped (comment/empty), timeout, untested
    regexes: list[int] = field(default_factory=list)  # 1-based failregexes that matched
    ignore_regex: int | None = None  # 1-based ignoreregex that matched
    host: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    date_template: str | None = None
    date_time: dt.datetime | None = None
    host_span: tuple[int, int] | None = None
    timeout: str | None = None
    reason: str = ""  # why an ignored line was not counted (the ignoreregex column says which one)

    @property
    def html(self) -> SafeString:
        """The line with the blamed address in <mark class="host">: escaped piece by piece."""
        if self.host_span is None:
            return format_html("{}", escape_controls(self.text))
        start, end = self.host_span
        return format_html(
            '{}<mark class="host">{}</mark>{}',
            escape_controls(self.text[:start]),
            escape_controls(self.text[start:end]),
            escape_controls(self.text[end:]),
        )


@dataclass
class TestReport:
    label: str
    prefregex: str | None
    failregex: list[str]
    ignoreregex: list[str]
    datepattern: str | None
    lines: list[LineOutcome] = field(default_factory=list)
    fail_hits: list[int] = field(default_factory=list)
    ignore_hits: list[int] = field(default_factory=list)
    date_hits: list[tuple[str, int]] = field(default_factory=list)
    warnings: list[RegexWarning] = field(default_factory=list)
    stopped: str = ""  # why the run stopped before the end, if it did
    guarded: bool = True  # False: the regex watchdog could not be armed in this process

    def count(self, status: str) -> int:
        return sum(1 for line in self.lines if line.status == status)

    @property
    def tested(self) -> int:
        return sum(1 for line in self.lines if line.status not in ("skipped", "untested"))

    @property
    def fail_rows(self) -> list[tuple[int, int, str]]:
        return [(i + 1, n, p) for i, (n, p) in enumerate(zip(self.fail_hits, self.failregex, strict=True))]

    @property
    def ignore_rows(self) -> list[tuple[int, int, str]]:
        return [(i + 1, n, p) for i, (n, p) in enumerate(zip(self.ignore_hits, self.ignoreregex, strict=True))]


@dataclass
class Settings:
    """How to compile: what a jail adds to its filter (or the tester's overrides)."""

    datepattern: str | None = None
    logtimezone: str | None = None
    maxlines: int | None = None
    use_dns: str = "no"


# --- where the filter comes from ----------------------------------------------------------------


def stored_definition(name: str, options: Mapping[str, str] | None = None) -> FilterDefinition:
    if not Filter.objects.filter(name=name).exists():
        raise FilterError(f"no filter named {name!r}")
    return services.load_definition(name, options)


def pasted_definition(conf: str, local: str = "", options: Mapping[str, str] | None = None) -> FilterDefinition:
    """A filter .conf pasted in the page; its includes (common.conf...) come from the stored filters."""
    files = services.filter_files()
    files[f"filter.d/{PASTED_NAME}.conf"] = conf
    files.pop(f"filter.d/{PASTED_NAME}.local", None)
    if local:
        files[f"filter.d/{PASTED_NAME}.local"] = local
    return ini.load_filter(ini.MemoryLoader(files), PASTED_NAME, options)


def raw_definition(failregex: str, ignoreregex: str = "", prefregex: str = "") -> FilterDefinition:
    """Regexes typed in the page, one per line (like fail2ban-regex's raw FILTER argument)."""
    fails = tuple(RegexLine(p, "failregex", n) for n, p in enumerate(failregex.splitlines(), 1) if p.strip())
    ignores = tuple(RegexLine(p, "ignoreregex", n) for n, p in enumerate(ignoreregex.splitlines(), 1) if p.strip())
    if not fails:
        raise FilterError("write at least one failregex (with a host tag such as <HOST>)")
    pref = RegexLine(prefregex, "prefregex", 1) if prefregex.strip() else None
    return FilterDefinition("raw regex", fails, ignores, pref, sources=("raw regex",))


# --- the input ----------------------------------------------------------------------------------


def split_input(text: str) -> list[str]:
    """The pasted text as lines, refused (TesterRefused) beyond MAX_LINES / MAX_BYTES."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise TesterRefused(f"the log text is larger than {MAX_BYTES // 1024} KB: test at most {MAX_LINES:,} lines "
                            "at a time (or use `manage.py filtertest` on the whole file)")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) > MAX_LINES:
        raise TesterRefused(f"{len(lines):,} lines: the tester takes at most {MAX_LINES:,} at a time "
                            "(use `manage.py filtertest` for a whole file)")
    return lines


def tail_lines(paths: Sequence[str], count: int) -> tuple[str, list[str]]:
    """The last `count` lines of the most recently written of `paths`: (path, lines)."""
    count = max(1, min(count, TAIL_MAX_LINES))
    readable = [p for p in paths if os.path.isfile(p)]
    if not readable:
        raise TesterRefused("none of this jail's log files exists yet")
    try:
        path = max(readable, key=lambda p: os.stat(p).st_mtime)
        # non-blocking: a FIFO put in the log's place must not hang the request
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TesterRefused(f"cannot read the jail's log: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        # checked on the file opened, not on its name: a link swapped in meanwhile changes nothing
        refused = private_file_reason(opened_path(fd, path))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            refused = f"{path} is not a regular file"
        if refused:
            raise TesterRefused(refused)
        try:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - TAIL_READ_BYTES))
            data = handle.read(TAIL_READ_BYTES)
        except OSError as exc:
            raise TesterRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    text = data.decode("utf-8", "replace")
    lines = text.splitlines()
    if size > TAIL_READ_BYTES and lines:
        lines = lines[1:]  # the first one was cut in the middle
    return path, lines[-count:]


def opened_path(fd: int, path: str) -> str:
    """The path of the file behind an open descriptor (Linux), else the name it was opened by."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return path


def private_file_reason(path: str) -> str | None:
    """Why the tester will not show this file (symlinks resolved), or None."""
    real = os.path.realpath(path)
    if real == os.path.realpath(settings.IPS_PANEL_LOG):
        return None
    for root in [*PRIVATE_ROOTS, str(settings.BASE_DIR)]:
        if real.startswith(os.path.realpath(root).rstrip("/") + "/"):
            return f"{path} is not a log file the tester shows (it is under {root})"
    for database in database_files():
        if real.startswith(os.path.realpath(database)):  # the file, its -wal, -shm and -journal
            return f"{path} is not a log file the tester shows (it is the panel's database)"
    return None


def database_files() -> list[str]:
    """The SQLite database files (they hold sessions and password hashes), wherever they live."""
    return [str(database["NAME"]) for database in settings.DATABASES.values()
            if "sqlite" in str(database.get("ENGINE", "")) and str(database.get("NAME") or "").startswith("/")]


# --- running ------------------------------------------------------------------------------------


def compile_definition(definition: FilterDefinition, options: Settings) -> CompiledFilter:
    return CompiledFilter.from_definition(
        definition,
        logtimezone=options.logtimezone or None,
        datepattern=options.datepattern or None,
        maxlines=options.maxlines,
        check_all=True,  # as fail2ban-regex: show every failregex that matches a line
        use_dns=options.use_dns,
    )


def lint(definition: FilterDefinition) -> list[RegexWarning]:
    pref = definition.prefregex.pattern if definition.prefregex is not None else ""
    return lint_patterns(pref, [r.pattern for r in definition.failregex], [r.pattern for r in definition.ignoreregex])


def lint_patterns(prefregex: str, failregex: Sequence[str], ignoreregex: Sequence[str]) -> list[RegexWarning]:
    """guard.lint_regex for every regex of a filter. With a prefregex the failregexes run on its
    <F-CONTENT>, so their own missing ^ is no risk (the prefregex anchors the line)."""
    warnings: list[RegexWarning] = []
    has_pref = bool(prefregex.strip())
    if has_pref:
        messages = lint_regex(prefregex)
        if messages:
            warnings.append(RegexWarning("prefregex", 1, prefregex, messages))
    for number, pattern in enumerate(failregex, 1):
        messages = lint_regex(pattern)
        if has_pref:
            messages = [m for m in messages if not m.startswith("not anchored")]
        if messages:
            warnings.append(RegexWarning("failregex", number, pattern, messages))
    for number, pattern in enumerate(ignoreregex, 1):
        # an ignoreregex blames nobody: only its backtracking is a risk
        messages = [m for m in lint_regex(pattern) if m.startswith(DANGEROUS)]
        if messages:
            warnings.append(RegexWarning("ignoreregex", number, pattern, messages))
    return warnings


def run(definition: FilterDefinition, lines: Sequence[str], options: Settings | None = None,
        now: float | None = None, label: str = "") -> TestReport:
    """Every line through the filter; raises EngineError when the filter does not compile."""
    options = options or Settings()
    cf = compile_definition(definition, options)
    report = TestReport(
        label=label or definition.name,
        prefregex=cf.prefregex_lines[0].pattern if cf.prefregex_lines else None,
        failregex=[r.pattern for r in cf.failregex_lines],
        ignoreregex=[r.pattern for r in cf.ignoreregex_lines],
        datepattern=cf.datepattern,
        fail_hits=[0] * len(cf.failregex_lines),
        ignore_hits=[0] * len(cf.ignoreregex_lines),
        warnings=lint(definition),
    )
    locator = HostLocator(definition, cf, options)
    clock = now if now is not None else time.time()
    deadline = time.monotonic() + MAX_SECONDS
    timeouts = 0
    with Watchdog(line_budget()) as watchdog:
        report.guarded = watchdog.active
        for number, line in enumerate(lines, 1):
            if report.stopped:
                report.lines.append(LineOutcome(number, line, "untested"))
                continue
            if not line.strip() or line.startswith("#"):
                report.lines.append(LineOutcome(number, line, "skipped"))  # fail2ban-regex skips these
                continue
            watchdog.step()
            try:
                result = cf.process_line(line, clock)
            except RegexTimeout as exc:  # landed outside a regex: the same outcome
                result = LineResult(timed_out=str(exc))
            try:
                outcome = describe(number, line, result, report, locator)
            except RegexTimeout as exc:  # the highlight's own match ran out of time
                outcome = LineOutcome(number, line, "timeout", timeout=str(exc))
            report.lines.append(outcome)
            if outcome.status == "timeout":
                timeouts += 1
                if timeouts >= MAX_TIMEOUTS:
                    report.stopped = f"stopped after {timeouts} lines on which a regex ran out of time"
            if not report.stopped and time.monotonic() > deadline:
                report.stopped = f"stopped after {MAX_SECONDS:g} seconds"
    report.date_hits = [(name, n) for name, n in (cf.date_template_hits() or []) if n]
    return report


def line_budget() -> float:
    """Seconds one line may take in the tester: the workers' budget, at most MAX_LINE_SECONDS."""
    return min(float(settings.IPS_REGEX_BUDGET_SECONDS), MAX_LINE_SECONDS)


def describe(number: int, line: str, result: LineResult, report: TestReport, locator: HostLocator) -> LineOutcome:
    """One line's outcome, counted into the report the way fail2ban-regex counts."""
    outcome = LineOutcome(number, line, "missed")
    if result.date is not None:
        outcome.date_template = str(result.date.template)
        if result.date.epoch is not None:
            outcome.date_time = dt.datetime.fromtimestamp(result.date.epoch, tz=dt.UTC)
    if result.timed_out is not None:
        outcome.status, outcome.timeout = "timeout", result.timed_out
        return outcome
    for failure in result.failures:
        report.fail_hits[failure.regex_index] += 1
    if result.ignore_index is not None:
        report.ignore_hits[result.ignore_index] += 1
        outcome.ignore_regex = result.ignore_index + 1
    real = [f for f in result.failures if not f.nofail]
    outcome.regexes = sorted({f.regex_index + 1 for f in real})
    if result.ignored:
        outcome.status = "ignored"
        outcome.reason = ignored_reason(result, bool(real))
    elif real:
        outcome.status = "matched"
    else:
        outcome.reason = missed_reason(result, report)
    if real:
        first = real[0]
        outcome.host = first.host
        outcome.fields = shown_fields(first)
        outcome.host_span = locator.span(line, result, first)
    return outcome


def missed_reason(result: LineResult, report: TestReport) -> str:
    """Why a line was not a failure: no failregex matched it (after the prefregex, when there is one)."""
    said = "neither the prefregex nor a failregex matched" if report.prefregex else "no failregex matched"
    return said if result.date is not None else f"{said}; no date was recognised in it either"


def ignored_reason(result: LineResult, real: bool) -> str:
    """Why fail2ban counts this line as ignored, in its own terms."""
    if result.ignore_index is not None:
        return "an ignoreregex matched"
    if any(f.fields.get("mlfid") for f in result.failures) or not result.failures:
        return "part of a multi-line session (<F-MLFID>): counted when the session ends in a failure"
    if not real:
        return "only an <F-NOFAIL> part matched: a line like this is not a failure by itself"
    return "a failregex matched an <F-NOFAIL> part: fail2ban does not count the line"


def shown_fields(failure: Failure) -> dict[str, str]:
    shown: dict[str, str] = {}
    for key, value in failure.fields.items():
        # cond_*: named groups fail2ban's filters use for regex conditionals, not captured fields
        if key in HIDDEN_FIELDS or key.startswith("cond_") or value is None or value == "":
            continue
        shown[key] = ", ".join(map(str, value)) if isinstance(value, list | tuple | set) else str(value)
    if "ip" in failure.fields and failure.host != failure.fields["ip"]:
        shown["address"] = str(failure.fields["ip"])
    return shown


class HostLocator:
    """Where the blamed host sits in the original line.

    The engine reports what it captured, not where: run the matching failregex again (compiled with
    the engine's public compile functions) on the text the engine matched (the line without its
    date, or the prefregex's <F-CONTENT>) and map the group's span back into the line. When that
    cannot be done (multi-line buffers, a host captured by the prefregex) the captured text is
    looked up in the line instead, outside the date.
    """

    def __init__(self, definition: FilterDefinition, cf: CompiledFilter, options: Settings) -> None:
        self.multiline = cf.maxlines > 1
        self.fails: list[CompiledRegex] = []
        self.pref: CompiledRegex | None = None
        if self.multiline:
            return
        try:
            if definition.prefregex is not None and definition.prefregex.pattern.strip():
                self.pref = compile_regex(definition.prefregex, kind="prefregex", use_dns=options.use_dns)
            self.fails = [compile_failregex(r, prefregex=self.pref, use_dns=options.use_dns)
                          for r in definition.failregex if r.pattern.strip()]
        except EngineError:
            self.fails = []  # compiled fine in the engine; the text search will do

    def span(self, line: str, result: LineResult, failure: Failure) -> tuple[int, int] | None:
        raw = next(((g, str(failure.fields[g])) for g in HOST_GROUPS if failure.fields.get(g)), None)
        if raw is None:
            return None
        cut = (result.date.start, result.date.end) if result.date is not None and result.date.end > \
            result.date.start else (0, 0)
        exact = self._rematch(line, cut, failure.regex_index, raw[0])
        if exact is not None and line[exact[0]:exact[1]] == raw[1]:
            return exact
        return _search_outside(line, raw[1], cut)

    def _rematch(self, line: str, cut: tuple[int, int], index: int, group: str) -> tuple[int, int] | None:
        if self.multiline or index >= len(self.fails):
            return None
        text = line[: cut[0]] + line[cut[1]:] + "\n"
        base = 0
        if self.pref is not None:
            pm = self.pref.regex.search(text)
            if pm is None:
                return None
            if "content" in self.pref.regex.groupindex and pm.group("content"):
                base = pm.start("content")
                text = pm.group("content") + "\n"
        m = self.fails[index].regex.search(text)
        if m is None or group not in self.fails[index].regex.groupindex or m.group(group) is None:
            return None
        start, end = m.span(group)
        return _uncut(start + base, cut, is_end=False), _uncut(end + base, cut, is_end=True)


def _uncut(position: int, cut: tuple[int, int], *, is_end: bool) -> int:
    """A position in the line-without-its-date, as a position in the line (an end right at the
    cut stays before the date; a start there is after it)."""
    after_cut = position > cut[0] if is_end else position >= cut[0]
    return position + (cut[1] - cut[0]) if after_cut else position


def _search_outside(line: str, text: str, cut: tuple[int, int]) -> tuple[int, int] | None:
    """The last occurrence of `text` outside the date span (fail2ban's regexes blame the address
    written last, and filters anchor it at the end)."""
    start = line.rfind(text)
    while start >= 0:
        end = start + len(text)
        if end <= cut[0] or start >= cut[1]:
            return start, end
        start = line.rfind(text, 0, start)
    return None


def failure_summary(report: TestReport) -> dict[str, Any]:
    """The summary counts, fail2ban-regex's "Lines: N lines, I ignored, M matched, X missed"."""
    return {
        "lines": report.tested,
        "matched": report.count("matched"),
        "ignored": report.count("ignored"),
        "missed": report.count("missed"),
        "timeouts": report.count("timeout"),
        "skipped": report.count("skipped"),
        "untested": report.count("untested"),
    }
