"""An in-memory FirewallBackend with the rules of the real one, for tests of the bans app.

It plans with bans.firewall's own functions (plan_apply, plan_reconcile), so it refuses and
accepts exactly what NftablesBackend does; only the kernel is missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bans.firewall import nft
from bans.firewall.base import BLOCKLIST, BanEntry, FirewallError, JailRules, ReconcileResult, State
from bans.firewall.nft import IPNetwork
from bans.firewall.planning import ElementPlan, fit_entries, plan_apply, plan_reconcile, rule_specs, widest_first


class RecordingBackend:
    """In memory, same rules as NftablesBackend (the same planning), for tests of the bans app.

    `calls` records every call with its arguments; `fail_next(error)` makes the next call raise it;
    `clock` (seconds, monotonic) drives expiry, so a test can move time by hand;
    `simulate_ruleset_flush()` loses the table, as `nft flush ruleset` would: the next call creates it
    again, filled from `contents` as the real backend does; `generation()` counts the changes.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 contents: Callable[[], Sequence[BanEntry]] | None = None) -> None:
        self.clock = clock
        self.contents = contents
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.jails: dict[str, JailRules] | None = None
        self._expiry: dict[str, dict[IPNetwork, float | None]] = {}
        self._errors: list[FirewallError] = []
        self._generation = 1
        self.commits = 0  # the changes made through this backend (generation() counts anyone's)

    def fail_next(self, error: FirewallError) -> None:
        self._errors.append(error)

    def simulate_ruleset_flush(self) -> None:
        self._expiry = {}
        self._generation += 1

    def generation(self) -> int:
        return self._generation

    def sync_rules(self, jails: Sequence[JailRules]) -> None:
        self._record("sync_rules", tuple(jails))
        rule_specs(jails)  # same validation as the real backend
        self.jails = {jail.name: jail for jail in jails}
        self._ensure_sets()

    def _ensure_sets(self) -> None:
        """Our sets as the last sync_rules() named them; those created anew are filled from `contents`."""
        if self.jails is None:
            return
        names = [BLOCKLIST, *self.jails]
        created = [name for name in names if name not in self._expiry]
        self._expiry = {name: self._expiry.get(name, {}) for name in names}
        if not created:
            return
        self._generation += 1
        self.commits += 1
        if self.contents is not None:
            now = self.clock()
            wanted = [entry for entry in self.contents() if entry.jail in created]
            for entry in fit_entries({}, widest_first(wanted))[0]:
                self._expiry[entry.jail][entry.network] = None if entry.timeout is None else now + entry.timeout

    def apply(self, add: Sequence[BanEntry] = (), remove: Sequence[BanEntry] = ()) -> None:
        self._record("apply", tuple(add), tuple(remove))
        if not add and not remove:
            return
        self._ensure_sets()  # as NftablesBackend puts back what a flush took before writing
        self._carry_out(plan_apply(self._state(), self._known(), add, remove))

    def snapshot(self) -> State:
        self._record("snapshot")
        return self._state()

    def reconcile(self, desired: Sequence[BanEntry]) -> ReconcileResult:
        self._record("reconcile", tuple(desired))
        self._ensure_sets()
        plan, result = plan_reconcile(self._state(), self._known(), desired)
        self._carry_out(plan)
        return result

    def teardown(self) -> None:
        self._record("teardown")
        self.jails = None
        self._expiry = {}

    def _record(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if self._errors:
            raise self._errors.pop(0)

    def _known(self) -> set[str]:
        if self.jails is None:
            raise FirewallError(f"There is no table {nft.FAMILY} ips: call sync_rules() first.", permanent=True)
        return set(self._expiry)

    def _state(self) -> State:
        now = self.clock()
        state: State = {}
        for jail, elements in self._expiry.items():
            for network, expires in list(elements.items()):
                if expires is not None and expires <= now:
                    del elements[network]  # the kernel lifts it by itself
            state[jail] = {network: None if expires is None else max(0, round(expires - now))
                           for network, expires in elements.items()}
        return state

    def _carry_out(self, plan: ElementPlan) -> None:
        now = self.clock()
        self._generation += 1
        self.commits += 1
        for entry in plan.deletes:
            self._expiry[entry.jail].pop(entry.network, None)
        for entry in plan.adds:
            self._expiry[entry.jail][entry.network] = None if entry.timeout is None else now + entry.timeout
