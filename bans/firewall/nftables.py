"""`NftablesBackend`: the FirewallBackend that drives the kernel through libnftables' JSON API, in a
helper process (`nftchild`), under a lock file, with the kernel's errors turned into
FirewallError (`error_from_nft`) and each set's changes spelled as commands (`element_commands`)."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, TypeVar

from bans.firewall import nft
from bans.firewall.base import BanEntry, FirewallError, JailRules, ReconcileResult, State, _Abandoned, _RaceError
from bans.firewall.netlink import nft_generation
from bans.firewall.nft import IPNetwork
from bans.firewall.nftchild import CallTimedOut, ChildGone, NftProcess
from bans.firewall.planning import (
    ElementPlan,
    _jail_of,
    _set_base_of,
    fit_entries,
    plan_apply,
    plan_reconcile,
    rule_specs,
    widest_first,
)

# Tries of one call when the kernel changed between our read and our write (an element expired).
RACE_ATTEMPTS: Final = 3
# Deletes from one set past which the set is rewritten instead (see element_commands).
REWRITE_AFTER: Final = 8
NEEDS: Final = "the firewall worker needs CAP_NET_ADMIN and libnftables1; bans are not being applied"
# Seconds any one firewall step may take: waiting for the lock, and each libnftables call.
DEFAULT_TIMEOUT: Final = 5.0
LOCK_POLL_SECONDS: Final = 0.05

T = TypeVar("T")

_NO_PERMISSION = ("Operation not permitted", "Permission denied")
_NO_NFTABLES = ("Protocol not supported", "Address family not supported by protocol")
_TRANSIENT = ("Device or resource busy", "Resource temporarily unavailable", "No buffer space available",
              "Interrupted system call", "Cannot allocate memory", "Connection timed out")
# After our own read these mean someone else (or the kernel's expiry) changed the sets meanwhile.
_RACES = ("element does not exist", "No such file or directory", "interval overlaps", "File exists")
_LOCATION_RE = re.compile(r"^(?:internal|netlink):(?:\d+:\d+-\d+:)?\s*")


def nft_message(error: str) -> str:
    """nft's error text without its "internal:0:0-0: Error: " decoration, one line."""
    lines: list[str] = []
    for raw in error.splitlines():
        line = _LOCATION_RE.sub("", raw.strip()).removeprefix("Error: ").strip()
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines) or "libnftables failed without a message"


def error_from_nft(error: str) -> FirewallError:
    message = nft_message(error)
    if any(marker in message for marker in _NO_PERMISSION + _NO_NFTABLES):
        return FirewallError(f"{NEEDS} (nft: {message})", permanent=True)
    if any(marker in message for marker in _RACES):
        return _RaceError(f"nft: {message}")
    # Unknown errors are most likely ours (a command nft does not accept): retrying will not help.
    return FirewallError(f"nft: {message}", permanent=not any(marker in message for marker in _TRANSIENT))


def open_libnftables() -> Any:
    try:
        # pip-nftables, over Debian's libnftables1: loaded by the firewall worker on first use (the panel
        # and the watchers import this module too), and a missing module is said as a FirewallError
        import nftables  # noqa: PLC0415  # firewall worker only; ImportError reported below
    except ImportError as exc:
        raise FirewallError(f"{NEEDS} (Python module nftables: {exc})", permanent=True) from None
    try:
        # Checked first: nftables.Nftables() prints a traceback from __del__ when the library is missing.
        ctypes.CDLL("libnftables.so.1")
    except OSError as exc:
        raise FirewallError(f"{NEEDS} ({exc})", permanent=True) from None
    return nftables.Nftables()


