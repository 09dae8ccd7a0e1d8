"""The nftables backend against a real kernel, inside network namespaces made for the test.

Two namespaces joined by a veth pair: the server (10.201.0.1, fd00:201::1) listens on ports 22 and
8080 and runs the backend; the attacker (10.201.0.2, fd00:201::2) connects. Both run a driver
process started with `ip netns exec` (see tests/bans/netns.py), so the host's ruleset is never
touched. A dropped connection shows as "timeout", a rejected one as "refused".
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import time
from collections.abc import Iterator

import pytest

from bans.firewall import BLOCKLIST, NEEDS, BanEntry, FirewallError, JailRules
from tests.bans.netns import (
    ATTACKER_V4,
    ATTACKER_V6,
    SERVER_V4,
    SERVER_V6,
    Driver,
    NamespacePair,
    RemoteFirewall,
    encode_entry,
    netns_unusable,
)

pytestmark = pytest.mark.netns

# How long a probe waits for a handshake before calling the port dropped (on a veth it takes < 1 ms).
DROP_WAIT = 0.5

JAILS = [
    JailRules("sshd", "all", "tcp", "drop"),
    JailRules("web-8080", "8080", "tcp", "drop"),
    JailRules("ssh.reject", "ssh", "tcp", "reject"),
    JailRules("blocklist", "ssh", "all", "drop"),  # a jail by that name, not the blocklist
]


def ban(jail: str, network: str, timeout: int | None = 600) -> BanEntry:
    return BanEntry(jail, ipaddress.ip_network(network), timeout)


@pytest.fixture(scope="module")
def pair() -> Iterator[NamespacePair]:
    reason = netns_unusable()
    if reason:
        pytest.skip(reason)
    pair = NamespacePair.create()
    try:
        yield pair
    finally:
        pair.destroy()


@pytest.fixture(scope="module")
def server(pair: NamespacePair) -> Driver:
    driver: Driver = pair.driver(pair.server)
    driver.call(op="listen", ports=[22, 8080])
    return driver


@pytest.fixture(scope="module")
def attacker(pair: NamespacePair) -> Driver:
    driver: Driver = pair.driver(pair.attacker)
    return driver


@pytest.fixture
def fw(server: Driver) -> Iterator[RemoteFirewall]:
    firewall = RemoteFirewall(server)
    firewall.sync_rules(JAILS)
    try:
        yield firewall
    finally:
        firewall.teardown()


def reach(attacker: Driver, port: int = 22, host: str = SERVER_V4) -> str:
    return str(attacker.call(op="probe", host=host, port=port, timeout=DROP_WAIT))


def test_it_blocks_an_address_until_the_ban_is_removed(fw: RemoteFirewall, attacker: Driver) -> None:
    assert reach(attacker) == "open"
    fw.apply(add=[ban("sshd", f"{ATTACKER_V4}/32")])
    assert (reach(attacker, 22), reach(attacker, 8080)) == ("timeout", "timeout")
    fw.apply(remove=[ban("sshd", f"{ATTACKER_V4}/32")])
    assert reach(attacker) == "open"


def test_it_lets_the_kernel_lift_a_ban_when_its_timeout_ends(fw: RemoteFirewall, attacker: Driver) -> None:
    fw.apply(add=[ban("sshd", f"{ATTACKER_V4}/32", timeout=2)])
    banned_at = time.monotonic()
    assert reach(attacker) == "timeout"
    for _ in range(20):  # bounded: at most ~10 s
        if reach(attacker) == "open":
            break
        time.sleep(0.25)
    assert reach(attacker) == "open"
    assert time.monotonic() - banned_at >= 1.5
    assert fw.snapshot()["sshd"] == {}


def test_it_blocks_only_the_ports_of_the_jail(fw: RemoteFirewall, attacker: Driver) -> None:
    fw.apply(add=[ban("web-8080", f"{ATTACKER_V4}/32")])
    assert (reach(attacker, 8080), reach(attacker, 22)) == ("timeout", "open")


def test_it_blocks_ipv6(fw: RemoteFirewall, attacker: Driver) -> None:
    fw.apply(add=[ban("sshd", f"{ATTACKER_V6}/128")])
    assert reach(attacker, host=SERVER_V6) == "timeout"
    assert reach(attacker, host=SERVER_V4) == "open"


def test_it_blocks_a_whole_network(fw: RemoteFirewall, attacker: Driver) -> None:
    fw.apply(add=[ban("sshd", "10.201.0.0/24", None), ban("web-8080", "fd00:201::/64", None)])
    assert reach(attacker) == "timeout"
    assert reach(attacker, 8080, host=SERVER_V6) == "timeout"
    assert fw.snapshot()["sshd"] == {ipaddress.ip_network("10.201.0.0/24"): None}


def test_it_rejects_or_drops_as_the_jail_says(fw: RemoteFirewall, attacker: Driver) -> None:
    fw.apply(add=[ban("ssh.reject", f"{ATTACKER_V4}/32"), ban("ssh.reject", f"{ATTACKER_V6}/128")])
    assert reach(attacker) == "refused"  # tcp reset
    assert reach(attacker, host=SERVER_V6) == "refused"
    assert reach(attacker, 8080) == "open"
    fw.apply(add=[ban("sshd", f"{ATTACKER_V4}/32")], remove=[ban("ssh.reject", f"{ATTACKER_V4}/32")])
    assert reach(attacker) == "timeout"


def test_it_blocklists_every_port_apart_from_a_jail_named_blocklist(fw: RemoteFirewall, attacker: Driver) -> None:
    fw.apply(add=[ban("blocklist", f"{ATTACKER_V4}/32")])
    assert (reach(attacker, 22), reach(attacker, 8080)) == ("timeout", "open")
    fw.apply(add=[ban(BLOCKLIST, f"{ATTACKER_V4}/32", None)], remove=[ban("blocklist", f"{ATTACKER_V4}/32")])
    assert (reach(attacker, 22), reach(attacker, 8080)) == ("timeout", "timeout")
    snapshot = fw.snapshot()
    assert snapshot["blocklist"] == {} and snapshot[BLOCKLIST] == {ipaddress.ip_network(f"{ATTACKER_V4}/32"): None}


def test_it_refreshes_the_timeout_of_a_ban_added_again(fw: RemoteFirewall) -> None:
    fw.apply(add=[ban("sshd", f"{ATTACKER_V4}/32", 100)])
    fw.apply(add=[ban("sshd", f"{ATTACKER_V4}/32", 5000)])
    [left] = fw.snapshot()["sshd"].values()
    assert left is not None
    assert 4990 <= left <= 5000


def test_it_refuses_an_overlap_and_applies_nothing(fw: RemoteFirewall) -> None:
    fw.apply(add=[ban("sshd", "10.201.0.0/24")])
    with pytest.raises(FirewallError, match=re.escape("overlaps 10.201.0.0/24 in jail sshd")) as caught:
        fw.apply(add=[ban("sshd", "192.0.2.1/32"), ban("sshd", f"{ATTACKER_V4}/32")])
    assert caught.value.permanent
    assert list(fw.snapshot()["sshd"]) == [ipaddress.ip_network("10.201.0.0/24")]


def test_it_keeps_bans_when_the_rules_change(fw: RemoteFirewall, attacker: Driver) -> None:
    fw.apply(add=[ban("sshd", f"{ATTACKER_V4}/32")])
    fw.sync_rules([JailRules("sshd", "8080", "tcp", "drop")])
    assert (reach(attacker, 22), reach(attacker, 8080)) == ("open", "timeout")
    assert set(fw.snapshot()) == {"sshd", BLOCKLIST}


def test_it_restores_bans_after_a_ruleset_flush(fw: RemoteFirewall, pair: NamespacePair, attacker: Driver) -> None:
    fw.apply(add=[ban("sshd", f"{ATTACKER_V4}/32", 60)])
    pair.nft("flush", "ruleset")
    assert reach(attacker) == "open"
    assert fw.snapshot() == {}
    result = fw.reconcile([ban("sshd", f"{ATTACKER_V4}/32", 55), ban(BLOCKLIST, f"{ATTACKER_V6}/128", None)])
    assert set(result.added) == {ban("sshd", f"{ATTACKER_V4}/32", 55), ban(BLOCKLIST, f"{ATTACKER_V6}/128", None)}
    assert reach(attacker) == "timeout"
    assert reach(attacker, 8080, host=SERVER_V6) == "timeout"
    [left] = fw.snapshot()["sshd"].values()
    assert left is not None
    assert 50 <= left <= 55


def test_it_removes_strays_and_resets_stale_timeouts_on_reconcile(fw: RemoteFirewall, attacker: Driver) -> None:
    fw.apply(add=[ban("sshd", f"{ATTACKER_V4}/32", 600), ban("web-8080", "192.0.2.0/24", 600)])
    result = fw.reconcile([ban("sshd", f"{ATTACKER_V4}/32", 3000)])
    assert result.removed == (ban("web-8080", "192.0.2.0/24", result.removed[0].timeout),)
    assert result.refreshed == (ban("sshd", f"{ATTACKER_V4}/32", 3000),)
    assert fw.snapshot()["web-8080"] == {}
    assert reach(attacker) == "timeout"


@pytest.mark.parametrize("flush", [("flush", "ruleset"), ("flush", "chain", "inet", "ips", "input")])
def test_it_puts_its_rules_back_when_applying_after_a_flush(
        fw: RemoteFirewall, pair: NamespacePair, attacker: Driver, flush: tuple[str, ...]) -> None:
    fw.apply(add=[ban("sshd", "192.0.2.1/32")])
    pair.nft(*flush)
    fw.apply(add=[ban("sshd", f"{ATTACKER_V4}/32")])
    assert reach(attacker) == "timeout"


def test_it_applies_ten_thousand_bans_in_one_batch(fw: RemoteFirewall, attacker: Driver) -> None:
    crowd = [ban("sshd", f"10.202.{i // 250}.{i % 250 + 1}/32", 3600) for i in range(10_000)]
    crowd.append(ban("sshd", f"{ATTACKER_V4}/32", 3600))
    encoded = [encode_entry(entry) for entry in crowd]
    added = fw.timed("apply", add=encoded, remove=[])
    assert len(fw.snapshot()["sshd"]) == 10_001
    assert reach(attacker) == "timeout"
    refreshed = fw.timed("apply", add=encoded, remove=[])
    one_more = fw.timed("apply", add=[encode_entry(ban("sshd", "10.203.0.1/32"))], remove=[])
    removed = fw.timed("apply", add=[], remove=encoded)
    assert reach(attacker) == "open"
    print(f"10,001 bans: add {added:.2f} s, refresh {refreshed:.2f} s, one more {one_more:.2f} s, "
          f"remove {removed:.2f} s")


def test_it_says_what_is_missing_without_cap_net_admin(pair: NamespacePair) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop CAP_NET_ADMIN")
    driver = pair.driver(pair.server, prefix=["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"])
    with pytest.raises(FirewallError, match=NEEDS) as caught:
        RemoteFirewall(driver).snapshot()
    assert caught.value.permanent
    assert "Operation not permitted" in caught.value.message


# --- the kernel always holds what the database says; every step is bounded --------------------------


def test_a_table_created_anew_holds_every_ban_in_the_same_transaction(
        pair: NamespacePair, server: Driver, attacker: Driver) -> None:
    # the report: after `nft flush ruleset` the next ban recreated the table holding only itself
    fw = RemoteFirewall(server, table="ipsnew")
    standing = [ban("sshd", "192.0.2.7/32", 600), ban("web-8080", "198.51.100.0/24", None),
                ban(BLOCKLIST, f"{ATTACKER_V6}/128", None), ban("sshd", f"{ATTACKER_V4}/32", 300)]
    fw.contents = lambda: standing
    try:
        fw.sync_rules(JAILS)
        assert {str(n) for n in fw.snapshot()["sshd"]} == {"192.0.2.7/32", f"{ATTACKER_V4}/32"}
        pair.nft("flush", "ruleset")
        assert reach(attacker) == "open"
        before = fw.generation()
        fw.apply(add=[ban("sshd", "203.0.113.5/32", 600)])  # the next ban after the flush
        kernel = fw.snapshot()
        assert {str(n) for n in kernel["sshd"]} == {"192.0.2.7/32", f"{ATTACKER_V4}/32", "203.0.113.5/32"}
        assert {str(n) for n in kernel["web-8080"]} == {"198.51.100.0/24"}
        assert {str(n) for n in kernel[BLOCKLIST]} == {f"{ATTACKER_V6}/128"}
        # restoring took one transaction (the table with its bans), adding the new ban another
        assert fw.generation() == before + 2
        assert reach(attacker) == "timeout"
    finally:
        fw.teardown()


def test_the_generation_moves_with_every_change_and_only_then(pair: NamespacePair, fw: RemoteFirewall) -> None:
    first, ours = fw.generation(), fw.commits
    fw.snapshot()
    assert fw.generation() == first  # reading changes nothing
    fw.apply(add=[ban("sshd", "192.0.2.9/32")])
    assert fw.generation() == first + 1
    # what the watch relies on (bans.tasks.watch_firewall): the backend counts its own transactions,
    # so a generation that moved by exactly those moved by us alone
    fw.apply(add=[ban("sshd", f"192.0.2.{n}/32") for n in range(10, 60)], remove=[ban("sshd", "192.0.2.9/32")])
    assert fw.generation() - first == fw.commits - ours == 2
    pair.nft("flush", "ruleset")
    assert fw.generation() == first + 3 and fw.commits - ours == 2


def test_a_hung_libnftables_call_is_abandoned_and_its_helper_killed(server: Driver) -> None:
    import os
    import signal

    fw = RemoteFirewall(server, table="ipshang", timeout=1.0)
    try:
        fw.sync_rules(JAILS)
        helper = fw.helper_pid()
        assert helper is not None
        os.kill(helper, signal.SIGSTOP)  # the helper hangs in the middle of nothing: it never answers
        started = time.monotonic()
        with pytest.raises(FirewallError, match="did not answer within 1 s") as caught:
            fw.apply(add=[ban("sshd", "192.0.2.10/32")])
        assert not caught.value.permanent and time.monotonic() - started < 3
        assert not os.path.exists(f"/proc/{helper}")  # killed and reaped
        fw.apply(add=[ban("sshd", "192.0.2.10/32")])  # a new helper takes the next call
        assert fw.helper_pid() not in (None, helper)
        assert {str(n) for n in fw.snapshot()["sshd"]} == {"192.0.2.10/32"}
    finally:
        fw.teardown()


def test_a_lock_held_elsewhere_fails_the_call_within_the_timeout(server: Driver) -> None:
    fw = RemoteFirewall(server, table="ipslock", timeout=1.0)
    try:
        fw.sync_rules(JAILS)
        server.call(op="lock", table="ipslock", seconds=3)
        started = time.monotonic()
        with pytest.raises(FirewallError, match="held by another process for over 1 s") as caught:
            fw.apply(add=[ban("sshd", "192.0.2.11/32")])
        assert not caught.value.permanent and 0.9 < time.monotonic() - started < 2.5
        time.sleep(3)
        fw.apply(add=[ban("sshd", "192.0.2.11/32")])
        assert {str(n) for n in fw.snapshot()["sshd"]} == {"192.0.2.11/32"}
    finally:
        fw.teardown()


INTERRUPTED_CALL = """
import json, os
from bans.firewall import nftchild

