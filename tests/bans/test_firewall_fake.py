"""The firewall backend without a kernel: ports, set names, the JSON we would send, the planning
rules and the RecordingBackend that other tests use in place of nftables."""

from __future__ import annotations

import ctypes
import ipaddress
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bans import firewall
from bans.firewall import (
    BLOCKLIST,
    NEEDS,
    BanEntry,
    FirewallBackend,
    FirewallError,
    JailRules,
    NftablesBackend,
    base,
    element_commands,
    error_from_nft,
    nft,
    nftables,
    resolve_ports,
    rule_specs,
)
from bans.firewall.planning import ElementPlan
from bans.firewall.recording import RecordingBackend


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def ban(jail: str, network: str, timeout: int | None = 600) -> BanEntry:
    return BanEntry(jail, net(network), timeout)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> RecordingBackend:
    backend = RecordingBackend(clock=clock)
    backend.sync_rules([JailRules("sshd", "ssh", "tcp", "drop"),
                        JailRules("nginx-http", "http,https", "tcp", "reject")])
    return backend


# -- ports ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [
    ("ssh", [(22, 22)]),
    ("http,https", [(80, 80), (443, 443)]),
    ("smtp,submission,smtps", [(25, 25), (465, 465), (587, 587)]),
    ("8000:8100", [(8000, 8100)]),
    ("8000-8100", [(8000, 8100)]),
    (" 22 , 2222 ", [(22, 22), (2222, 2222)]),
    ("80,81,82,8080:8090,8085", [(80, 82), (8080, 8090)]),
    ("ssh,22", [(22, 22)]),
    ("all", [(0, 65535)]),
    ("ALL", [(0, 65535)]),
    ("1:65535", [(0, 65535)]),
])
def test_it_resolves_fail2ban_port_specs(spec: str, expected: list[tuple[int, int]]) -> None:
    assert resolve_ports(spec, "tcp") == expected


def test_it_resolves_names_for_the_protocol_asked() -> None:
    assert resolve_ports("domain", "udp") == [(53, 53)]
    assert resolve_ports("ssh", "all") == [(22, 22)]
    assert resolve_ports("ssh", "sctp") == [(22, 22)]  # falls back to the tcp entry, as nft does


@pytest.mark.parametrize(("spec", "message"), [
    ("nosuchservice", "Unknown port name 'nosuchservice' for tcp"),
    ("ssh,", "Empty item"),
    ("8100:8000", "runs backwards"),
    ("0", "out of range"),
    ("70000", "out of range"),
    ("22:70000", "out of range"),
])
def test_it_explains_bad_port_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_ports(spec, "tcp")


def test_it_refuses_an_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="Protocol 'icmp' is not one of"):
        resolve_ports("ssh", "icmp")


# -- entries and jails ------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -1, True, 1.5])
def test_it_refuses_a_timeout_that_nft_would_read_as_permanent(timeout: float) -> None:
    with pytest.raises(ValueError, match="at least 1 second or None"):
        BanEntry("sshd", net("192.0.2.1/32"), timeout)  # type: ignore[arg-type]  # 1.5 on purpose: the check under test


def test_it_wants_an_ipaddress_network() -> None:
    with pytest.raises(TypeError, match="ipaddress network"):
        BanEntry("sshd", "192.0.2.1", 60)  # type: ignore[arg-type]  # a str on purpose: the check under test


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"protocol": "icmp"}, "protocol 'icmp'"),
    ({"blocktype": "tarpit"}, "blocktype 'tarpit'"),
    ({"name": BLOCKLIST}, "blocklist's own key"),
    ({"name": ""}, "needs a name"),
    ({"name": "x" * 260}, "too long"),
])
def test_it_validates_jail_rules(kwargs: dict[str, str], message: str) -> None:
    fields = {"name": "sshd", "ports": "ssh", "protocol": "tcp", "blocktype": "drop", **kwargs}
    with pytest.raises(ValueError, match=message):
        JailRules(**fields)


