"""Replay: what a jail's settings (edited or not) would have banned in its existing log.

`run_replay(run_id)` is the whole job of one `ReplayRun` (bans.tasks.replay_jail calls it): claim
the run with a conditional UPDATE, read the jail's log files (the rotated `.1` file first) through
the same compiled filter the watchers use, count the failures in log time with bans.policy exactly
as the live jail counts them (the global ignore list and ignoreip, maxretry within findtime,
bantime.increment), and compare the bans it finds with the Ban rows the live jail created over the
same period. Progress (bytes read) is written to the run about every half second, for the page's
progress bar.

Nothing here touches the live counting (Tally, Failure) or the firewall.
"""

from __future__ import annotations

import codecs
import datetime as dt
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from bans import dispatch, hostaddrs, policy, services
from bans.models import Ban, ReplayRun
from jails import ignores
from jails import services as jail_services
from jails.access import audit
from jails.engine.errors import EngineError
from jails.engine.filter import CompiledFilter
from jails.engine.guard import Watchdog
from jails.logpaths import expand_logpaths
from jails.models import Jail

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 0.5
READ_BLOCK_BYTES = 1 << 20
# A replay keeps every failure (time, address, lines) in memory to sort them across files; past
# this many it stops with a message rather than exhaust the worker.
MAX_FAILURES = 1_000_000
# Networks kept in results and comparison (the summary counts all of them).
ROWS_KEPT = 2000
EVIDENCE_KEPT = 3
# A RUNNING run whose worker has not reported for this long was lost (a killed worker): it may be
# claimed again when its task is redelivered.
LOST_AFTER = dt.timedelta(seconds=60)
# Live bans come a moment after the failure that earned them (the watcher's read, the transaction).
LIVE_BAN_GRACE = dt.timedelta(minutes=5)
OVERRIDABLE = ("maxretry", "findtime", "bantime", "filter_options", "failregex")


class ReplayError(Exception):
    """Why a replay cannot run (no log file, a filter that does not compile...), for the page."""


# --- the parameters: the jail's settings with the admin's overrides ---------------------------------


