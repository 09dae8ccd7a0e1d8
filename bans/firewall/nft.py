"""How our firewall layout is said in libnftables' JSON, and how nft's JSON listing is read back.

Plain functions over plain data (no kernel, no Django), so every command we would send can be
looked at in unit tests. `bans.firewall` decides *what* to send; this module only spells it.
Addresses always travel as JSON values built from `ipaddress` objects, never as nft command text.

Layout, in one `inet` table (default "ips"):

    chain input { type filter hook input priority filter - 10; policy accept; }
    set blocklist_v4 / blocklist_v6          the permanent blocklist, matched first, all traffic
    set j_<jail>_v4 / j_<jail>_v6            one pair per jail (type ipv4_addr / ipv6_addr)

Every set has `flags interval, timeout`: elements can be networks, and the kernel lifts a ban by
itself when its timeout runs out, even while our workers are down.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BLOCKLIST_SET_BASE",
    "CHAIN",
    "CHAIN_PRIORITY",
    "FAMILY",
    "Command",
    "IPNetwork",
    "RuleSpec",
    "TableState",
    "add_elements",
    "create_elements",
    "delete_elements",
    "delete_table",
    "element",
    "element_value",
    "flush_set",
    "jail_from_set_base",
    "jail_set_base",
    "list_chain",
    "list_table",
    "list_tables",
    "parse_elements",
    "parse_table",
    "rule_count",
    "rules_for",
    "set_name",
    "structure_commands",
    "with_timeout",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Command = dict[str, Any]

FAMILY = "inet"
CHAIN = "input"
# "filter - 10": ahead of the usual filter chains (priority 0), so a ban wins over their accepts.
CHAIN_PRIORITY = -10
SET_FLAGS = ["interval", "timeout"]
BLOCKLIST_SET_BASE = "blocklist"
JAIL_SET_PREFIX = "j_"
# The kernel's NFT_SET_MAXNAMELEN is 256 bytes with the trailing NUL.
MAX_SET_NAME = 255
TABLE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")

# Set names keep only [A-Za-z0-9_]. '_' starts an escape, so the encoding can be read back: the
# jail of a set is known from its name alone, even in a worker that has not synced rules yet.
_ESCAPES = {"_": "_u", "-": "_h", ".": "_d", "@": "_a"}
_UNESCAPES = {code[1]: char for char, code in _ESCAPES.items()}
_FAMILY_SUFFIX = {4: "_v4", 6: "_v6"}
_ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
_SADDR = {4: "ip", 6: "ip6"}
PORT_PROTOCOLS = ("tcp", "udp", "sctp", "dccp")


def jail_set_base(jail: str) -> str:
    """`j_` + the jail name with every character outside [A-Za-z0-9] escaped (nginx-http -> j_nginx_hhttp).

    The prefix keeps a jail named "blocklist" away from the blocklist's own sets.
    """
    if not jail:
        raise ValueError("A jail needs a name.")
    parts = []
    for char in jail:
        if char.isascii() and char.isalnum():
            parts.append(char)
        elif char in _ESCAPES:
            parts.append(_ESCAPES[char])
        else:
            parts.append(f"_x{ord(char):x}_")
    base = JAIL_SET_PREFIX + "".join(parts)
    if len(base) + len(_FAMILY_SUFFIX[4]) > MAX_SET_NAME:
        raise ValueError(f"The jail name {jail[:40]!r}... is too long for an nftables set name.")
    return base


def jail_from_set_base(base: str) -> str | None:
    """The jail whose sets are named `base`, or None if `base` is not one of our jail encodings."""
    if not base.startswith(JAIL_SET_PREFIX) or len(base) == len(JAIL_SET_PREFIX):
        return None
    text = base[len(JAIL_SET_PREFIX):]
    out: list[str] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char != "_":
            out.append(char)
            pos += 1
            continue
        code = text[pos + 1: pos + 2]
        if code in _UNESCAPES:
            out.append(_UNESCAPES[code])
            pos += 2
        elif code == "x":
            end = text.find("_", pos + 2)
            if end < 0:
                return None
            try:
                out.append(chr(int(text[pos + 2: end], 16)))
            except ValueError:
                return None
            pos = end + 1
        else:
            return None
    return "".join(out)


def set_name(base: str, version: int) -> str:
    return base + _FAMILY_SUFFIX[version]


def split_set_name(name: str) -> tuple[str, int] | None:
    """("j_sshd", 4) for "j_sshd_v4"; None for a name we did not make."""
    for version, suffix in _FAMILY_SUFFIX.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], version
    return None


# -- elements ---------------------------------------------------------------------------------


def element_value(network: IPNetwork) -> str | dict[str, Any]:
    """A single address as a plain string, a wider network as a JSON prefix."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