class NftablesBackend:
    """Our table in the kernel, through libnftables' JSON API. Create it in the process that uses it
    (after a worker's fork, not before).

    Each call reads the table, then writes one batch, except the common ones that need not: adding
    bans that are not in the kernel yet (created in one batch, which the kernel refuses whole if one
    is there after all; then the call reads and plans as any other), and sync_rules() with the rules
    it wrote last (it checks the chain only). Calls are serialised between threads (a lock)
    and between processes (flock on `lock_path`, by default one file per table and network
    namespace under /run/lock), so two workers never write from the same stale read.

    The jails of the last sync_rules() are remembered: apply() recreates missing sets or table
    (someone ran `nft flush ruleset`) before writing, and reconcile() always rewrites the rules.
    """

    def __init__(self, table: str = "ips", lock_path: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 contents: Callable[[], Sequence[BanEntry]] | None = None) -> None:
        if not nft.TABLE_NAME_RE.match(table):
            raise ValueError(f"{table!r} is not a valid nftables table name.")
        self.table = table
        self.lock_path = lock_path or _default_lock_path(table)
        self.timeout = timeout
        # a function giving every ban the kernel must hold: a set or the table created anew gets them
        # in the same transaction (`nft flush ruleset` must never leave a table holding one ban)
        self.contents = contents
        open_libnftables()  # fails now, clearly, without libnftables1 or its Python module
        self._nft = NftProcess(timeout)
        self.commits = 0  # transactions this backend committed (generation() counts anyone's)
        self._thread_lock = threading.Lock()
        self._specs: list[nft.RuleSpec] | None = None  # of the last sync_rules()
        # The last call was sync_rules(), which found the rules in place: the apply() that follows (as
        # bans.sync calls them) need not list the chain again (with thousands of bans that takes ~50 ms).
        self._rules_checked = False
        self._run([nft.list_tables()])  # fails now, clearly, without CAP_NET_ADMIN or nf_tables

    def sync_rules(self, jails: Sequence[JailRules]) -> None:
        """Write the structure, unless it is the one this backend wrote last and its chain still holds
        all its rules (the chain is listed, not the sets: with thousands of bans, reading those back is
        what cost). reconcile() rewrites the rules whatever they look like."""
        specs = rule_specs(jails)
        with self._exclusive():
            if specs != self._specs or not self._rules_in_place(specs):
                self._retrying(lambda: self._sync(specs))
                self._specs = specs
            self._rules_checked = True

    def apply(self, add: Sequence[BanEntry] = (), remove: Sequence[BanEntry] = ()) -> None:
        if not add and not remove:
            return
        with self._exclusive():
            checked, self._rules_checked = self._rules_checked, False
            if not remove and self._add_new(add, rules_checked=checked):
                return
            self._retrying(lambda: self._apply_once(add, remove))

    def snapshot(self) -> State:
        with self._exclusive():
            self._rules_checked = False
            table = self._read()
        return {} if table is None else _state_of(table)

    def reconcile(self, desired: Sequence[BanEntry]) -> ReconcileResult:
        with self._exclusive():
            self._rules_checked = False
            return self._retrying(lambda: self._reconcile_once(desired))

    def teardown(self) -> None:
        with self._exclusive():
            self._rules_checked = False
            self._specs = None
            with contextlib.suppress(_RaceError):  # no table: nothing to delete
                self._run([nft.delete_table(self.table)])

    def generation(self) -> int:
        """The kernel's ruleset generation: it changes with every committed nftables transaction,
        ours or anyone's (NFT_MSG_GETGEN over netlink, a few microseconds; no lock, no listing).
        Unchanged since our last check means our table cannot have changed either."""
        try:
            return nft_generation(self.timeout)
        except OSError as exc:
            raise error_from_nft(str(exc)) from None

    def close(self) -> None:
        """Stop the libnftables helper process (a new one starts on the next call)."""
        self._nft.close()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Both locks, each waited for at most `timeout` seconds: a lock another process holds for
        ever must cost this call a transient error, never the worker."""
        deadline = time.monotonic() + self.timeout
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise _Abandoned(f"another thread of this process has held the firewall for over {self.timeout:g} s")
        try:
            with open(self.lock_path, "a") as lock_file:
                while True:
                    try:
                        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise _Abandoned(
                                f"the firewall lock {self.lock_path} has been held by another process for over "
                                f"{self.timeout:g} s (another firewall worker, or a stuck one: `fuser {self.lock_path}`"
                                " names it)") from None
                        time.sleep(LOCK_POLL_SECONDS)
                yield
        finally:
            self._thread_lock.release()

    # -- steps, called with the lock held

    def _run(self, commands: list[nft.Command]) -> dict[str, Any]:
        try:
            rc, output, error = self._nft.json_cmd({"nftables": commands})
        except CallTimedOut:
            raise _Abandoned(f"libnftables did not answer within {self.timeout:g} s: the call was abandoned and "
                             "its helper process killed") from None
        except ChildGone as exc:
            raise _Abandoned(str(exc)) from None
        if rc != 0:
            raise error_from_nft(error)
        if any("list" not in command for command in commands):
            self.commits += 1  # one call, one transaction: the kernel's generation moved by one for it
        return output if isinstance(output, dict) else {}

    def _read(self) -> nft.TableState | None:
        """Our table as the kernel has it, None if there is none."""
        try:
            return nft.parse_table(self._run([nft.list_table(self.table)]))
        except _RaceError as exc:
            if "No such file or directory" in exc.message:
                return None
            raise

    def _retrying(self, step: Callable[[], T]) -> T:
        for _ in range(RACE_ATTEMPTS - 1):
            try:
                return step()
            except _RaceError:
                continue
        try:
            return step()
        except _RaceError as exc:
            raise FirewallError(f"{exc.message} (still, after {RACE_ATTEMPTS} tries)", permanent=False) from None

    def _sync(self, specs: Sequence[nft.RuleSpec]) -> None:
        """Write the structure; sets it creates get their bans in the same transaction (`contents`)."""
        existing = self._read()
        commands = nft.structure_commands(self.table, specs, existing)
        created = {nft.set_name(spec.set_base, version) for spec in specs for version in (4, 6)}
        created -= set(existing.sets) if existing is not None else set()
        if created and self.contents is not None:
            commands += _filling(self.table, created, self.contents())
        self._run(commands)

    def _table_for_elements(self) -> nft.TableState:
        table = self._read()
        if self._specs is not None and _lacks_structure(table, self._specs):
            self._sync(self._specs)
            table = self._read()
        if table is None:
            raise FirewallError(f"There is no table {nft.FAMILY} {self.table}: call sync_rules() first.",
                                permanent=True)
        return table

    def _rules_in_place(self, specs: Sequence[nft.RuleSpec]) -> bool:
        try:
            chain = nft.parse_table(self._run([nft.list_chain(self.table)]))
        except _RaceError:
            return False  # no table or no chain
        return chain.chain is not None and chain.rule_count == nft.rule_count(specs)

    def _add_new(self, add: Sequence[BanEntry], *, rules_checked: bool) -> bool:
        """New bans (the usual case) without reading the sets: one batch that creates the elements,
        refused by the kernel as a whole if one is there already or overlaps one ("File exists",
        "interval overlaps") or a set is missing. True when done; False: nothing was changed and the
        careful path (read, plan, refresh timeouts, name the overlaps) must do it."""
        if self._specs is None or not (rules_checked or self._rules_in_place(self._specs)):
            return False
        wanted: dict[tuple[str, IPNetwork], BanEntry] = {}
        for entry in add:
            wanted[(entry.jail, entry.network)] = entry  # the last one given wins, as in plan_apply
        _, refused = fit_entries({}, widest_first(wanted.values()))
        if refused:
            return False
        elements: dict[str, list[Any]] = {}
        for entry in wanted.values():
            name = nft.set_name(_set_base_of(entry.jail), entry.network.version)
            elements.setdefault(name, []).append(nft.element(entry.network, entry.timeout))
        try:
            self._run([nft.create_elements(self.table, name, values) for name, values in sorted(elements.items())])
        except _Abandoned:
            raise  # not a refusal: the batch may or may not have committed; the caller retries later
        except FirewallError:
            # Atomic: nothing changed. Also "No buffer space available": the kernel answers each of the
            # batch's netlink messages that failed, and thousands of refused elements overflow the socket.
            return False
        return True

    def _apply_once(self, add: Sequence[BanEntry], remove: Sequence[BanEntry]) -> None:
        table = self._table_for_elements()
        plan = plan_apply(_state_of(table), _jails_of(table), add, remove)
        self._run(element_commands(self.table, table, plan))

    def _reconcile_once(self, desired: Sequence[BanEntry]) -> ReconcileResult:
        if self._specs is not None:
            self._sync(self._specs)  # also puts back rules someone deleted
        table = self._table_for_elements()
        plan, result = plan_reconcile(_state_of(table), _jails_of(table), desired)
        if plan.deletes or plan.adds:
            self._run(element_commands(self.table, table, plan))
        return result


def _filling(table: str, created: set[str], contents: Sequence[BanEntry]) -> list[nft.Command]:
    """Commands adding to the sets named in `created` the entries meant for them (overlaps dropped,
    the wider network kept, as reconcile does: the batch must not fail for one of them)."""
    wanted = [entry for entry in contents
              if nft.set_name(_set_base_of(entry.jail), entry.network.version) in created]
    accepted, _ = fit_entries({}, widest_first(wanted))
    values: dict[str, list[Any]] = {}
    for entry in accepted:
        values.setdefault(nft.set_name(_set_base_of(entry.jail), entry.network.version), []).append(
            nft.element(entry.network, entry.timeout))
    return [nft.add_elements(table, name, items) for name, items in sorted(values.items())]


def _default_lock_path(table: str) -> str:
    directory = "/run/lock" if os.access("/run/lock", os.W_OK) else tempfile.gettempdir()
    try:
        namespace = f"-netns{os.stat('/proc/self/ns/net').st_ino}"
    except OSError:
        namespace = ""
    return os.path.join(directory, f"ips-firewall-{table}{namespace}.lock")


def _lacks_structure(table: nft.TableState | None, specs: Sequence[nft.RuleSpec]) -> bool:
    if table is None or table.chain is None or table.rule_count != nft.rule_count(specs):
        return True  # gone, or someone flushed the chain or the ruleset
    return any(nft.set_name(spec.set_base, version) not in table.sets for spec in specs for version in (4, 6))


def _state_of(table: nft.TableState) -> State:
    state: State = {}
    for name, elements in table.sets.items():
        parts = nft.split_set_name(name)
        jail = _jail_of(parts[0]) if parts else None
        if jail is not None:
            state.setdefault(jail, {}).update(elements)
    return state


def _jails_of(table: nft.TableState) -> set[str]:
    """Jails (and the blocklist) whose two sets both exist."""
    halves: dict[str, int] = {}
    for name in table.sets:
        parts = nft.split_set_name(name)
        jail = _jail_of(parts[0]) if parts else None
        if jail is not None:
            halves[jail] = halves.get(jail, 0) + 1
    return {jail for jail, count in halves.items() if count == 2}


def element_commands(table_name: str, table: nft.TableState, plan: ElementPlan) -> list[nft.Command]:
    """The plan as one batch (one transaction): deletes or set rewrites first, then adds.

    libnftables 1.0.6 deletes from an interval set in time proportional to the set's size for each
    element (10,000 deletes from 10,000 elements: minutes). Past REWRITE_AFTER deletes in one set,
    the set is flushed and what stays is added back with the time the kernel had left for it, in
    the same transaction (10,000 elements: a tenth of a second), so no packet sees it empty.
    """
    deletes: dict[str, dict[str, Any]] = {}
    for entry in plan.deletes:
        name = nft.set_name(_set_base_of(entry.jail), entry.network.version)
        value = table.raw_values.get(name, {}).get(entry.network, nft.element_value(entry.network))
        deletes.setdefault(name, {})[_key(value)] = value  # a hand-made range is deleted once
    adds: dict[str, list[Any]] = {}
    for entry in plan.adds:
        name = nft.set_name(_set_base_of(entry.jail), entry.network.version)
        adds.setdefault(name, []).append(nft.element(entry.network, entry.timeout))
    removing: list[nft.Command] = []
    for name, values in sorted(deletes.items()):
        if len(values) <= REWRITE_AFTER:
            removing.append(nft.delete_elements(table_name, name, list(values.values())))
        else:
            removing.append(nft.flush_set(table_name, name))
            adds[name] = _staying(table, name, set(values)) + adds.get(name, [])
    return removing + [nft.add_elements(table_name, name, values) for name, values in sorted(adds.items()) if values]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _staying(table: nft.TableState, name: str, deleted: set[str]) -> list[Any]:
    """The elements of set `name` that are not deleted, to add back after a flush, with their time left."""
    raw = table.raw_values.get(name, {})
    seen = set(deleted)
    staying = []
    for network, left in table.sets.get(name, {}).items():
        value = raw.get(network, nft.element_value(network))
        if _key(value) in seen or (left is not None and left < 1):
            continue  # deleted, or expiring now (a timeout of 0 would make it permanent)
        seen.add(_key(value))
        staying.append(nft.with_timeout(value, left))
    return staying
