"""Failures, bans and their history.

The database is the truth about bans: the kernel's nftables sets are made to agree with the
active Ban rows (reconciled at worker start and on a schedule). A ban counts as active only once
the kernel has it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from django.conf import settings
from django.db import models
from django.utils import timezone

from jails.models import Jail, this_host_name


class Failure(models.Model):
    """One failure read from a log: who, when, which line, what the filter captured."""

    # no index of its own: (jail, address, time) below starts with it. Every index costs each of the
    # thousands of rows a ban storm writes per read.
    jail = models.ForeignKey(Jail, on_delete=models.CASCADE, related_name="failures", db_index=False)
    address = models.GenericIPAddressField(unpack_ipv4=True)
    time = models.DateTimeField(db_index=True)
    line = models.TextField(blank=True)
    fields = models.JSONField(default=dict, blank=True, help_text="Captured values such as user.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["jail", "address", "time"])]
        ordering = ["-time"]

    def __str__(self) -> str:
        return f"{self.jail_id}: {self.address} at {self.time:%Y-%m-%d %H:%M:%S}"


class Tally(models.Model):
    """The current failure count of one address in one jail (maxretry within findtime)."""

    jail = models.ForeignKey(Jail, on_delete=models.CASCADE, related_name="tallies")
    # each host of a fleet counts the failures its own logs show, as fail2ban does on each server
    host = models.CharField(max_length=40, default=this_host_name)
    address = models.GenericIPAddressField(unpack_ipv4=True)
    first_time = models.DateTimeField()
    last_time = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    matches = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["jail", "host", "address"],
                                               name="tally_one_per_jail_host_address")]

    def __str__(self) -> str:
        return f"{self.address}: {self.count} in {self.jail_id}"


class Ignored(models.Model):
    """A failure that reached a decision but was not banned, and why (ignoreip, this host...)."""

    jail = models.ForeignKey(Jail, on_delete=models.CASCADE, related_name="ignored")
    address = models.GenericIPAddressField(unpack_ipv4=True)
    time = models.DateTimeField(default=timezone.now, db_index=True)
    reason = models.CharField(max_length=300)

    class Meta:
        ordering = ["-time"]

    def __str__(self) -> str:
        return f"{self.address}: {self.reason}"


class BanQuerySet(models.QuerySet["Ban"]):
    def originals(self) -> BanQuerySet:
        """One row per ban as people see it: not the copies applying it on other hosts of a fleet."""
        return self.filter(primary__isnull=True)

    def live(self) -> BanQuerySet:
        """Bans in a live state (Ban.LIVE_STATES), whatever time they have left."""
        return self.filter(state__in=Ban.LIVE_STATES)

    def in_force(self, now: dt.datetime | None = None) -> BanQuerySet:
        """Bans that hold (or are about to) now: a live state and time left. A ban whose time ran out
        is over the moment it runs out (the kernel lifts it by itself), even before the firewall
        worker's next run marks its row EXPIRED."""
        return self.filter(in_force_at(now or timezone.now()))


def in_force_at(now: dt.datetime) -> models.Q:
    """`in_force` as a condition, for a filtered count (one query counting bans and those in force)."""
    return models.Q(state__in=Ban.LIVE_STATES) & (models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now))


