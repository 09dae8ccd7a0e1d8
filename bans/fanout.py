"""A fleet's fan-out: a ban made on one host copied to the other hosts its jail's scope names.

A ban is made once, where its failures were seen (an agent's watcher, or the central server's), as
the *original*; whoever makes it marks it `fanout_pending` when its jail's scope reaches beyond that
host, and asks for a fan-out once its transaction commits (bans.services: `reaches_other_hosts`,
`request_fan_out`, a message on the central `fleet` queue). The central side (`fan_out_pending`, the task
bans.tasks.fan_out) then decides the hosts itself, from the jail's scope and the Hosts table, never
from anything an agent wrote, checks the ban against the lockout gate (which protects every fleet
host's pinned addresses and the panel's sessions), and inserts one *copy* per host (`Ban.primary`),
each applied by its own host's firewall worker. A copy has the original's absolute end time, so a
host that was away and applies it late bans for the remaining time only.

The message carries nothing: it only wakes the central worker, which reads the originals waiting
in the database (row-level security let each agent write only its own host's bans). A forged
message costs one look at an index of a few rows. Beat's run of the same task is the safety net
for a message that was lost.

A host that joins gets copies of every original in force whose scope includes it (`copy_to_host`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from bans import services
from bans.gate import Gate
from bans.models import Ban
from jails.models import Host, Jail

log = logging.getLogger(__name__)

# Originals taken per transaction: a ban storm on one host (thousands a read) is copied in batches.
BATCH = 2000


def scope_hosts(jail: Jail | None, jail_name: str, hosts: Sequence[Host], origin: str) -> list[str]:
    """The hosts other than `origin` that a ban of this jail applies on (the blocklist: all)."""
    others = [host for host in hosts if host.state != Host.State.REVOKED and host.name != origin]
    if jail is None:
        return [host.name for host in others] if jail_name == Ban.BLOCKLIST else []
    if jail.ban_scope == Jail.BanScope.ALL:
        return [host.name for host in others]
    if jail.ban_scope == Jail.BanScope.GROUP:
        return [host.name for host in others if jail.ban_group in host.groups]
    return []


def copy_of(original: Ban, host: str) -> Ban:
    """The original, to be applied on `host`: same jail, network and end time; no evidence (the
    original keeps it), no count in the statistics (one ban, however many hosts apply it)."""
    return Ban(jail_id=original.jail_id, jail_name=original.jail_name, network=original.network,
               family=original.family, host=host, started_at=original.started_at, expires_at=original.expires_at,
               bantime=original.bantime, earlier_bans=original.earlier_bans, origin=original.origin,
               created_by_id=original.created_by_id, reason=original.reason, state=Ban.State.PENDING,
               primary=original)


@dataclass
class FanoutReport:
    originals: int = 0
    copies: int = 0
    refused: dict[int, str] = field(default_factory=dict)  # original's id -> why the gate refused it
    hosts: set[str] = field(default_factory=set)


def has_work() -> bool:
    """Beat's guard: are there originals waiting to be copied?"""
    return Ban.objects.filter(fanout_pending=True).exists()


def fan_out_pending() -> FanoutReport:
    """Copy the waiting originals to the hosts their jails' scope names; each host's firewall worker
    is asked to apply its copies once this commits. Idempotent: a copy that exists already (or a
    live ban of the same jail and network on that host) is left as it is."""
    report = FanoutReport()
    while True:
        batch = _fan_out_batch()
        report.originals += batch.originals
        report.copies += batch.copies
        report.refused.update(batch.refused)
        report.hosts |= batch.hosts
        if batch.originals < BATCH:
            return report