def test_it_reports_a_bad_port_of_a_jail_as_permanent() -> None:
    with pytest.raises(FirewallError, match="Jail web: Unknown port name 'htp'") as caught:
        rule_specs([JailRules("web", "htp", "tcp", "drop")])
    assert caught.value.permanent


def test_it_refuses_a_jail_given_twice() -> None:
    jail = JailRules("sshd", "ssh", "tcp", "drop")
    with pytest.raises(FirewallError, match="given twice"):
        rule_specs([jail, jail])


# -- set names --------------------------------------------------------------------------------


@pytest.mark.parametrize(("jail", "base"), [
    ("sshd", "j_sshd"),
    ("nginx-http-auth", "j_nginx_hhttp_hauth"),
    ("postfix.sasl", "j_postfix_dsasl"),
    ("a_b@c", "j_a_ub_ac"),
    ("blocklist", "j_blocklist"),
])
def test_it_names_sets_from_jail_names(jail: str, base: str) -> None:
    assert nft.jail_set_base(jail) == base
    assert nft.jail_from_set_base(base) == jail
    assert nft.set_name(base, 4) == base + "_v4"


def test_it_keeps_a_jail_named_blocklist_apart_from_the_blocklist() -> None:
    names = {nft.set_name(spec.set_base, 4) for spec in rule_specs([JailRules("blocklist", "all", "all", "drop")])}
    assert names == {"blocklist_v4", "j_blocklist_v4"}


# What a jail name may hold (jails.validators.NAME_RE), and a few characters it may not.
JAIL_NAMES = st.text(alphabet=string.ascii_letters + string.digits + "_.@-" + "äß€ /:", min_size=1, max_size=60)


@given(JAIL_NAMES)
def test_it_reads_every_jail_back_from_its_set_name(jail: str) -> None:
    base = nft.jail_set_base(jail)
    assert all(char.isascii() and (char.isalnum() or char == "_") for char in base)
    assert nft.jail_from_set_base(base) == jail


@given(JAIL_NAMES, JAIL_NAMES)
def test_it_never_gives_two_jails_the_same_sets(first: str, second: str) -> None:
    if first != second:
        assert nft.jail_set_base(first) != nft.jail_set_base(second)


@pytest.mark.parametrize("base", ["blocklist", "j_", "x_sshd", "j_a_q", "j_a_x41"])
def test_it_ignores_set_names_it_did_not_make(base: str) -> None:
    assert nft.jail_from_set_base(base) is None


# -- the JSON ---------------------------------------------------------------------------------


def test_it_spells_addresses_and_networks_as_json_values() -> None:
    assert nft.element(net("203.0.113.9/32"), None) == "203.0.113.9"
    assert nft.element(net("2001:db8::1/128"), 60) == {"elem": {"val": "2001:db8::1", "timeout": 60}}
    assert nft.element(net("203.0.113.0/24"), 3600) == {
        "elem": {"val": {"prefix": {"addr": "203.0.113.0", "len": 24}}, "timeout": 3600}}
    assert nft.element(net("2001:db8::/64"), None) == {"prefix": {"addr": "2001:db8::", "len": 64}}


def rules_of(jail: JailRules) -> list[dict[str, Any]]:
    spec = rule_specs([jail])[1]
    return nft.rules_for("ips", spec)


SADDR_V4 = {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@j_sshd_v4"}}
SADDR_V6 = {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "@j_sshd_v6"}}
TCP = {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}


def test_it_drops_a_jails_ports_for_both_families() -> None:
    rules = rules_of(JailRules("sshd", "ssh,2222", "tcp", "drop"))
    dport = {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                       "right": {"set": [22, 2222]}}}
    assert rules == [
        {"family": "inet", "table": "ips", "chain": "input", "comment": "jail sshd",
         "expr": [TCP, dport, SADDR_V4, {"drop": None}]},
        {"family": "inet", "table": "ips", "chain": "input", "comment": "jail sshd",
         "expr": [TCP, dport, SADDR_V6, {"drop": None}]},
    ]