class Ban(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "waiting for the firewall"
        APPLYING = "applying", "being applied"
        ACTIVE = "active", "in the firewall"
        FAILED = "failed", "the firewall refused it; retrying"
        LIFTING = "lifting", "being lifted"
        LIFTED = "lifted", "lifted by hand"
        EXPIRED = "expired", "expired"
        REFUSED = "refused", "refused by the lockout guard"
        COVERED = "covered", "covered by a wider ban"

    class Origin(models.TextChoices):
        JAIL = "jail", "a jail"
        SCHEDULE = "schedule", "a schedule (recidive)"
        USER = "user", "a user"

    # states in which the ban holds (or should hold): in the kernel, on its way, or inside a wider ban there
    LIVE_STATES = (State.PENDING, State.APPLYING, State.ACTIVE, State.FAILED, State.COVERED)
    # the jail_name of bans on the permanent blocklist (made by hand: all ports, for ever). A jail may
    # be called so too: a blocklist ban is one with this name and no jail (overlaps.set_of)
    BLOCKLIST = "blocklist"

    # null jail: the permanent blocklist (all ports); jail_name survives the jail's deletion
    jail = models.ForeignKey(Jail, null=True, blank=True, on_delete=models.SET_NULL, related_name="bans")
    jail_name = models.CharField(max_length=100)
    network = models.CharField(max_length=43, help_text="Address or network in CIDR form, e.g. 203.0.113.9/32.")
    family = models.PositiveSmallIntegerField(choices=[(4, "IPv4"), (6, "IPv6")])
    # which firewall host applies this ban: a parameter, so a second server can run its own worker
    host = models.CharField(max_length=100, default="local")

    started_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: permanent.")
    bantime = models.IntegerField(help_text="Seconds; -1 for permanent.")
    earlier_bans = models.PositiveIntegerField(default=0)
    evidence = models.JSONField(default=list, blank=True, help_text="The log lines that led to the ban.")

    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.JAIL)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    reason = models.TextField(blank=True)

    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    apply_attempts = models.PositiveIntegerField(default=0)
    apply_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    # APPLYING: "machine:pid" of the process that claimed it (bans.sync.claim), to tell a claim in
    # progress from one whose process died
    claimed_by = models.CharField(max_length=100, blank=True)
    # COVERED: the wider ban of the same set whose element holds this one (bans.overlaps)
    covered_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="covering")
    # A fleet (docs/fleet.md): a ban is made once, on the host whose log showed it (the original, no
    # primary); the central side copies it to the other hosts its jail's scope names (bans.fanout),
    # each copy a row of its own host, applied by that host's firewall worker. Lists, counts and
    # bantime.increment read originals only; lifting an original lifts its copies.
    primary = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="copies",
                                db_index=False)
    # an original whose jail's scope reaches other hosts, not copied yet (set by whoever made it;
    # the central side decides the hosts from the jail, not from this flag)
    fanout_pending = models.BooleanField(default=False, db_default=False)

    objects = BanQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # the originals waiting to be copied to other hosts: a few rows at most, looked for often
            models.Index(fields=["id"], condition=models.Q(fanout_pending=True), name="ban_fanout_pending"),
            # an original's copies (lifting it, deleting it); partial: a planner must never walk it for
            # "the originals" (primary IS NULL: every row of a single server)
            models.Index(fields=["primary"], condition=models.Q(primary__isnull=False), name="ban_copies"),
            # a host's ACTIVE bans wider than one address (bans.overlaps, every firewall run): few, found
            # without reading the host's tens of thousands of single-address bans
            models.Index(fields=["host"], name="ban_wide_active",
                         condition=models.Q(state="active") & ~(models.Q(family=4, network__endswith="/32")
                                                                | models.Q(family=6, network__endswith="/128"))),
            models.Index(fields=["network", "started_at"]),
            models.Index(fields=["state", "expires_at"]),
            # the bans list, newest first: read in index order, not sorted whole on every page
            models.Index(fields=["started_at", "id"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["jail_name", "network", "host"],
                condition=models.Q(state__in=["pending", "applying", "active", "failed", "covered", "lifting"]),
                name="ban_one_live_per_jail_network_host",
            ),
            models.CheckConstraint(condition=models.Q(family__in=[4, 6]), name="ban_family_4_or_6"),
        ]

    def __str__(self) -> str:
        return f"{self.network} in {self.jail_name} ({self.state})"

    @property
    def is_permanent(self) -> bool:
        return self.bantime == -1

    @property
    def ran_out(self) -> bool:
        """Its time is up, whatever the row's state says yet (the firewall worker catches up)."""
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def in_force(self) -> bool:
        return self.state in self.LIVE_STATES and not self.ran_out

    @property
    def shown_state(self) -> str:
        """The state as people must see it: a live ban whose time ran out is expired at once."""
        return self.State.EXPIRED if self.state in self.LIVE_STATES and self.ran_out else self.state

    def get_shown_state_display(self) -> str:
        return str(self.State(self.shown_state).label)

    @property
    def ip_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.network)


class JailStat(models.Model):
    """Failures and bans per jail per minute or hour, rolled up for the charts."""

    class Resolution(models.TextChoices):
        MINUTE = "minute", "minute"
        HOUR = "hour", "hour"

    jail_name = models.CharField(max_length=100)
    resolution = models.CharField(max_length=6, choices=Resolution.choices)
    bucket = models.DateTimeField(help_text="Start of the minute or hour.")
    failures = models.PositiveIntegerField(default=0)
    bans = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["jail_name", "resolution", "bucket"],
                                               name="jailstat_one_per_bucket")]
        # the buckets past their horizon, every jail's at once: pruned (and looked for) every minute
        indexes = [models.Index(fields=["resolution", "bucket"], name="jailstat_by_age")]
        ordering = ["-bucket"]

    def __str__(self) -> str:
        return f"{self.jail_name} {self.resolution} {self.bucket:%Y-%m-%d %H:%M}"