def effective_parameters(jail: Jail, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a replay runs with, as JSON: the jail's, replaced by `overrides` where given;
    its ignore lists as they stand when the replay starts (the global one and the jail's own)."""
    lists = ignores.of_jail(jail)
    options = {str(k): str(v) for k, v in (jail.filter_options or {}).items()}
    options.update({str(k): str(v) for k, v in (overrides.get("filter_options") or {}).items()})
    return {
        "jail": jail.name,
        "filter": jail.filter.name,
        "filter_options": options,
        "failregex": overrides.get("failregex") or "",
        "maxretry": int(overrides.get("maxretry") or jail.maxretry),
        "findtime": int(overrides.get("findtime") or jail.findtime),
        "bantime": int(overrides.get("bantime") or jail.bantime),
        "maxmatches": jail.maxmatches,
        "ignoreip": list(lists.own),
        "global_ignoreip": list(lists.global_entries),
        "ignoreself": jail.ignoreself,
        "increment": jail.bantime_increment,
    }


def compile_filter(jail: Jail, parameters: Mapping[str, Any]) -> CompiledFilter:
    """The jail's filter as watchers.services compiles it, with the replay's options and failregex.

    A failregex override is passed as a filter option, as fail2ban lets a jail pass one
    (`filter = sshd[failregex=...]`): it replaces the filter's own failregex lines.
    """
    options = dict(parameters["filter_options"])
    if parameters.get("failregex"):
        options["failregex"] = parameters["failregex"]
    definition = jail_services.load_definition(jail.filter.name, options)
    return CompiledFilter.from_definition(definition, logtimezone=jail.logtimezone or None,
                                          datepattern=jail.datepattern or None, maxlines=jail.maxlines,
                                          use_dns="no" if jail.usedns == Jail.UseDns.NO else "yes")


def log_files(jail: Jail) -> list[str]:
    """The files a replay reads, each current file after its rotated `.1` (older lines first)."""
    if jail.backend == Jail.Backend.SYSTEMD:
        raise ReplayError("this jail reads the systemd journal; a replay reads log files only")
    found: list[str] = []
    for path in expand_logpaths(jail.logpath):
        rotated = path + ".1"
        if os.path.isfile(rotated) and rotated not in found:
            found.append(rotated)
        if path not in found:
            found.append(path)
    if not found:
        raise ReplayError(f"no log file matches {' '.join(jail.logpath) or '(no logpath)'}")
    return found


# --- the counting: bans.policy over failures in log time ------------------------------------------


@dataclass(frozen=True)
class WouldBan:
    network: str
    at: float
    bantime: int  # seconds, -1 permanent
    count: int  # the failure count that reached maxretry
    evidence: tuple[str, ...] = ()


@dataclass
class Simulation:
    """A jail's counting, fed failures in time order; time is the log's, not the clock's.

    The same steps as bans.services.record_failures + count_failure: an address the jail ignores is
    not counted; policy.add_failure counts it; reaching maxretry bans it unless it is banned already
    (its tally is dropped either way), for policy.next_bantime with its earlier bans in this replay
    within services.INCREMENT_MEMORY. Deliberate difference: bantime.rndtime adds no jitter here, so
    a replay is repeatable.
    """

    maxretry: int
    findtime: int
    bantime: int
    maxmatches: int | None
    increment: policy.IncrementSettings
    ignore: Callable[[str], str | None]
    bans: list[WouldBan] = field(default_factory=list)
    ignored: int = 0
    skipped: int = 0
    counted: int = 0
    _clock: float = -math.inf
    _tallies: dict[str, policy.Tally] = field(default_factory=dict)
    _banned_until: dict[str, float] = field(default_factory=dict)
    _history: dict[str, list[float]] = field(default_factory=dict)

    def feed(self, host: str, when: float, lines: Sequence[str] = ()) -> WouldBan | None:
        address = services.parse_address(host)
        if address is None:
            self.skipped += 1
            return None
        if self.ignore(address) is not None:
            self.ignored += 1
            return None
        self.counted += 1
        self._clock = now = max(self._clock, when)
        event = policy.FailureEvent(address=address, time=when, attempts=1, line="\n".join(lines))
        tally, ban_now = policy.add_failure(self._tallies.get(address), event, findtime=self.findtime,
                                            maxretry=self.maxretry, maxmatches=self.maxmatches, now=now)
        if tally is None or not ban_now:
            self._remember(address, tally)
            return None
        self._tallies.pop(address, None)  # fail2ban forgets a banned address's failures
        return self._ban(services.network_of(address), tally, now)

    def _remember(self, address: str, tally: policy.Tally | None) -> None:
        if tally is None:
            self._tallies.pop(address, None)
        else:
            self._tallies[address] = tally

    def _ban(self, network: str, tally: policy.Tally, now: float) -> WouldBan | None:
        if self._banned_until.get(network, -math.inf) > now:
            return None  # already banned: a late failure changes nothing (services.create_jail_ban)
        memory = now - services.INCREMENT_MEMORY.total_seconds()
        earlier = sum(1 for at in self._history.get(network, []) if at >= memory)
        bantime = policy.next_bantime(self.bantime, earlier, self.increment, random=lambda: 0.0)
        ban = WouldBan(network=network, at=now, bantime=bantime, count=tally.count,
                       evidence=tuple(tally.matches[-EVIDENCE_KEPT:]))
        self._banned_until[network] = math.inf if bantime == -1 else now + bantime
        self._history.setdefault(network, []).append(now)
        self.bans.append(ban)
        return ban


def simulation_for(jail: Jail, parameters: Mapping[str, Any], own_addresses: Sequence[str]) -> Simulation:
    increment = services.increment_settings(jail)
    own = list(own_addresses) if parameters["ignoreself"] else []
    # (a run started before the global list existed has no "global_ignoreip": none applied then)
    listed = policy.IgnoreList(list(parameters["ignoreip"]), own, None,
                               global_entries=list(parameters.get("global_ignoreip", [])))

    def ignore(address: str) -> str | None:
        return listed.reason(address)

    return Simulation(maxretry=parameters["maxretry"], findtime=parameters["findtime"],
                      bantime=parameters["bantime"], maxmatches=parameters["maxmatches"],
                      increment=increment, ignore=ignore)


# --- reading the log ------------------------------------------------------------------------------


@dataclass
class Found:
    """A failure as read: its time, who, and its lines (kept as evidence)."""

    time: float
    host: str
    lines: tuple[str, ...]


def codec_of(encoding: str) -> str:
    name = "utf-8" if encoding.strip().lower() in ("", "auto") else encoding.strip()
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ReplayError(f"unknown log encoding {encoding!r}") from None


def read_blocks(path: str, block: int | None = None) -> Iterator[tuple[bytes, int]]:
    """(complete lines, bytes consumed) blocks of a file; the last line may lack its newline."""
    block = block or READ_BLOCK_BYTES
    with open(path, "rb") as handle:
        rest = b""
        while chunk := handle.read(block):
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:
                yield data[:cut], len(chunk)
            else:
                yield b"", len(chunk)
        if rest:
            yield rest + b"\n", 0


@dataclass
class Progress:
    """Writes the run's progress at most every PROGRESS_EVERY_SECONDS (and on demand)."""

    run_id: int
    clock: Callable[[], float] = time.monotonic
    bytes_read: int = 0
    lines_read: int = 0
    failures: int = 0
    _last: float = -math.inf

    def advance(self, size: int, lines: int, failures: int) -> None:
        self.bytes_read += size
        self.lines_read += lines
        self.failures += failures
        if self.clock() - self._last >= PROGRESS_EVERY_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._last = self.clock()
        ReplayRun.objects.filter(pk=self.run_id).update(
            bytes_read=self.bytes_read, lines_read=self.lines_read, failures_found=self.failures,
            heartbeat_at=timezone.now())


def read_failures(flt: CompiledFilter, paths: Sequence[str], codec: str, progress: Progress,
                  now: float) -> list[Found]:
    """Every failure in the files, through the engine, one file after the other."""
    found: list[Found] = []
    with Watchdog(settings.IPS_REGEX_BUDGET_SECONDS) as watchdog:
        for path in paths:
            flt.reset()  # a multi-line session does not run on from one file into the next
            for data, size in read_blocks(path):
                lines = data.decode(codec, "replace").replace("\r\n", "\n").split("\n")[:-1] if data else []
                before = len(found)
                for line in lines:
                    watchdog.step()
                    for failure in flt.process_line(line, now).failures:
                        if not failure.nofail and failure.host:
                            found.append(Found(failure.time, failure.host, tuple(failure.lines)))
                if len(found) > MAX_FAILURES:
                    raise ReplayError(f"more than {MAX_FAILURES:,} failures: too many to replay at once")
                with watchdog.paused():  # a slow database write is not a runaway regex
                    progress.advance(size, len(lines), len(found) - before)
    return found


# --- the comparison with the live jail -------------------------------------------------------------


def aware(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def live_bans(jail: Jail, first: dt.datetime, last: dt.datetime) -> list[Ban]:
    """The bans the live jail made over the replayed period (not manual ones)."""
    return list(Ban.objects.filter(Q(jail=jail) | Q(jail_name=jail.name), origin=Ban.Origin.JAIL,
                                   started_at__gte=first, started_at__lte=last + LIVE_BAN_GRACE)
                .order_by("started_at"))


def grouped_results(bans: Sequence[WouldBan]) -> list[dict[str, Any]]:
    """Per network, in order of its first ban: each would-be ban with when, how long, how many."""
    by_network: dict[str, list[WouldBan]] = {}
    for ban in bans:
        by_network.setdefault(ban.network, []).append(ban)
    return [{"network": network, "first_at": aware(items[0].at).isoformat(), "count": len(items),
             "bans": [{"at": aware(b.at).isoformat(), "bantime": b.bantime, "count": b.count,
                       "evidence": list(b.evidence)} for b in items]}
            for network, items in by_network.items()]


def compare(results: Sequence[Mapping[str, Any]], live: Sequence[Ban]) -> list[dict[str, Any]]:
    """One row per network: what the replay would have done, what the live jail did, and the verdict
    ("both", "replay": would have banned but did not, "live": did ban but would not have)."""
    did: dict[str, list[Ban]] = {}
    for ban in live:
        did.setdefault(ban.network, []).append(ban)
    rows = []
    for item in results:
        theirs = did.pop(item["network"], [])
        rows.append({"network": item["network"], "verdict": "both" if theirs else "replay",
                     "replay": {"first_at": item["first_at"], "count": item["count"],
                                "bantime": item["bans"][0]["bantime"]},
                     "live": live_summary(theirs)})
    for network, theirs in did.items():
        rows.append({"network": network, "verdict": "live", "replay": None, "live": live_summary(theirs)})
    order = {"replay": 0, "live": 1, "both": 2}
    rows.sort(key=lambda row: (order[row["verdict"]], first_of(row)))
    return rows


def live_summary(bans: Sequence[Ban]) -> dict[str, Any] | None:
    if not bans:
        return None
    return {"first_at": bans[0].started_at.isoformat(), "count": len(bans), "bantime": bans[0].bantime,
            "ban_id": bans[0].pk}


def first_of(row: Mapping[str, Any]) -> str:
    side = row["replay"] or row["live"]
    return str(side["first_at"])


# --- the job ---------------------------------------------------------------------------------------


REPLAY_TASK = "bans.tasks.replay_jail"


def start_replay(jail: Jail, overrides: Mapping[str, Any], actor: audit.Actor) -> ReplayRun:
    """Record a run, audit it, and queue its task once the row is committed (the worker must find it)."""
    with transaction.atomic():
        run = ReplayRun.objects.create(jail=jail, overrides=dict(overrides), created_by=actor.user)
        audit.record(actor, "replay.start", run, after={"jail": jail.name, "overrides": run.overrides})
        dispatch.registered_task(REPLAY_TASK).delay_on_commit(run.pk)
    return run


def claim(run_id: int, now: dt.datetime) -> bool:
    """Take the run for this worker: a QUEUED one, or a RUNNING one whose worker was lost."""
    lost = Q(state=ReplayRun.State.RUNNING, heartbeat_at__lt=now - LOST_AFTER)
    return bool(ReplayRun.objects.filter(Q(state=ReplayRun.State.QUEUED) | lost, pk=run_id).update(
        state=ReplayRun.State.RUNNING, started_at=now, heartbeat_at=now, bytes_read=0, lines_read=0,
        failures_found=0, error=""))


def run_replay(run_id: int, *, own_addresses: Sequence[str] | None = None,
               clock: Callable[[], float] = time.monotonic) -> str:
    """Do one replay run; returns its final state ("done", "failed", or "skipped" when not claimed)."""
    if not claim(run_id, timezone.now()):
        return "skipped"
    run = ReplayRun.objects.select_related("jail", "jail__filter").get(pk=run_id)
    try:
        finish(run, own_addresses, clock)
    except (ReplayError, EngineError, OSError, ValueError) as exc:
        fail(run, str(exc))
    except Exception as exc:  # the page must say it failed, whatever happened
        log.exception("replay %s failed", run_id)
        fail(run, f"unexpected error: {exc}")
        raise
    return str(ReplayRun.objects.values_list("state", flat=True).get(pk=run_id))


def finish(run: ReplayRun, own_addresses: Sequence[str] | None, clock: Callable[[], float]) -> None:
    jail = run.jail
    parameters = effective_parameters(jail, run.overrides)
    flt = compile_filter(jail, parameters)
    paths = log_files(jail)
    total = sum(os.path.getsize(path) for path in paths)
    ReplayRun.objects.filter(pk=run.pk).update(parameters=parameters, files=paths, bytes_total=total)
    progress = Progress(run.pk, clock=clock)
    found = read_failures(flt, paths, codec_of(jail.logencoding), progress, now=time.time())
    progress.flush()
    found.sort(key=lambda item: item.time)  # several files: one timeline
    simulation = simulation_for(jail, parameters,
                                hostaddrs.addresses() if own_addresses is None else own_addresses)
    for item in found:
        simulation.feed(item.host, item.time, item.lines)
    results = grouped_results(simulation.bans)
    first = aware(found[0].time) if found else None
    last = aware(found[-1].time) if found else None
    comparison = compare(results, live_bans(jail, first, last) if first and last else [])
    summary = {verdict: sum(1 for row in comparison if row["verdict"] == verdict)
               for verdict in ("both", "replay", "live")}
    summary.update(networks=len(results), bans=len(simulation.bans), counted=simulation.counted,
                   ignored=simulation.ignored, skipped=simulation.skipped, truncated=len(comparison) > ROWS_KEPT)
    ReplayRun.objects.filter(pk=run.pk).update(
        state=ReplayRun.State.DONE, finished_at=timezone.now(), bytes_read=total, first_time=first, last_time=last,
        results=results[:ROWS_KEPT], comparison=comparison[:ROWS_KEPT], summary=summary)


def fail(run: ReplayRun, message: str) -> None:
    ReplayRun.objects.filter(pk=run.pk).update(state=ReplayRun.State.FAILED, finished_at=timezone.now(),
                                               error=message[:2000])