def test_it_matches_a_port_range_and_every_port() -> None:
    [rule, _] = rules_of(JailRules("sshd", "8000:8100", "tcp", "drop"))
    assert rule["expr"][1]["match"]["right"] == {"range": [8000, 8100]}
    [rule, _] = rules_of(JailRules("sshd", "all", "tcp", "drop"))
    assert rule["expr"] == [TCP, SADDR_V4, {"drop": None}]
    [rule, _] = rules_of(JailRules("sshd", "all", "all", "drop"))
    assert rule["expr"] == [SADDR_V4, {"drop": None}]


def test_it_resets_tcp_and_answers_port_unreachable_otherwise() -> None:
    [rule, _] = rules_of(JailRules("sshd", "ssh", "tcp", "reject"))
    assert rule["expr"][-1] == {"reject": {"type": "tcp reset"}}
    [rule, _] = rules_of(JailRules("sshd", "domain", "udp", "reject"))
    assert rule["expr"][0]["match"]["right"] == "udp"
    assert rule["expr"][-1] == {"reject": {"type": "icmpx", "expr": "port-unreachable"}}


def test_it_rejects_every_protocol_with_a_tcp_rule_first() -> None:
    tcp_v4, rest_v4, tcp_v6, rest_v6 = rules_of(JailRules("sshd", "all", "all", "reject"))
    assert tcp_v4["expr"] == [TCP, SADDR_V4, {"reject": {"type": "tcp reset"}}]
    assert rest_v4["expr"] == [SADDR_V4, {"reject": {"type": "icmpx", "expr": "port-unreachable"}}]
    assert rest_v6["expr"][0] == SADDR_V6 and tcp_v6["expr"][0] == TCP


def test_it_matches_ports_of_every_port_protocol_with_th_dport() -> None:
    [tcp, rest, _, _] = rules_of(JailRules("sshd", "53", "all", "reject"))
    assert tcp["expr"][1]["match"]["left"] == {"payload": {"protocol": "tcp", "field": "dport"}}
    assert rest["expr"][0]["match"]["right"] == {"set": ["udp", "sctp", "dccp"]}
    assert rest["expr"][1]["match"]["left"] == {"payload": {"protocol": "th", "field": "dport"}}
    [drop, _] = rules_of(JailRules("sshd", "53", "all", "drop"))
    assert drop["expr"][0]["match"]["right"] == {"set": ["tcp", "udp", "sctp", "dccp"]}


def test_it_builds_the_table_chain_sets_and_rules_in_one_batch() -> None:
    commands = nft.structure_commands("ips", rule_specs([JailRules("sshd", "ssh", "tcp", "drop")]), None)
    assert commands[0] == {"add": {"table": {"family": "inet", "name": "ips"}}}
    assert commands[1] == {"add": {"chain": {"family": "inet", "table": "ips", "name": "input", "type": "filter",
                                             "hook": "input", "prio": -10, "policy": "accept"}}}
    assert commands[2] == {"flush": {"chain": {"family": "inet", "table": "ips", "name": "input"}}}
    sets = [command["add"]["set"] for command in commands if "set" in command.get("add", {})]
    assert [(s["name"], s["type"], s["flags"]) for s in sets] == [
        ("blocklist_v4", "ipv4_addr", ["interval", "timeout"]), ("blocklist_v6", "ipv6_addr", ["interval", "timeout"]),
        ("j_sshd_v4", "ipv4_addr", ["interval", "timeout"]), ("j_sshd_v6", "ipv6_addr", ["interval", "timeout"])]
    rules = [command["add"]["rule"] for command in commands if "rule" in command.get("add", {})]
    assert [rule["expr"][0]["match"]["right"] for rule in rules[:2]] == ["@blocklist_v4", "@blocklist_v6"]
    assert [rule["comment"] for rule in rules] == ["blocklist", "blocklist", "jail sshd", "jail sshd"]