def element(network: IPNetwork, timeout: int | None) -> str | dict[str, Any]:
    """An element to add; `timeout` in seconds, None for none (nft reads 0 as "none" too, so never send 0)."""
    return with_timeout(element_value(network), timeout)


def with_timeout(value: str | dict[str, Any], timeout: int | None) -> str | dict[str, Any]:
    if timeout is None:
        return value
    if timeout < 1:
        raise ValueError(f"A timeout of {timeout} would make {value!r} permanent.")
    return {"elem": {"val": value, "timeout": timeout}}


def _set_ref(table: str, name: str) -> dict[str, Any]:
    return {"family": FAMILY, "table": table, "name": name}


def add_elements(table: str, name: str, elements: Sequence[str | dict[str, Any]]) -> Command:
    return {"add": {"element": {**_set_ref(table, name), "elem": list(elements)}}}


def create_elements(table: str, name: str, elements: Sequence[str | dict[str, Any]]) -> Command:
    """Like add_elements, but the batch fails ("File exists", "interval overlaps") if one is there already."""
    return {"create": {"element": {**_set_ref(table, name), "elem": list(elements)}}}


def flush_set(table: str, name: str) -> Command:
    return {"flush": {"set": _set_ref(table, name)}}


def delete_elements(table: str, name: str, values: Sequence[str | dict[str, Any]]) -> Command:
    return {"delete": {"element": {**_set_ref(table, name), "elem": list(values)}}}


# -- table, chain, sets, rules ----------------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    """What one set pair blocks: a protocol ("tcp", "udp", "sctp", "dccp" or "all"), destination port
    ranges (None: every port) and a verdict ("drop" or "reject")."""

    set_base: str
    comment: str
    protocol: str
    ports: tuple[tuple[int, int], ...] | None
    blocktype: str


def list_tables() -> Command:
    return {"list": {"tables": None}}


def list_table(table: str) -> Command:
    return {"list": {"table": {"family": FAMILY, "name": table}}}


def list_chain(table: str) -> Command:
    """Our chain and its rules, without the sets' elements (libnftables 1.0.6 still fetches those: with
    10,000 bans ~50 ms, a quarter of listing the table)."""
    return {"list": {"chain": {"family": FAMILY, "table": table, "name": CHAIN}}}


def delete_table(table: str) -> Command:
    return {"delete": {"table": {"family": FAMILY, "name": table}}}


def _chain(table: str) -> dict[str, Any]:
    return {"family": FAMILY, "table": table, "name": CHAIN, "type": "filter", "hook": "input",
            "prio": CHAIN_PRIORITY, "policy": "accept"}


def _set(table: str, name: str, version: int) -> Command:
    return {"add": {"set": {**_set_ref(table, name), "type": _ADDR_TYPE[version], "flags": SET_FLAGS}}}


def structure_commands(table: str, specs: Sequence[RuleSpec], existing: TableState | None) -> list[Command]:
    """One transaction that makes the table hold exactly these set pairs and rules.

    Sets that stay keep their elements: the chain is flushed and its rules written again in the same
    batch (packets never see a half-built chain), and only sets of jails that are gone are deleted.
    """
    commands: list[Command] = [{"add": {"table": {"family": FAMILY, "name": table}}}]
    chain_ref = {"family": FAMILY, "table": table, "name": CHAIN}
    if existing is not None and existing.chain is not None and not _chain_matches(existing.chain, table):
        # A chain left by an older layout (other hook or priority) cannot be changed in place.
        commands += [{"flush": {"chain": chain_ref}}, {"delete": {"chain": chain_ref}}]
    commands.append({"add": {"chain": _chain(table)}})
    commands.append({"flush": {"chain": chain_ref}})
    wanted = {set_name(spec.set_base, version): version for spec in specs for version in (4, 6)}
    commands += [_set(table, name, version) for name, version in wanted.items()]
    if existing is not None:
        # The flush above already dropped the rules that referenced these sets.
        commands += [{"delete": {"set": _set_ref(table, name)}} for name in sorted(existing.sets)
                     if name not in wanted]
    for spec in specs:
        commands += [{"add": {"rule": rule}} for rule in rules_for(table, spec)]
    return commands


def _chain_matches(chain: Mapping[str, Any], table: str) -> bool:
    want = _chain(table)
    return all(chain.get(key) == want[key] for key in ("type", "hook", "prio"))


def _match(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def _ports_value(ports: Sequence[tuple[int, int]]) -> Any:
    values: list[Any] = [low if low == high else {"range": [low, high]} for low, high in ports]
    return values[0] if len(values) == 1 else {"set": values}


def _l4_matches(protocols: Sequence[str], ports: Sequence[tuple[int, int]] | None) -> list[dict[str, Any]]:
    """Protocol (and port) matches; `th dport` covers several port protocols in one rule."""
    l4proto = {"meta": {"key": "l4proto"}}
    if len(protocols) == 1:
        matches = [_match(l4proto, protocols[0])]
        port_field = {"payload": {"protocol": protocols[0], "field": "dport"}}
    else:
        matches = [_match(l4proto, {"set": list(protocols)})]
        port_field = {"payload": {"protocol": "th", "field": "dport"}}
    if ports is not None:
        matches.append(_match(port_field, _ports_value(ports)))
    return matches


def rules_for(table: str, spec: RuleSpec) -> list[dict[str, Any]]:
    """The rules of one set pair, IPv4 then IPv6.

    drop: one rule per family. reject: TCP gets a reset, everything else an ICMP(v6) port
    unreachable (icmpx), so protocol "all" needs a TCP rule ahead of the rest.
    """
    rules = []
    for version in (4, 6):
        saddr = _match({"payload": {"protocol": _SADDR[version], "field": "saddr"}},
                       "@" + set_name(spec.set_base, version))
        for protocols, verdict in _verdicts(spec):
            l4 = _l4_matches(protocols, spec.ports) if protocols else []
            rules.append({"family": FAMILY, "table": table, "chain": CHAIN, "comment": spec.comment,
                          "expr": [*l4, saddr, verdict]})
    return rules


def rule_count(specs: Sequence[RuleSpec]) -> int:
    """How many rules the chain holds when these specs are in place."""
    return sum(2 * len(_verdicts(spec)) for spec in specs)


def _verdicts(spec: RuleSpec) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """(protocols to match, verdict) pairs; no protocols means "any traffic"."""
    every = () if spec.ports is None else PORT_PROTOCOLS
    wanted = every if spec.protocol == "all" else (spec.protocol,)
    if spec.blocktype == "drop":
        return [(wanted, {"drop": None})]
    unreachable = {"reject": {"type": "icmpx", "expr": "port-unreachable"}}
    reset = {"reject": {"type": "tcp reset"}}
    if spec.protocol == "tcp":
        return [(("tcp",), reset)]
    if spec.protocol != "all":
        return [(wanted, unreachable)]
    rest = () if spec.ports is None else tuple(p for p in PORT_PROTOCOLS if p != "tcp")
    return [(("tcp",), reset), (rest, unreachable)]


# -- reading nft's listing back ---------------------------------------------------------------


@dataclass
class TableState:
    """Our table as nft listed it: its chain (None if missing) and each set's elements."""

    chain: dict[str, Any] | None = None
    rule_count: int = 0
    # set name -> network -> seconds left (None: no timeout)
    sets: dict[str, dict[IPNetwork, int | None]] = field(default_factory=dict)
    # set name -> network -> the JSON value to delete it with, for elements that are not a prefix
    # (a range someone added by hand is read as several networks but deleted as one range)
    raw_values: dict[str, dict[IPNetwork, Any]] = field(default_factory=dict)


