"""The firewall backend: bans become elements of our own nftables sets (plain Python, no Django).

The bans app talks to a `FirewallBackend`:

- `sync_rules(jails)` makes our table hold one set pair and one rule set per jail (and the blocklist);
- `apply(add, remove)` changes elements in ONE atomic transaction;
- `snapshot()` reads back what the kernel holds, per jail: network -> seconds left;
- `reconcile(desired)` makes the kernel agree with the database (the truth about bans);
- `teardown()` deletes our table.

`NftablesBackend` does it through libnftables' JSON API (`nft.py` spells the JSON);
`bans.firewall.recording.RecordingBackend` is an in-memory fake with the same rules, for tests elsewhere. Both share the
planning functions below, so they refuse and accept the same things.

Two rules of nftables shape the planning:
- an interval set cannot hold overlapping elements (203.0.113.5 and 203.0.113.0/24 in one jail), so
  such an add is refused up front, naming both, instead of failing the whole batch in the kernel;
- adding an element that exists leaves its timeout alone on older kernels, and deleting one that is
  not there fails the batch; so each call reads the sets first and refreshes by delete + add (or
  rewrites the set in the same transaction when many elements go: see element_commands). New bans
  skip the read: they are created in a batch the kernel refuses whole if one exists after all.

The package: `base.py` (the vocabulary: JailRules, BanEntry, errors, the backend protocol),
`ports.py`, `planning.py`, `nftables.py` (the real backend), `nft.py` (its JSON), `nftchild.py`
(the helper process that calls libnftables), `netlink.py` (the ruleset generation and its change
notices), `recording.py` (the in-memory fake for tests). All plain Python, no Django: the bans
app's `sync.py`, `status.py` and `watching.py` drive it from the database.
"""

from bans.firewall.base import (
    BLOCKLIST,
    BLOCKTYPES,
    PROTOCOLS,
    BanEntry,
    FirewallBackend,
    FirewallError,
    JailRules,
    ReconcileResult,
    State,
)
from bans.firewall.nft import IPNetwork
from bans.firewall.nftables import NEEDS, NftablesBackend, element_commands, error_from_nft
from bans.firewall.planning import plan_apply, plan_reconcile, rule_specs
from bans.firewall.ports import resolve_ports

__all__ = [
    "BLOCKLIST",
    "BLOCKTYPES",
    "NEEDS",
    "PROTOCOLS",
    "BanEntry",
    "FirewallBackend",
    "FirewallError",
    "IPNetwork",
    "JailRules",
    "NftablesBackend",
    "ReconcileResult",
    "State",
    "element_commands",
    "error_from_nft",
    "plan_apply",
    "plan_reconcile",
    "resolve_ports",
    "rule_specs",
]