def test_it_counts_the_rules_it_writes() -> None:
    specs = rule_specs([JailRules("sshd", "ssh", "tcp", "drop"), JailRules("dns", "53", "all", "reject")])
    commands = nft.structure_commands("ips", specs, None)
    assert nft.rule_count(specs) == len([c for c in commands if "rule" in c.get("add", {})]) == 2 + 2 + 4


def test_it_deletes_only_the_sets_of_jails_that_are_gone() -> None:
    existing = nft.TableState(chain={"type": "filter", "hook": "input", "prio": -10},
                              sets={"blocklist_v4": {}, "blocklist_v6": {}, "j_sshd_v4": {}, "j_sshd_v6": {},
                                    "j_old_v4": {}, "j_old_v6": {}})
    commands = nft.structure_commands("ips", rule_specs([JailRules("sshd", "ssh", "tcp", "drop")]), existing)
    deleted = [command["delete"] for command in commands if "delete" in command]
    assert deleted == [{"set": {"family": "inet", "table": "ips", "name": "j_old_v4"}},
                       {"set": {"family": "inet", "table": "ips", "name": "j_old_v6"}}]
    assert commands.index({"flush": {"chain": {"family": "inet", "table": "ips", "name": "input"}}}) < \
        commands.index({"delete": deleted[0]})


def test_it_replaces_a_chain_with_another_priority() -> None:
    existing = nft.TableState(chain={"type": "filter", "hook": "input", "prio": 0})
    commands = nft.structure_commands("ips", rule_specs([]), existing)
    assert {"delete": {"chain": {"family": "inet", "table": "ips", "name": "input"}}} in commands


FLAGS = ["interval", "timeout"]
LISTING = {"nftables": [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"table": {"family": "inet", "name": "ips", "handle": 1}},
    {"set": {"family": "inet", "name": "j_sshd_v4", "table": "ips", "type": "ipv4_addr", "flags": FLAGS,
             "elem": ["10.1.0.7",
                      {"elem": {"val": {"prefix": {"addr": "10.2.0.0", "len": 16}}, "timeout": 600, "expires": 598}},
                      {"elem": {"val": {"range": ["10.3.0.0", "10.3.0.2"]}, "timeout": 60, "expires": 59}}]}},
    {"set": {"family": "inet", "name": "j_sshd_v6", "table": "ips", "type": "ipv6_addr", "flags": FLAGS,
             "elem": [{"elem": {"val": "fd00::1", "timeout": 7, "expires": 7}}]}},
    {"set": {"family": "inet", "name": "blocklist_v4", "table": "ips", "type": "ipv4_addr"}},
    {"set": {"family": "inet", "name": "blocklist_v6", "table": "ips", "type": "ipv6_addr"}},
    {"set": {"family": "inet", "name": "someone_elses", "table": "ips", "type": "ipv4_addr", "elem": ["10.9.9.9"]}},
    {"chain": {"family": "inet", "table": "ips", "name": "input", "type": "filter", "hook": "input", "prio": -10}},
    {"rule": {"family": "inet", "table": "ips", "chain": "input", "expr": []}},
]}


def test_it_reads_nfts_listing_back() -> None:
    table = nft.parse_table(LISTING)
    assert table.chain is not None and table.rule_count == 1
    assert table.sets["j_sshd_v4"] == {net("10.1.0.7/32"): None, net("10.2.0.0/16"): 598,
                                       net("10.3.0.0/31"): 59, net("10.3.0.2/32"): 59}
    assert table.raw_values["j_sshd_v4"][net("10.3.0.2/32")] == {"range": ["10.3.0.0", "10.3.0.2"]}
    assert nftables._state_of(table) == {
        "sshd": {net("10.1.0.7/32"): None, net("10.2.0.0/16"): 598, net("10.3.0.0/31"): 59, net("10.3.0.2/32"): 59,
                 net("fd00::1/128"): 7},
        BLOCKLIST: {}}