def _fan_out_batch() -> FanoutReport:
    report = FanoutReport()
    with transaction.atomic():
        # skip_locked (PostgreSQL): two central workers running at once split the originals between
        # them instead of waiting; SQLite runs one writer at a time anyway
        originals = list(Ban.objects.filter(fanout_pending=True).select_related("jail").order_by("pk")
                         .select_for_update(skip_locked=True, of=("self",))[:BATCH])
        if not originals:
            return report
        report.originals = len(originals)
        hosts = [Host.central(), *Host.objects.exclude(name=settings.IPS_HOST_NAME[:40])]
        now = timezone.now()
        in_force = [ban for ban in originals if ban.state in Ban.LIVE_STATES and
                    (ban.expires_at is None or ban.expires_at > now)]
        copies: list[Ban] = []
        # this server's addresses, the panel's sessions, every fleet host's pinned addresses, the ignore lists
        shields = services.current_gate() if in_force else Gate()
        for ban in in_force:
            why = shields.refusal(ban.ip_network, ignore_jails=[ban.jail_name])
            if why is not None:  # never copied: each host's firewall worker would refuse it anyway
                report.refused[ban.pk] = why
                log.warning("[%s] not copied to other hosts: %s", ban.jail_name, why)
                continue
            copies.extend(copy_of(ban, host) for host in scope_hosts(ban.jail, ban.jail_name, hosts, ban.host))
        # one live row per (jail, network, host): where one exists (the host banned it itself, or an
        # earlier run copied it), nothing is inserted
        Ban.objects.bulk_create(copies, ignore_conflicts=True)
        Ban.objects.filter(pk__in=[ban.pk for ban in originals]).update(fanout_pending=False)
        report.copies = len(copies)
        report.hosts = {ban.host for ban in copies}
        for host in sorted(report.hosts):
            services.request_firewall_sync(host)
    return report


def copy_to_host(host: Host) -> int:
    """A host joining the fleet receives every original in force whose scope includes it; returns
    how many copies were made (their end times are the originals': the remaining durations)."""
    now = timezone.now()
    made = 0
    beyond_host = [Jail.BanScope.ALL, Jail.BanScope.GROUP]
    originals = (Ban.objects.originals().in_force(now).exclude(host=host.name).select_related("jail")
                 .filter(Q(jail__isnull=True, jail_name=Ban.BLOCKLIST) | Q(jail__ban_scope__in=beyond_host)))
    batch: list[Ban] = []
    for original in originals.iterator(chunk_size=BATCH):
        if host.name in scope_hosts(original.jail, original.jail_name, [host], original.host):
            batch.append(copy_of(original, host.name))
        if len(batch) >= BATCH:
            made += _insert_copies(batch)
            batch = []
    made += _insert_copies(batch)
    if made:
        services.request_firewall_sync(host.name)
    return made


def _insert_copies(copies: Sequence[Ban]) -> int:
    if not copies:
        return 0
    Ban.objects.bulk_create(copies, ignore_conflicts=True)
    return len(copies)


def end_host(name: str) -> int:
    """A host leaves the fleet: the bans it made are lifted with their copies on the other hosts,
    and every row it was to apply ends (its kernel is no longer ours to change: its elements time
    out there by themselves). Returns how many of its rows ended."""
    now = timezone.now()
    made_there = list(Ban.objects.originals().in_force(now).filter(host=name).values_list("pk", flat=True))
    copies = Ban.objects.in_force(now).filter(primary__in=made_there).exclude(host=name)
    hosts = set(copies.values_list("host", flat=True).distinct())
    copies.update(state=Ban.State.LIFTING)
    held = [*Ban.LIVE_STATES, Ban.State.LIFTING]
    ended = Ban.objects.filter(host=name, state__in=held).update(state=Ban.State.LIFTED, ended_at=now,
                                                                 fanout_pending=False)
    for host in sorted(hosts):
        services.request_firewall_sync(host)
    return ended


def with_copies(pks: Iterable[int]) -> Q:
    """The bans `pks` and their copies on other hosts: what lifting or changing a ban acts on."""
    chosen = list(pks)
    return Q(pk__in=chosen) | Q(primary__in=chosen)