def parse_table(listing: Mapping[str, Any]) -> TableState:
    state = TableState()
    for item in listing.get("nftables", []):
        if "chain" in item and item["chain"].get("name") == CHAIN:
            state.chain = item["chain"]
        elif "rule" in item and item["rule"].get("chain") == CHAIN:
            state.rule_count += 1
        elif "set" in item:
            name = item["set"]["name"]
            elements, raw = parse_elements(item["set"].get("elem", []))
            state.sets[name] = elements
            if raw:
                state.raw_values[name] = raw
    return state


def parse_elements(items: Iterable[Any]) -> tuple[dict[IPNetwork, int | None], dict[IPNetwork, Any]]:
    """Elements of a listed set: network -> seconds left, plus the raw values of non-prefix elements."""
    elements: dict[IPNetwork, int | None] = {}
    raw: dict[IPNetwork, Any] = {}
    for item in items:
        value, expires = item, None
        if isinstance(item, dict) and "elem" in item:
            value = item["elem"]["val"]
            expires = item["elem"].get("expires", item["elem"].get("timeout"))
        networks = _networks_of(value)
        for network in networks:
            elements[network] = expires
            if len(networks) > 1 or (isinstance(value, dict) and "range" in value):
                raw[network] = value
    return elements, raw


def _networks_of(value: Any) -> list[IPNetwork]:
    if isinstance(value, str):
        return [ipaddress.ip_network(value)]
    if isinstance(value, dict) and "prefix" in value:
        return [ipaddress.ip_network((value["prefix"]["addr"], value["prefix"]["len"]))]
    if isinstance(value, dict) and "range" in value:
        low, high = (ipaddress.ip_address(bound) for bound in value["range"])
        return list(ipaddress.summarize_address_range(low, high))
    raise ValueError(f"nft listed an element this backend cannot read: {value!r}")