def test_it_deletes_a_few_elements_one_by_one_and_adds_after() -> None:
    table = nft.parse_table(LISTING)
    plan = ElementPlan(deletes=[ban("sshd", "10.1.0.7/32", None), ban("sshd", "10.3.0.2/32", 59)],
                       adds=[ban("sshd", "10.4.0.1/32", 30), ban(BLOCKLIST, "2001:db8::/32", None)])
    assert element_commands("ips", table, plan) == [
        {"delete": {"element": {"family": "inet", "table": "ips", "name": "j_sshd_v4",
                                "elem": ["10.1.0.7", {"range": ["10.3.0.0", "10.3.0.2"]}]}}},
        {"add": {"element": {"family": "inet", "table": "ips", "name": "blocklist_v6",
                             "elem": [{"prefix": {"addr": "2001:db8::", "len": 32}}]}}},
        {"add": {"element": {"family": "inet", "table": "ips", "name": "j_sshd_v4",
                             "elem": [{"elem": {"val": "10.4.0.1", "timeout": 30}}]}}},
    ]


def test_it_rewrites_a_set_instead_of_deleting_many_elements() -> None:
    keep = {net("10.0.0.1/32"): 50, net("10.0.0.2/32"): None, net("10.0.0.3/32"): 0}
    gone = {net(f"10.1.0.{i}/32"): 100 for i in range(1, 21)}
    table = nft.TableState(sets={"j_sshd_v4": {**keep, **gone}, "j_sshd_v6": {}})
    plan = ElementPlan(deletes=[ban("sshd", str(network), left) for network, left in gone.items()],
                       adds=[ban("sshd", "10.2.0.0/24", 10)])
    assert element_commands("ips", table, plan) == [
        {"flush": {"set": {"family": "inet", "table": "ips", "name": "j_sshd_v4"}}},
        {"add": {"element": {"family": "inet", "table": "ips", "name": "j_sshd_v4", "elem": [
            {"elem": {"val": "10.0.0.1", "timeout": 50}},  # with the time it had left
            "10.0.0.2",  # 10.0.0.3 was expiring: never re-added with a timeout of 0 (permanent)
            {"elem": {"val": {"prefix": {"addr": "10.2.0.0", "len": 24}}, "timeout": 10}}]}}},
    ]


@pytest.mark.parametrize(("error", "permanent", "message"), [
    ("netlink: Error: cache initialization failed: Operation not permitted\n", True, NEEDS),
    ("internal:0:0-0: Error: Could not process rule: Device or resource busy\n\n", False,
     "nft: Could not process rule: Device or resource busy"),
    ("internal:0:0-0: Error: Could not process rule: No buffer space available\n", False, "No buffer space"),
    ("internal:0:0-0: Error: syntax error, unexpected junk\n", True, "nft: syntax error, unexpected junk"),
    ("", True, "without a message"),
])
def test_it_maps_nft_errors_to_permanent_or_transient(error: str, permanent: bool, message: str) -> None:
    mapped = error_from_nft(error)
    assert mapped.permanent is permanent
    assert message in str(mapped)
    assert "internal:0:0-0" not in str(mapped)


def test_it_retries_when_the_kernel_changed_under_it() -> None:
    mapped = error_from_nft("internal:0:0-0: Error: element does not exist\n")
    assert isinstance(mapped, base._RaceError) and not mapped.permanent


def test_it_says_what_is_missing_without_libnftables(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    with pytest.raises(FirewallError, match="needs CAP_NET_ADMIN and libnftables1") as caught:
        firewall.NftablesBackend()
    assert caught.value.permanent


# -- the RecordingBackend (and the planning both backends share) ------------------------------


def as_backend(backend: NftablesBackend | RecordingBackend) -> FirewallBackend:
    return backend  # mypy checks that both follow the protocol the bans app uses


def test_it_applies_and_lists_bans(fake: RecordingBackend) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.1/32", 600), ban("sshd", "2001:db8::/64", None),
                    ban(BLOCKLIST, "198.51.100.0/24", None)])
    assert fake.snapshot() == {
        "sshd": {net("192.0.2.1/32"): 600, net("2001:db8::/64"): None},
        "nginx-http": {},
        BLOCKLIST: {net("198.51.100.0/24"): None},
    }