class AddressStat(models.Model):
    """Failures per address per jail per hour: the dashboard's top addresses and networks.

    Added to as failures are written (bans.bulk.add_to_tops, in the same transaction), so the tops
    of a week or a month read one row per address-hour (about a tenth of the failures) instead of
    grouping every raw failure. `network` is the address's /24 or /64 (policy.attacker_network)."""

    jail_name = models.CharField(max_length=100)
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")
    address = models.GenericIPAddressField(unpack_ipv4=True)
    network = models.CharField(max_length=43)
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "address", "jail_name"],
                                               name="addressstat_one_per_hour")]
        # Covering indexes: a month's top networks and addresses are read from the index alone.
        indexes = [models.Index(fields=["hour", "network", "address", "failures"], name="addressstat_networks"),
                   models.Index(fields=["hour", "address", "failures", "jail_name"], name="addressstat_addresses")]

    def __str__(self) -> str:
        return f"{self.jail_name} {self.address} {self.hour:%Y-%m-%d %H:00}"


class UserStat(models.Model):
    """Failures per user name (a filter's <F-USER>) per jail per hour: the dashboard's top user names.

    The name is attacker-written: stored cut to USER_LENGTH characters (policy.stat_user_name)."""

    USER_LENGTH = 100

    jail_name = models.CharField(max_length=100)
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")
    user = models.CharField(max_length=USER_LENGTH)
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "user", "jail_name"], name="userstat_one_per_hour")]
        indexes = [models.Index(fields=["hour", "user", "failures"], name="userstat_users")]

    def __str__(self) -> str:
        return f"{self.jail_name} {self.user} {self.hour:%Y-%m-%d %H:00}"


class FirewallHost(models.Model):
    """What the firewall worker of one host last found: it changes the kernel, or it cannot and why.

    Written by that worker on every sync and reconcile (bans.status); read by the panel and jailctl,
    which must say plainly when bans are recorded but the kernel is not being changed.
    """

    class State(models.TextChoices):
        OK = "ok", "changing nftables"
        UNAVAILABLE = "unavailable", "cannot change the firewall"  # IPS_FIREWALL=off, no CAP_NET_ADMIN/nftables
        FAILING = "failing", "the firewall refuses changes"

    name = models.CharField(max_length=100, unique=True, help_text="IPS_HOST_NAME of the firewall worker.")
    state = models.CharField(max_length=12, choices=State.choices, default=State.OK)
    reason = models.TextField(blank=True, help_text="Why the firewall is not being changed, in the worker's words.")
    last_seen_at = models.DateTimeField(help_text="The worker's last sync or reconcile.")
    last_applied_at = models.DateTimeField(null=True, blank=True, help_text="The kernel last accepted a change.")
    drift = models.TextField(blank=True, help_text="How the kernel and the database disagree, while they do.")
    version = models.CharField(max_length=40, blank=True, help_text="The release its worker runs (config.version).")
    drift_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class ReplayRun(models.Model):
    """"What would this have banned": a jail's settings (edited or not) run over its existing log.

    Run in the background by bans.tasks.replay_jail (the plain work is bans.replay.run_replay), which
    claims a QUEUED run with a conditional UPDATE and reports its progress here every half second.
    Nothing of a replay touches the live counting or the firewall.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "waiting for a worker"
        RUNNING = "running", "reading the log"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    jail = models.ForeignKey(Jail, on_delete=models.CASCADE, related_name="replays")
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # What the admin changed against the jail (maxretry, findtime, bantime, filter_options, failregex),
    # and the settings in force once those are applied (shown with the results).
    overrides = models.JSONField(default=dict, blank=True)
    parameters = models.JSONField(default=dict, blank=True)

    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="The worker's last progress report.")
    finished_at = models.DateTimeField(null=True, blank=True)
    files = models.JSONField(default=list, blank=True, help_text="The log files read, oldest first.")
    bytes_total = models.BigIntegerField(default=0)
    bytes_read = models.BigIntegerField(default=0)
    lines_read = models.BigIntegerField(default=0)
    failures_found = models.BigIntegerField(default=0)
    first_time = models.DateTimeField(null=True, blank=True, help_text="The oldest failure in the log.")
    last_time = models.DateTimeField(null=True, blank=True, help_text="The newest failure in the log.")
    # [{"network", "bans": [{"at", "bantime", "count"}]}] and [{"network", "replay": {...}|None, "live": {...}|None}]
    results = models.JSONField(default=list, blank=True)
    comparison = models.JSONField(default=list, blank=True)
    # counts over everything, even when results/comparison are cut to their first REPLAY_ROWS_KEPT
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"replay {self.pk} of {self.jail_id} ({self.state})"

    @property
    def percent(self) -> int:
        if self.state == self.State.DONE:
            return 100
        return min(100, int(self.bytes_read * 100 / self.bytes_total)) if self.bytes_total else 0

    @property
    def finished(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED)
