"""Network namespaces for tests and benchmarks: a server and an attacker namespace joined by a veth
pair, so real nftables bans can be applied and probed without touching the host's own ruleset.

Nothing here creates an interface, route or rule in the host's namespace: the veth pair is made
inside the server namespace and its peer moved straight into the attacker's. tests/bans/netns.py
adds the firewall driver that runs inside them.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from typing import Self

SERVER_V4, ATTACKER_V4 = "10.201.0.1", "10.201.0.2"
SERVER_V6, ATTACKER_V6 = "fd00:201::1", "fd00:201::2"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def check(*command: str) -> str:
    done = run(*command)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def host_netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def netns_unusable() -> str | None:
    """Why `ip netns` cannot be used here, or None if it can (probed with a throwaway namespace)."""
    name = f"ipst-probe-{uuid.uuid4().hex[:8]}"
    try:
        added = run("ip", "netns", "add", name)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns` cannot run: {exc}"
    if added.returncode != 0:
        return f"`ip netns add` failed (root and CAP_SYS_ADMIN needed): {added.stderr.strip()}"
    run("ip", "netns", "del", name)
    return None


@dataclass
class NamespacePair:
    """"ipst-srv-<id>" and "ipst-atk-<id>" joined by a veth pair; created and deleted by the caller."""

    server: str
    attacker: str

    @classmethod
    def create(cls) -> Self:
        tag = uuid.uuid4().hex[:8]
        pair = cls(server=f"ipst-srv-{tag}", attacker=f"ipst-atk-{tag}")
        try:
            pair._build()
        except BaseException:
            pair.destroy()
            raise
        return pair

    def _build(self) -> None:
        check("ip", "netns", "add", self.server)
        check("ip", "netns", "add", self.attacker)
        # Created inside the server namespace, its peer moved straight into the attacker's:
        # no interface ever appears in the host's namespace.
        check("ip", "-n", self.server, "link", "add", "vsrv", "type", "veth", "peer", "name", "vatk",
              "netns", self.attacker)
        for namespace, device, v4, v6 in ((self.server, "vsrv", SERVER_V4, SERVER_V6),
                                          (self.attacker, "vatk", ATTACKER_V4, ATTACKER_V6)):
            check("ip", "-n", namespace, "addr", "add", f"{v4}/24", "dev", device)
            # nodad: usable at once, no duplicate address detection wait
            check("ip", "-n", namespace, "addr", "add", f"{v6}/64", "dev", device, "nodad")
            check("ip", "-n", namespace, "link", "set", device, "up")
            check("ip", "-n", namespace, "link", "set", "lo", "up")

    def nft(self, *args: str) -> str:
        """The nft CLI, for inspection and for `flush ruleset`, inside the server namespace only."""
        return check("ip", "netns", "exec", self.server, "nft", *args)

    def destroy(self) -> None:
        for namespace in (self.server, self.attacker):
            run("ip", "netns", "del", namespace)  # takes its end of the veth pair with it


# The fleet's network: a central namespace holding a bridge, and one namespace per member host with
# a veth pair whose central end is a port of the bridge.
FLEET_PREFIX = "10.210.0"


@dataclass
class FleetNet:
    """"ipsf-c-<id>" (the central host, with the bridge br0 at FLEET_PREFIX.1) and one namespace per
    member at FLEET_PREFIX.2, .3 ...; created and deleted by the caller. Nothing appears in the
    host's own namespace: every veth is made inside the central one and its peer moved away."""

    central: str
    members: dict[str, str]  # member name -> namespace
    addresses: dict[str, str]  # member name -> address (the central's: "central")

    @classmethod
    def create(cls, members: list[str]) -> Self:
        tag = uuid.uuid4().hex[:6]
        net = cls(central=f"ipsf-c-{tag}", members={name: f"ipsf-{index}-{tag}" for index, name in enumerate(members)},
                  addresses={"central": f"{FLEET_PREFIX}.1"})
        try:
            net._build()
        except BaseException:
            net.destroy()
            raise
        return net

    def _build(self) -> None:
        check("ip", "netns", "add", self.central)
        check("ip", "-n", self.central, "link", "set", "lo", "up")
        check("ip", "-n", self.central, "link", "add", "br0", "type", "bridge")
        check("ip", "-n", self.central, "addr", "add", f"{self.addresses['central']}/24", "dev", "br0")
        check("ip", "-n", self.central, "link", "set", "br0", "up")
        for index, (name, namespace) in enumerate(self.members.items(), start=2):
            self.addresses[name] = f"{FLEET_PREFIX}.{index}"
            check("ip", "netns", "add", namespace)
            check("ip", "-n", namespace, "link", "set", "lo", "up")
            port = self.port(name)
            check("ip", "-n", self.central, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                  "netns", namespace)
            check("ip", "-n", self.central, "link", "set", port, "master", "br0")
            check("ip", "-n", self.central, "link", "set", port, "up")
            check("ip", "-n", namespace, "addr", "add", f"{self.addresses[name]}/24", "dev", "eth0")
            check("ip", "-n", namespace, "link", "set", "eth0", "up")

    def port(self, name: str) -> str:
        return f"p{list(self.members).index(name)}"

    def cut(self, name: str) -> None:
        """The member's link down, as an unplugged cable: no packet either way, no reset."""
        check("ip", "-n", self.central, "link", "set", self.port(name), "down")

    def restore(self, name: str) -> None:
        check("ip", "-n", self.central, "link", "set", self.port(name), "up")

    def namespace(self, name: str) -> str:
        return self.central if name == "central" else self.members[name]

    def nft_elements(self, name: str, table: str = "ips") -> dict[str, set[str]]:
        """Each set of our table in that host's kernel, with its elements' addresses or networks
        (none when the table is not there yet)."""
        done = run("ip", "netns", "exec", self.namespace(name), "nft", "-j", "list", "table", "inet", table)
        if done.returncode != 0:
            return {}
        found: dict[str, set[str]] = {}
        for item in json.loads(done.stdout).get("nftables", []):
            chosen = item.get("set")
            if chosen:
                found[chosen["name"]] = {_element_text(element) for element in chosen.get("elem", [])}
        return found

    def destroy(self) -> None:
        for namespace in (*self.members.values(), self.central):
            run("ip", "netns", "del", namespace)


def _element_text(element: object) -> str:
    """An nft JSON set element as text: "203.0.113.9", or a prefix as "203.0.113.0/24"."""
    if isinstance(element, dict):
        inner = element.get("elem", element.get("prefix"))
        if isinstance(inner, dict) and "val" in inner:
            return _element_text(inner["val"])
        if isinstance(inner, dict) and "addr" in inner:
            return f"{inner['addr']}/{inner['len']}"
        if "addr" in element:
            return f"{element['addr']}/{element['len']}"
        return _element_text(inner)
    return str(element)
