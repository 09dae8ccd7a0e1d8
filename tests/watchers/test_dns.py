"""watchers.dns: host names from logs to addresses, as fail2ban's usedns, bounded in time and size.

There is no DNS server here (nor should a test depend on one): every test injects a fake lookup
function in place of getaddrinfo, except the last ones, which resolve names of /etc/hosts
(localhost) through the system's resolver."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from watchers.dns import (
    Counts,
    Resolver,
    Unresolvable,
    address_of,
    hosts_to_addresses,
    name_key,
    system_lookup,
)

ZONE = {
    "attacker.example": ["203.0.113.7", "2001:db8::7"],
    "v4.example": ["198.51.100.4"],
    "v6.example": ["2001:db8::6"],
}


class FakeLookup:
    """A resolver answering from ZONE; names it does not know do not exist. Records what it was asked;
    with `gate` set, every lookup waits for the gate (a resolver that hangs)."""

    def __init__(self, zone: dict[str, list[str]] | None = None) -> None:
        self.zone = ZONE if zone is None else zone
        self.asked: list[str] = []
        self.gate: threading.Event | None = None
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def __call__(self, name: str) -> Sequence[str]:
        with self._lock:
            self.asked.append(name)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                self.gate.wait(10)
            if name not in self.zone:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return self.zone[name]
        finally:
            with self._lock:
                self.running -= 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lookup() -> Iterator[FakeLookup]:
    fake = FakeLookup()
    yield fake
    if fake.gate is not None:
        fake.gate.set()  # release the threads a test left hanging


def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- what is a name, what is an address -----------------------------------------------------------


@pytest.mark.parametrize(("text", "address"), [
    ("192.0.2.1", "192.0.2.1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("2001:DB8:0::1", "2001:db8::1"),
    ("::ffff:192.0.2.9", "192.0.2.9"),
    ("host.example", None),
])
def test_address_of(text: str, address: str | None) -> None:
    assert address_of(text) == address


@pytest.mark.parametrize(("text", "key"), [
    ("Attacker.Example.", "attacker.example"),
    ("localhost", "localhost"),
    ("mail_relay.example", "mail_relay.example"),
    ("bücher.example", "xn--bcher-kva.example"),
    # numeric forms getaddrinfo would read as addresses (inet_aton) are not names
    ("10.1", None), ("3232235777", None), ("0x7f000001", None), ("127.1", None), ("1.2.3.4.5", None),
    ("a..b", None), ("-x.example", None), ("x" * 64 + ".example", None), ("a." * 127 + "b", None),
    ("bad name.example", None), ("", None),
])
def test_name_key(text: str, key: str | None) -> None:
    assert name_key(text) == key


# --- resolving ------------------------------------------------------------------------------------


def test_it_resolves_names_to_ipv4_and_ipv6(lookup: FakeLookup) -> None:
    resolver = Resolver(lookup=lookup)
    results, counts = resolver.resolve_many(["attacker.example", "v4.example", "v6.example"])
    assert results == {"attacker.example": ["203.0.113.7", "2001:db8::7"], "v4.example": ["198.51.100.4"],
                       "v6.example": ["2001:db8::6"]}
    assert counts == Counts(resolved=3)


def test_addresses_are_never_looked_up(lookup: FakeLookup) -> None:
    results, counts = Resolver(lookup=lookup).resolve_many(["192.0.2.1", "[2001:db8::1]"])
    assert results == {"192.0.2.1": ["192.0.2.1"], "[2001:db8::1]": ["2001:db8::1"]}
    assert lookup.asked == [] and counts.names == 0


def test_a_name_that_does_not_exist_is_unresolvable_and_remembered(lookup: FakeLookup) -> None:
    resolver = Resolver(lookup=lookup)
    results, counts = resolver.resolve_many(["nosuch.example"])
    assert results == {"nosuch.example": []}
    assert counts == Counts(unresolvable=1)
    results, counts = resolver.resolve_many(["nosuch.example"])
    assert counts == Counts(unresolvable=1, cached=1)
    assert lookup.asked == ["nosuch.example"]  # the negative answer was cached


def test_texts_that_are_not_host_names_are_never_looked_up(lookup: FakeLookup) -> None:
    results, counts = Resolver(lookup=lookup).resolve_many(["3232235777", "10.1", "a..b", "x" * 300])
    assert all(addresses == [] for addresses in results.values())
    assert counts == Counts(unresolvable=4)
    assert lookup.asked == []


def test_each_name_is_looked_up_once_per_call_and_counted_once(lookup: FakeLookup) -> None:
    results, counts = Resolver(lookup=lookup).resolve_many(["v4.example", "V4.Example.", "v4.example"])
    assert results == {"v4.example": ["198.51.100.4"], "V4.Example.": ["198.51.100.4"]}
    assert lookup.asked == ["v4.example"]
    assert counts == Counts(resolved=2)  # two distinct texts, one lookup


def test_answers_are_cached_until_their_ttl(lookup: FakeLookup) -> None:
    clock = Clock()
    resolver = Resolver(lookup=lookup, ttl=300, negative_ttl=60, clock=clock)
    resolver.resolve_many(["v4.example", "nosuch.example"])
    clock.now += 59
    _, counts = resolver.resolve_many(["v4.example", "nosuch.example"])
    assert counts == Counts(resolved=1, unresolvable=1, cached=2)
    clock.now += 2  # the negative answer expired, the positive one not
    _, counts = resolver.resolve_many(["v4.example", "nosuch.example"])
    assert counts == Counts(resolved=1, unresolvable=1, cached=1)
    clock.now += 300
    resolver.resolve_many(["v4.example"])
    assert lookup.asked == ["v4.example", "nosuch.example", "nosuch.example", "v4.example"]


def test_the_cache_keeps_the_most_recently_used_answers(lookup: FakeLookup) -> None:
    resolver = Resolver(lookup=lookup, cache_size=2)
    resolver.resolve_many(["v4.example", "v6.example"])
    resolver.resolve_many(["v4.example"])  # used again: v6 is now the oldest
    resolver.resolve_many(["attacker.example"])
    assert len(resolver.cache) == 2
    lookup.asked.clear()
    resolver.resolve_many(["v4.example", "attacker.example", "v6.example"])
    assert lookup.asked == ["v6.example"]


def test_lookups_per_call_are_capped_and_cached_answers_do_not_count(lookup: FakeLookup) -> None:
    resolver = Resolver(lookup=lookup, max_names=2)
    resolver.resolve_many(["v4.example"])
    names = ["v4.example", "v6.example", "attacker.example", "a.example", "b.example"]
    results, counts = resolver.resolve_many(names)
    assert counts == Counts(resolved=3, over_cap=2, cached=1)
    assert results["a.example"] == [] and results["b.example"] == []
    assert lookup.asked == ["v4.example", "v6.example", "attacker.example"]


def test_addresses_per_name_are_capped_and_junk_dropped() -> None:
    many = [f"203.0.113.{n}" for n in range(1, 40)]
    resolver = Resolver(lookup=FakeLookup({"many.example": ["not an address", *many, "203.0.113.1"]}),
                        max_addresses=16)
    assert resolver.resolve("many.example") == many[:16]


def test_a_broken_lookup_function_gives_no_address_and_the_resolver_goes_on() -> None:
    def broken(name: str) -> Sequence[str]:
        if name == "boom.example":
            raise RuntimeError("bug")
        if name == "none.example":
            raise Unresolvable(name)
        return ["192.0.2.80"]

    resolver = Resolver(lookup=broken)
    results, counts = resolver.resolve_many(["boom.example", "none.example", "fine.example"])
    assert results == {"boom.example": [], "none.example": [], "fine.example": ["192.0.2.80"]}
    assert counts == Counts(resolved=1, unresolvable=2)


# --- bounded in time ------------------------------------------------------------------------------


def test_a_hanging_resolver_costs_the_caller_the_timeout_and_no_more(lookup: FakeLookup) -> None:
    lookup.gate = threading.Event()
    resolver = Resolver(lookup=lookup, timeout=0.3)
    started = time.monotonic()
    results, counts = resolver.resolve_many(["v4.example", "v6.example", "nosuch.example"])
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.0
    assert results == {"v4.example": [], "v6.example": [], "nosuch.example": []}
    assert counts == Counts(timed_out=3)


def test_a_late_answer_is_cached_for_the_next_call(lookup: FakeLookup) -> None:
    lookup.gate = threading.Event()
    resolver = Resolver(lookup=lookup, timeout=0.1)
    assert resolver.resolve_many(["v4.example"])[1] == Counts(timed_out=1)
    lookup.gate.set()
    wait_until(lambda: resolver.pending() == 0)
    results, counts = resolver.resolve_many(["v4.example"])
    assert results == {"v4.example": ["198.51.100.4"]}
    assert counts == Counts(resolved=1, cached=1)
    assert lookup.asked == ["v4.example"]


def test_a_name_still_being_looked_up_is_not_asked_again(lookup: FakeLookup) -> None:
    lookup.gate = threading.Event()
    resolver = Resolver(lookup=lookup, timeout=0.1)
    for _ in range(3):
        assert resolver.resolve_many(["v4.example"])[1] == Counts(timed_out=1)
    assert lookup.asked == ["v4.example"]
    assert resolver.pending() == 1


def test_abandoned_lookups_never_pile_up(lookup: FakeLookup) -> None:
    lookup.gate = threading.Event()
    resolver = Resolver(lookup=lookup, timeout=0.05, max_workers=2, max_pending=5, max_names=100)
    names = [f"host{n}.example" for n in range(20)]
    _, counts = resolver.resolve_many(names)
    assert counts == Counts(timed_out=5, busy=15)
    _, counts = resolver.resolve_many([f"other{n}.example" for n in range(20)])
    assert counts == Counts(busy=20)  # the resolver hangs: nothing more is started
    assert resolver.pending() == 5
    assert resolver.threads() == 2 and lookup.most_running == 2
    lookup.gate.set()  # the resolver answers again: room is made as the answers come
    wait_until(lambda: resolver.pending() == 0)
    results, counts = resolver.resolve_many(["v4.example"])
    assert results == {"v4.example": ["198.51.100.4"]} and counts == Counts(resolved=1)
    assert resolver.threads() == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_threads_of_its_own(lookup: FakeLookup) -> None:
    resolver = Resolver(lookup=lookup)
    assert resolver.resolve("v4.example") == ["198.51.100.4"]  # the parent's threads run
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child, as a Celery prefork worker is: the parent's threads are gone
        try:
            answer = ",".join(resolver.resolve("v6.example", timeout=2))
            os.write(write_end, answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as pipe:
        assert pipe.read() == "2001:db8::6"


# --- fail2ban's usedns ----------------------------------------------------------------------------

HOSTS = ["192.0.2.5", "attacker.example", "nosuch.example"]


def test_usedns_no_acts_on_addresses_only(lookup: FakeLookup) -> None:
    results, counts = hosts_to_addresses(HOSTS, "no", Resolver(lookup=lookup))
    assert results == {"192.0.2.5": ["192.0.2.5"], "attacker.example": [], "nosuch.example": []}
    assert lookup.asked == [] and counts == Counts()


def test_an_unknown_usedns_value_is_the_safe_no(lookup: FakeLookup) -> None:
    results, _ = hosts_to_addresses(HOSTS, "maybe", Resolver(lookup=lookup))
    assert results["attacker.example"] == [] and lookup.asked == []


def test_usedns_raw_takes_the_text_as_written(lookup: FakeLookup) -> None:
    results, counts = hosts_to_addresses(["attacker.example", "[2001:DB8::1]"], "raw", Resolver(lookup=lookup))
    assert results == {"attacker.example": ["attacker.example"], "[2001:DB8::1]": ["[2001:DB8::1]"]}
    assert lookup.asked == [] and counts == Counts()


def test_usedns_yes_resolves_names_and_never_addresses(lookup: FakeLookup, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="watchers.dns"):
        results, counts = hosts_to_addresses(HOSTS, "yes", Resolver(lookup=lookup))
    assert results == {"192.0.2.5": ["192.0.2.5"], "attacker.example": ["203.0.113.7", "2001:db8::7"],
                       "nosuch.example": []}
    assert counts == Counts(resolved=1, unresolvable=1)
    assert lookup.asked == ["attacker.example", "nosuch.example"]
    assert caplog.records == []


def test_usedns_warn_resolves_and_logs_a_warning(lookup: FakeLookup, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="watchers.dns"):
        results, _ = hosts_to_addresses(HOSTS, "WARN", Resolver(lookup=lookup), jail="sshd")
    assert results["attacker.example"] == ["203.0.113.7", "2001:db8::7"]
    assert [record.getMessage() for record in caplog.records] == [
        "[sshd] Determined IP using DNS Lookup: attacker.example = 203.0.113.7, 2001:db8::7"]


# --- the system's resolver, on names of /etc/hosts ------------------------------------------------


def test_the_system_resolver_finds_localhost() -> None:
    assert "127.0.0.1" in system_lookup("localhost")
    results, counts = Resolver(timeout=2).resolve_many(["localhost"])
    assert "127.0.0.1" in results["localhost"]
    assert counts == Counts(resolved=1)


def test_the_system_resolver_bounds_a_name_that_cannot_exist() -> None:
    # .invalid never exists (RFC 6761); without a DNS server the lookup fails or times out, within the bound
    started = time.monotonic()
    results, counts = Resolver(timeout=1).resolve_many(["nosuch.invalid"])
    assert time.monotonic() - started < 1.5
    assert results == {"nosuch.invalid": []}
    assert counts.unresolvable + counts.timed_out == 1
