"""Host names written in logs, turned into addresses the way fail2ban's `usedns` does, within bounds.

Plain Python, no Django import.

fail2ban (`Filter.findFailure`, `DNSUtils.textToIp`/`dnsToIp`) does this with a captured host:

- an address (`ip4`/`ip6` groups, or a `dns` text that is an address) is used as it is: an address
  is never looked up, whatever usedns says;
- `usedns = no`: a host name is not used for banning;
- `usedns = raw`: the text is used as written, never looked up (for filters whose "host" is an id);
- `usedns = yes`: a host name is looked up (A and AAAA) and every address it has counts a failure;
- `usedns = warn`: the same, and each name resolved is logged as a warning;
- an unknown value is taken as the safe `no`.

`hosts_to_addresses(hosts, usedns)` is that, for a batch of hosts. The lookups themselves go through
a `Resolver`, which fail2ban bounds only by a cache; here every bound is explicit, because the names
are written by attackers:

- time: a call waits at most `timeout` seconds in all (its lookups run in parallel on `max_workers`
  threads). getaddrinfo cannot be cancelled, so a lookup that overruns is abandoned, not stopped:
  it goes on in its thread and its answer, if one comes, is cached for the next call;
- abandoned lookups never pile up: at most `max_pending` lookups are unanswered at any time (queued
  or running, this call's or an earlier one's); a name beyond that is not looked up (`busy`), and
  a name still being looked up from an earlier call is waited for, never asked twice;
- size: at most `max_names` lookups are started per call (answers already cached are free), at most
  `max_addresses` addresses are kept per name, and the cache holds `cache_size` answers for `ttl`
  seconds, negative answers (no such name, no address) included, so a name that does not resolve
  costs one lookup per `negative_ttl`;
- a text that is neither an address nor a plausible host name (too long, bad characters, a numeric
  form such as `3232235777` or `10.1` that getaddrinfo would read as an address) is never looked up.

Every call says what happened in a `Counts` (resolved, unresolvable, timed out, over the cap,
busy; cached is the part of resolved + unresolvable answered from the cache) for the caller to show.
The worker threads are daemon threads, started on first use and again after a fork (a Celery worker
process gets its own).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import queue
import re
import socket
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, wait
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

USEDNS_MODES = ("no", "raw", "warn", "yes")

DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_WORKERS = 4
DEFAULT_MAX_PENDING = 64
DEFAULT_MAX_NAMES = 64
DEFAULT_MAX_ADDRESSES = 16
DEFAULT_CACHE_SIZE = 1000  # fail2ban's DNSUtils cache: 1000 names, 5 minutes
DEFAULT_TTL = 300.0

# A lookup function: the addresses of a name (text), or an exception when there are none
# (socket.gaierror, OSError, Unresolvable...). Tests inject a fake one.
Lookup = Callable[[str], Sequence[str]]

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


class Unresolvable(Exception):
    """A lookup function may raise this to say a name has no address."""


@dataclass
class Counts:
    """What became of the names of one call (each distinct name counted once, in exactly one of
    the first five; `cached` is the part of resolved + unresolvable answered from the cache)."""

    resolved: int = 0  # at least one address
    unresolvable: int = 0  # no such name, no address, not a host name, or the resolver failed
    timed_out: int = 0  # no answer within the timeout (a late answer is cached for next time)
    over_cap: int = 0  # not looked up: the call already started max_names lookups
    busy: int = 0  # not looked up: max_pending earlier lookups were still unanswered
    cached: int = 0

    @property
    def names(self) -> int:
        return self.resolved + self.unresolvable + self.timed_out + self.over_cap + self.busy

    @property
    def unanswered(self) -> int:
        """Names given no answer for lack of time or room (not the names that have none)."""
        return self.timed_out + self.over_cap + self.busy

    def add(self, other: Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def address_of(text: str) -> str | None:
    """The address `text` is (brackets allowed, IPv4-mapped IPv6 written as IPv4), else None."""
    try:
        ip = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None and ip.scope_id is None:
        return str(ip.ipv4_mapped)
    return str(ip)


def name_key(text: str) -> str | None:
    """The name to look up (lower case, without a trailing dot), or None when `text` cannot be a
    host name: nothing to ask a resolver about."""
    name = text.strip().lower().removesuffix(".")
    if not name or len(name) > 253:
        return None
    try:
        ascii_name = name.encode("idna").decode("ascii")  # what getaddrinfo would send
    except UnicodeError:
        return None
    if len(ascii_name) > 253:
        return None
    labels = ascii_name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    # A top-level label is never numeric (RFC 3696 2); and a name made of numbers only is what
    # inet_aton reads as an address (10.1 = 10.0.0.1, 3232235777 = 192.168.1.1), not a name.
    if labels[-1].isdigit() or all(_NUMERIC_LABEL.match(label) for label in labels):
        return None
    return ascii_name


def system_lookup(name: str) -> list[str]:
    """The IPv4 and IPv6 addresses of `name`, from the system's resolver (/etc/hosts, DNS...)."""
    found: list[str] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = address_of(str(sockaddr[0]))
        if text is not None and text not in found:
            found.append(text)
    return found