def test_it_refreshes_the_timeout_of_a_ban_added_again(fake: RecordingBackend, clock: Clock) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.1/32", 60)])
    clock.now += 50
    fake.apply(add=[ban("sshd", "192.0.2.1/32", 600)])
    assert fake.snapshot()["sshd"] == {net("192.0.2.1/32"): 600}


def test_it_lets_bans_expire(fake: RecordingBackend, clock: Clock) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.1/32", 60), ban("sshd", "192.0.2.2/32", None)])
    clock.now += 59.6
    assert fake.snapshot()["sshd"] == {net("192.0.2.1/32"): 0, net("192.0.2.2/32"): None}
    clock.now += 0.5
    assert fake.snapshot()["sshd"] == {net("192.0.2.2/32"): None}


def test_it_ignores_removing_what_is_not_there(fake: RecordingBackend) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.1/32")])
    fake.apply(remove=[ban("sshd", "192.0.2.1/32"), ban("sshd", "192.0.2.99/32"), ban("gone", "192.0.2.1/32")])
    assert fake.snapshot()["sshd"] == {}


def test_it_keeps_an_entry_both_removed_and_added(fake: RecordingBackend) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.1/32", 60)])
    fake.apply(add=[ban("sshd", "192.0.2.1/32", 900)], remove=[ban("sshd", "192.0.2.1/32")])
    assert fake.snapshot()["sshd"] == {net("192.0.2.1/32"): 900}


def test_it_refuses_overlapping_networks_and_applies_nothing(fake: RecordingBackend) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.0/24")])
    with pytest.raises(FirewallError, match=r"192\.0\.2\.7/32 overlaps 192\.0\.2\.0/24 in jail sshd") as caught:
        fake.apply(add=[ban("sshd", "198.51.100.1/32"), ban("sshd", "192.0.2.7/32")])
    assert caught.value.permanent
    assert caught.value.entries == (ban("sshd", "192.0.2.7/32"),)
    assert fake.snapshot()["sshd"] == {net("192.0.2.0/24"): 600}


def test_it_refuses_overlaps_within_one_call_naming_the_narrower(fake: RecordingBackend) -> None:
    with pytest.raises(FirewallError) as caught:
        fake.apply(add=[ban("sshd", "192.0.2.7/32"), ban("sshd", "192.0.2.0/24")])
    assert caught.value.entries == (ban("sshd", "192.0.2.7/32"),)


def test_it_widens_a_ban_when_the_narrower_one_is_lifted_in_the_same_call(fake: RecordingBackend) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.7/32")])
    fake.apply(add=[ban("sshd", "192.0.2.0/24")], remove=[ban("sshd", "192.0.2.7/32")])
    assert fake.snapshot()["sshd"] == {net("192.0.2.0/24"): 600}


def test_it_allows_the_same_network_in_two_jails(fake: RecordingBackend) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.0/24"), ban("nginx-http", "192.0.2.7/32"), ban(BLOCKLIST, "192.0.2.0/24")])
    assert len(fake.snapshot()["nginx-http"]) == 1


def test_it_refuses_bans_for_a_jail_without_sets(fake: RecordingBackend) -> None:
    with pytest.raises(FirewallError, match="No sets for postfix in the firewall") as caught:
        fake.apply(add=[ban("postfix", "192.0.2.1/32")])
    assert caught.value.permanent and caught.value.entries == (ban("postfix", "192.0.2.1/32"),)


def test_it_needs_rules_before_bans(clock: Clock) -> None:
    backend = RecordingBackend(clock=clock)
    with pytest.raises(FirewallError, match="call sync_rules"):
        backend.apply(add=[ban("sshd", "192.0.2.1/32")])


def test_it_keeps_bans_of_jails_that_stay_when_rules_change(fake: RecordingBackend) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.1/32"), ban("nginx-http", "192.0.2.2/32")])
    fake.sync_rules([JailRules("sshd", "2222", "tcp", "reject")])
    assert fake.snapshot() == {"sshd": {net("192.0.2.1/32"): 600}, BLOCKLIST: {}}


