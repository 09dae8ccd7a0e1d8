"""What a read left out, and why: counted per source, shown on the jail page, logged once a while.

Nothing an attacker writes may be dropped silently. Every line or failure that the live path
reads but does not match or does not count is counted here under one of REASONS; the counts are
added to the source's running totals (LogSource.skipped) in the read's own transaction, and
`SkipLog` writes one warning per source per LOG_INTERVAL_SECONDS with what was skipped since the
last one (a flood of overlong lines makes one log line a minute, not one per line).

Plain Python, no Django import.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger("watchers.skips")

# reason -> what an admin reads (jail page, jailctl status, the log)
REASONS: dict[str, str] = {
    "long": "lines longer than the line limit (IPS_MAX_LINE_BYTES), skipped whole",
    "timeout": "lines on which a regex ran out of time (IPS_LIVE_REGEX_BUDGET_MS), skipped",
    "encoding": "lines with bytes invalid in the log's encoding (or NUL, or a written U+FFFD), matched with "
                "U+FFFD in their place",
    "unparsable": "failures whose host is not an address we can ban (010.0.0.1, a name without usedns)",
    "stale": "failures older than findtime when read (catching up), not counted",
    "clock": "failures dated more than 60 s from now (clock or time zone?), counted as happening now",
    "dns": "host names that could not be resolved (usedns), not counted",
}
LOG_INTERVAL_SECONDS = 60.0


def describe(counts: Mapping[str, int]) -> list[str]:
    """'3 lines longer than ...' for each reason with a count, in REASONS' order."""
    return [f"{counts[reason]} {REASONS.get(reason, reason)}" for reason in REASONS if counts.get(reason)] + [
        f"{n} {reason}" for reason, n in counts.items() if reason not in REASONS and n]


def added(totals: Mapping[str, int], counts: Mapping[str, int]) -> dict[str, int]:
    """Running totals with this read's counts added (what LogSource.skipped stores)."""
    merged = {reason: int(n) for reason, n in totals.items()}
    for reason, n in counts.items():
        if n:
            merged[reason] = merged.get(reason, 0) + n
    return merged


@dataclass
class SkipLog:
    """One warning per source per interval, with what was skipped since the last one."""

    interval: float = LOG_INTERVAL_SECONDS
    pending: dict[str, Counter[str]] = field(default_factory=dict)
    last_logged: dict[str, float] = field(default_factory=dict)

    def note(self, where: str, counts: Mapping[str, int], now: float | None = None) -> None:
        if any(counts.values()):
            self.pending.setdefault(where, Counter()).update({k: v for k, v in counts.items() if v})
        self.flush(where, time.monotonic() if now is None else now)

    def flush(self, where: str, now: float) -> None:
        waiting = self.pending.get(where)
        if not waiting or now - self.last_logged.get(where, -self.interval) < self.interval:
            return
        log.warning("%s: skipped %s", where, "; ".join(describe(waiting)))
        self.last_logged[where] = now
        del self.pending[where]


SKIP_LOG = SkipLog()