class _Cache:
    """LRU with an expiry per entry; thread-safe."""

    def __init__(self, size: int, clock: Callable[[], float]) -> None:
        self.size = size
        self.clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[float, tuple[str, ...]]] = OrderedDict()

    def get(self, key: str) -> tuple[str, ...] | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] <= self.clock():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: str, value: tuple[str, ...], ttl: float) -> None:
        if self.size <= 0 or ttl <= 0:
            return
        with self._lock:
            self._items[key] = (self.clock() + ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


_RESOLVERS: weakref.WeakSet[Resolver] = weakref.WeakSet()


class Resolver:
    """Host names to addresses, bounded in time, threads, memory and names per call (see the module)."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_workers: int = DEFAULT_MAX_WORKERS,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_names: int = DEFAULT_MAX_NAMES,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
        cache_size: int = DEFAULT_CACHE_SIZE,
        ttl: float = DEFAULT_TTL,
        negative_ttl: float | None = None,
        lookup: Lookup = system_lookup,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0 or max_workers < 1 or max_pending < 1 or max_names < 0 or max_addresses < 1:
            raise ValueError("timeout, max_workers, max_pending and max_addresses must be positive")
        self.timeout = timeout
        self.max_workers = max_workers
        self.max_pending = max_pending
        self.max_names = max_names
        self.max_addresses = max_addresses
        self.ttl = ttl
        self.negative_ttl = ttl if negative_ttl is None else negative_ttl
        self.lookup = lookup
        self.cache = _Cache(cache_size, clock)
        self._lock = threading.Lock()
        self._reset_threads()
        _RESOLVERS.add(self)

    def _reset_threads(self) -> None:
        """No thread and nothing in flight (at creation, and in a forked child, where the parent's
        threads do not exist)."""
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[str, Future[tuple[str, ...]]]] = queue.SimpleQueue()
        self._inflight: dict[str, Future[tuple[str, ...]]] = {}
        self._threads: list[threading.Thread] = []

    # --- the API --------------------------------------------------------------------------------

    def resolve_many(
        self, names: Iterable[str], *, timeout: float | None = None
    ) -> tuple[dict[str, list[str]], Counts]:
        """Every distinct name given -> its addresses ([] when it has none, or got no answer in
        time or room), and the counts. Waits at most `timeout` (the resolver's by default).

        A name that is an address maps to itself, is never looked up and is not counted."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        results: dict[str, list[str]] = {}
        counts = Counts()
        waiting: dict[str, tuple[Future[tuple[str, ...]], list[str]]] = {}
        started = 0
        for name in names:
            if name in results:
                continue
            address = address_of(name)
            if address is not None:
                results[name] = [address]
                continue
            results[name] = []
            key = name_key(name)
            if key is None:
                counts.unresolvable += 1
                continue
            if key in waiting:
                waiting[key][1].append(name)
                continue
            answer = self.cache.get(key)
            if answer is not None:
                results[name] = list(answer)
                counts.cached += 1
                if answer:
                    counts.resolved += 1
                else:
                    counts.unresolvable += 1
                continue
            if started >= self.max_names:
                counts.over_cap += 1
                continue
            started += 1
            future = self._submit(key)
            if future is None:
                counts.busy += 1
                continue
            waiting[key] = (future, [name])
        if waiting:
            wait([future for future, _ in waiting.values()], timeout=max(0.0, deadline - time.monotonic()))
        for future, waiting_names in waiting.values():
            if not future.done():
                counts.timed_out += len(waiting_names)
                continue
            answer = future.result()
            for name in waiting_names:
                results[name] = list(answer)
            if answer:
                counts.resolved += len(waiting_names)
            else:
                counts.unresolvable += len(waiting_names)
        return results, counts

    def resolve(self, name: str, *, timeout: float | None = None) -> list[str]:
        """One name's addresses ([] when none, or no answer in time)."""
        return self.resolve_many([name], timeout=timeout)[0].get(name, [])

    def pending(self) -> int:
        """Lookups started and not answered yet (queued or running, abandoned or not)."""
        with self._lock:
            return len(self._inflight)

    def threads(self) -> int:
        with self._lock:
            return sum(1 for thread in self._threads if thread.is_alive())

    def clear(self) -> None:
        """Forget every cached answer."""
        self.cache.clear()

    # --- the threads ----------------------------------------------------------------------------

    def _submit(self, key: str) -> Future[tuple[str, ...]] | None:
        """The lookup of `key`, started now or already under way; None when max_pending lookups
        are unanswered."""
        with self._lock:
            future = self._inflight.get(key)
            if future is not None:
                return future
            if len(self._inflight) >= self.max_pending:
                return None
            future = Future[tuple[str, ...]]()
            self._inflight[key] = future
            self._jobs.put((key, future))
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            if len(self._threads) < min(self.max_workers, len(self._inflight)):
                thread = threading.Thread(target=self._work, args=(self._jobs,), name="dns-lookup", daemon=True)
                self._threads.append(thread)
                thread.start()
            return future

    def _work(self, jobs: queue.SimpleQueue[tuple[str, Future[tuple[str, ...]]]]) -> None:
        while True:
            key, future = jobs.get()
            answer = self._ask(key)
            self.cache.put(key, answer, self.ttl if answer else self.negative_ttl)
            with self._lock:
                if self._inflight.get(key) is future:
                    del self._inflight[key]
            future.set_result(answer)

    def _ask(self, key: str) -> tuple[str, ...]:
        try:
            found = self.lookup(key)
        except (Unresolvable, OSError, UnicodeError, ValueError) as exc:
            log.debug("no address for %r: %s", key, exc)
            return ()
        except Exception:  # a broken lookup function must not kill the thread
            log.exception("looking up %r failed", key)
            return ()
        addresses: list[str] = []
        for text in found:
            address = address_of(str(text))
            if address is not None and address not in addresses:
                addresses.append(address)
                if len(addresses) >= self.max_addresses:
                    break
        return tuple(addresses)


def _after_fork_in_child() -> None:
    for resolver in list(_RESOLVERS):
        resolver._reset_threads()
        resolver.cache._lock = threading.Lock()  # a parent's thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)

_default: Resolver | None = None
_default_lock = threading.Lock()


def default_resolver() -> Resolver:
    """The process's shared resolver (one cache, one bounded set of threads), with the defaults."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Resolver()
        return _default


def hosts_to_addresses(
    hosts: Iterable[str],
    usedns: str,
    resolver: Resolver | None = None,
    *,
    jail: str = "",
    timeout: float | None = None,
) -> tuple[dict[str, list[str]], Counts]:
    """Each distinct host captured from a log -> the addresses it counts for, as fail2ban's usedns.

    An address is itself (never looked up); `raw` keeps the text as written; `no` (and an unknown
    value) gives a host name no address; `yes` and `warn` resolve the names through `resolver`
    (the shared one by default), `warn` logging a warning per name resolved. Counts are those of
    the lookups (all zero unless yes/warn)."""
    mode = usedns.strip().lower()
    results: dict[str, list[str]] = {}
    names: list[str] = []
    for host in hosts:
        if host in results:
            continue
        if mode == "raw":
            results[host] = [host]
            continue
        address = address_of(host)
        results[host] = [address] if address is not None else []
        if address is None and mode in ("yes", "warn"):
            names.append(host)
    if not names:
        return results, Counts()
    resolved, counts = (resolver or default_resolver()).resolve_many(names, timeout=timeout)
    results.update(resolved)
    if mode == "warn":
        for name in names:
            if resolved.get(name):
                log.warning("%sDetermined IP using DNS Lookup: %s = %s", f"[{jail}] " if jail else "",
                            name, ", ".join(resolved[name]))
    return results, counts
