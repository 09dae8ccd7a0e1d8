"""Network namespaces for tests and benchmarks: a server and an attacker namespace joined by a veth
pair, so real nftables bans can be applied and probed without touching the host's own ruleset.

Nothing here creates an interface, route or rule in the host's namespace: the veth pair is made
inside the server namespace and its peer moved straight into the attacker's. tests/bans/netns.py
adds the firewall driver that runs inside them.
"""

from __future__ import annotations

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