def test_it_keeps_a_jail_named_blocklist_apart(fake: RecordingBackend) -> None:
    fake.sync_rules([JailRules("blocklist", "ssh", "tcp", "drop")])
    fake.apply(add=[ban("blocklist", "192.0.2.1/32"), ban(BLOCKLIST, "192.0.2.0/24")])
    assert fake.snapshot() == {"blocklist": {net("192.0.2.1/32"): 600}, BLOCKLIST: {net("192.0.2.0/24"): 600}}


def test_it_reconciles_missing_stray_and_stale_bans(fake: RecordingBackend) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.1/32", 600), ban("sshd", "192.0.2.2/32", 600),
                    ban("sshd", "192.0.2.3/32", 600), ban(BLOCKLIST, "198.51.100.9/32", None)])
    result = fake.reconcile([
        ban("sshd", "192.0.2.1/32", 603),  # within the slack: left alone
        ban("sshd", "192.0.2.2/32", 60),  # stale: reset
        ban("nginx-http", "192.0.2.4/32", 30),  # missing: added
        ban("postfix", "192.0.2.5/32", 30),  # no such jail: skipped
    ])
    assert result.added == (ban("nginx-http", "192.0.2.4/32", 30),)
    assert set(result.removed) == {ban("sshd", "192.0.2.3/32", 600), ban(BLOCKLIST, "198.51.100.9/32", None)}
    assert result.refreshed == (ban("sshd", "192.0.2.2/32", 60),)
    assert [(entry.jail, "no sets for jail postfix" in why) for entry, why in result.skipped] == [("postfix", True)]
    assert fake.snapshot() == {"sshd": {net("192.0.2.1/32"): 600, net("192.0.2.2/32"): 60},
                               "nginx-http": {net("192.0.2.4/32"): 30}, BLOCKLIST: {}}


def test_it_reconciles_overlaps_keeping_the_wider_network(fake: RecordingBackend) -> None:
    result = fake.reconcile([ban("sshd", "192.0.2.7/32"), ban("sshd", "192.0.2.0/24"), ban("sshd", "192.0.2.9/32")])
    assert result.added == (ban("sshd", "192.0.2.0/24"),)
    assert [str(entry.network) for entry, _ in result.skipped] == ["192.0.2.7/32", "192.0.2.9/32"]
    assert "overlaps 192.0.2.0/24 in jail sshd" in result.skipped[0][1]


def test_it_reconciles_a_timeout_with_no_timeout(fake: RecordingBackend) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.1/32", None)])
    result = fake.reconcile([ban("sshd", "192.0.2.1/32", 600)])
    assert result.refreshed == (ban("sshd", "192.0.2.1/32", 600),)


def test_it_restores_bans_after_a_flush(fake: RecordingBackend) -> None:
    fake.apply(add=[ban("sshd", "192.0.2.1/32", 600)])
    fake.simulate_ruleset_flush()
    assert fake.snapshot() == {}  # the table is gone, as after `nft flush ruleset`
    assert fake.reconcile([ban("sshd", "192.0.2.1/32", 500)]).added == (ban("sshd", "192.0.2.1/32", 500),)
    assert fake.snapshot()["sshd"] == {net("192.0.2.1/32"): 500}


def test_it_records_calls_and_fails_when_told(fake: RecordingBackend) -> None:
    fake.fail_next(FirewallError("busy", permanent=False))
    with pytest.raises(FirewallError, match="busy"):
        fake.apply(add=[ban("sshd", "192.0.2.1/32")])
    fake.apply(add=[ban("sshd", "192.0.2.1/32")])
    fake.teardown()
    assert [method for method, _ in fake.calls] == ["sync_rules", "apply", "apply", "teardown"]
    assert fake.calls[1][1] == ((ban("sshd", "192.0.2.1/32"),), ())
    assert fake.jails is None