helper = nftchild.NftProcess(timeout=5)
listing = {"nftables": [{"list": {"tables": None}}]}
helper.json_cmd({"nftables": [{"add": {"table": {"family": "inet", "name": "ipsintr"}}}]})
first = helper.pid
real_read = nftchild.NftProcess._read_line

def interrupted(self, child, deadline):
    raise KeyboardInterrupt  # a task's time limit between the question and its answer

nftchild.NftProcess._read_line = interrupted
try:
    helper.json_cmd({"nftables": [{"delete": {"table": {"family": "inet", "name": "ipsintr"}}}]})
except KeyboardInterrupt:
    pass
nftchild.NftProcess._read_line = real_read
killed = not os.path.exists(f"/proc/{first}")
rc, output, error = helper.json_cmd(listing)  # must be this call's answer, not the delete's
names = [item["table"]["name"] for item in output["nftables"] if "table" in item]
print(json.dumps({"killed": killed, "new_helper": helper.pid != first, "rc": rc, "tables": names}))
"""


def test_an_interrupted_call_never_leaves_its_answer_for_the_next_one(pair: NamespacePair) -> None:
    import json
    import subprocess

    from tests.bans.netns import PYTHON, ROOT

    done = subprocess.run(["ip", "netns", "exec", pair.server, str(PYTHON), "-c", INTERRUPTED_CALL], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(done.stdout)
    assert result["killed"] and result["new_helper"] and result["rc"] == 0
    assert isinstance(result["tables"], list)  # a listing: the stale answer of the delete was never read
