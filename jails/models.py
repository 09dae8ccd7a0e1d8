"""Jails and filters: everything fail2ban keeps in jail.local and filter.d, as rows.

A Filter keeps the source text as the admin wrote it (fail2ban's INI dialect) and, next to it,
what the engine derived from it (regexes, datepattern, ...) for display and search. A Jail
holds every fail2ban jail option, validated, with durations stored in seconds.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from jails import validators


def this_host_name() -> str:
    """IPS_HOST_NAME as a column's default: the host a row belongs to when nobody said (a single
    server's rows, and those its processes write)."""
    return str(settings.IPS_HOST_NAME)[:40]


class Filter(models.Model):
    class Origin(models.TextChoices):
        BUILTIN = "builtin", "Built-in"
        IMPORTED = "imported", "Imported from fail2ban"
        CUSTOM = "custom", "Written in the panel"

    class Kind(models.TextChoices):
        FILTER = "filter", "Filter"
        # common.conf and the like: included by filters, never used by a jail on its own
        INCLUDE = "include", "Shared definitions"

    name = models.CharField(max_length=100, unique=True, validators=[validators.validate_name])
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FILTER)
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.CUSTOM)
    origin_path = models.CharField(max_length=500, blank=True, help_text="Where the filter was imported from.")
    description = models.TextField(blank=True)
    source = models.TextField(help_text="The filter file (.conf) as written, in fail2ban's INI dialect.")
    source_local = models.TextField(blank=True, help_text="An optional .local overlay, read after the .conf.")

    # Derived from the source by the engine on save (see jails.services.refresh_filter).
    prefregex = models.TextField(blank=True)
    failregex = models.JSONField(default=list, blank=True)
    ignoreregex = models.JSONField(default=list, blank=True)
    datepattern = models.TextField(blank=True)
    maxlines = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(1000)])
    journalmatch = models.TextField(blank=True)
    definition = models.JSONField(default=dict, blank=True, help_text="Effective [Definition] variables.")
    init_options = models.JSONField(default=dict, blank=True, help_text="[Init] options a jail may pass.")
    modes = models.JSONField(default=list, blank=True, help_text="Values the 'mode' option accepts.")
    parse_error = models.TextField(blank=True, help_text="Why the engine cannot use this filter, if it cannot.")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Jail(models.Model):
    class Backend(models.TextChoices):
        AUTO = "auto", "auto (inotify, else polling)"
        INOTIFY = "inotify", "inotify"
        POLLING = "polling", "polling"
        SYSTEMD = "systemd", "systemd journal"

    class UseDns(models.TextChoices):
        NO = "no", "no: addresses only, never a DNS lookup"
        RAW = "raw", "raw: take the host text as written"
        WARN = "warn", "warn: resolve host names, and log a warning"
        YES = "yes", "yes: resolve host names"

    class Protocol(models.TextChoices):
        TCP = "tcp", "tcp"
        UDP = "udp", "udp"
        SCTP = "sctp", "sctp"
        DCCP = "dccp", "dccp"
        ALL = "all", "all protocols"

    class BlockType(models.TextChoices):
        DROP = "drop", "drop (silently)"
        REJECT = "reject", "reject (answer with an error)"

    class BanScope(models.TextChoices):
        HOST = "host", "the host that saw it"
        ALL = "all", "every host of the fleet"
        GROUP = "group", "the hosts of a group"

    name = models.CharField(max_length=100, unique=True, validators=[validators.validate_name])
    enabled = models.BooleanField(default=False)
    description = models.TextField(blank=True)

    filter = models.ForeignKey(Filter, on_delete=models.PROTECT, related_name="jails")
    filter_options = models.JSONField(default=dict, blank=True, help_text="Options passed to the filter, e.g. mode.")

    logpath = models.JSONField(default=list, blank=True, validators=[validators.validate_logpath])
    backend = models.CharField(max_length=10, choices=Backend.choices, default=Backend.AUTO)
    journalmatch = models.TextField(blank=True, help_text="systemd journal match; empty: the filter's.")
    logencoding = models.CharField(max_length=40, default="auto")
    logtimezone = models.CharField(max_length=40, blank=True)
    datepattern = models.TextField(blank=True, help_text="Overrides the filter's datepattern when set.")
    maxlines = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )

    maxretry = models.PositiveIntegerField(default=5, validators=[MinValueValidator(1)])
    findtime = models.IntegerField(default=600, validators=[validators.validate_positive_duration])
    bantime = models.IntegerField(default=600, validators=[validators.validate_bantime])
    bantime_increment = models.BooleanField(default=False)
    bantime_factor = models.FloatField(default=1.0, validators=[MinValueValidator(0.0)])
    bantime_formula = models.TextField(blank=True, validators=[validators.validate_formula])
    bantime_multipliers = models.CharField(max_length=200, blank=True, validators=[validators.validate_multipliers])
    bantime_maxtime = models.IntegerField(null=True, blank=True, validators=[validators.validate_positive_duration])
    bantime_rndtime = models.IntegerField(null=True, blank=True, validators=[validators.validate_positive_duration])
    bantime_overalljails = models.BooleanField(default=False)

    ignoreip = models.JSONField(default=list, blank=True, validators=[validators.validate_ignoreip])
    ignoreself = models.BooleanField(default=True)
    ignorecommand = models.TextField(blank=True)
    usedns = models.CharField(max_length=4, choices=UseDns.choices, default=UseDns.NO)
    maxmatches = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: as many as maxretry.")

    port = models.CharField(max_length=200, default="all", validators=[validators.validate_port_spec])
    protocol = models.CharField(max_length=4, choices=Protocol.choices, default=Protocol.TCP)
    banaction = models.CharField(max_length=100, default="nftables")
    blocktype = models.CharField(max_length=6, choices=BlockType.choices, default=BlockType.DROP)
    # Where this jail's bans apply in a fleet (docs/fleet.md): the host whose log showed the failures,
    # every host, or the hosts of ban_group. The central side copies a ban to the others (bans.fanout).
    ban_scope = models.CharField(max_length=5, choices=BanScope.choices, default=BanScope.HOST)
    ban_group = models.CharField(max_length=40, blank=True, validators=[validators.validate_host_group],
                                 help_text="The group of hosts, when the scope is a group.")

    # Options read from fail2ban that we keep but do not act on (action, chain, ...), for reference.
    extra_options = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(maxretry__gte=1), name="jail_maxretry_positive"),
            models.CheckConstraint(condition=models.Q(findtime__gt=0), name="jail_findtime_positive"),
            models.CheckConstraint(
                condition=models.Q(bantime__gt=0) | models.Q(bantime=-1), name="jail_bantime_positive_or_permanent"
            ),
            models.CheckConstraint(condition=~models.Q(ban_scope="group") | ~models.Q(ban_group=""),
                                   name="jail_group_scope_names_a_group",
                                   violation_error_message="A ban scope of a group needs the group's name."),
        ]

    def __str__(self) -> str:
        return self.name

    # recidive bans repeat offenders of every jail: in a fleet they apply on every host by default
    FLEET_WIDE_BY_DEFAULT = frozenset({"recidive"})

    @classmethod
    def default_scope(cls, name: str) -> str:
        return cls.BanScope.ALL if name in cls.FLEET_WIDE_BY_DEFAULT else cls.BanScope.HOST

    @property
    def is_permanent(self) -> bool:
        return self.bantime == -1



class GlobalIgnore(models.Model):
    """The global ignore list: addresses, networks and host names no jail counts or bans, on top of
    each jail's own ignoreip (fail2ban's `[DEFAULT] ignoreip`, kept once instead of copied into
    every jail). One row, ONLY; read through jails.ignores, changed through jails.changes (audited).
    Its absence reads as an empty list, so nothing needs to create it first."""

    ONLY = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=ONLY, editable=False)
    entries = models.JSONField(default=list, blank=True, validators=[validators.validate_ignoreip])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "global ignore list"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="globalignore_one_row")]

    def __str__(self) -> str:
        return "global ignore list"


class AuditEntry(models.Model):
    """One change, by whom, when, from where, and what it was before and after (jails.access.audit.record)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    # Kept as text too: the entry still says who after the user is deleted. "" = the system.
    username = models.CharField(max_length=150, blank=True)
    address = models.GenericIPAddressField(
        null=True, blank=True, help_text="Client address; none from the command line.")
    via = models.CharField(max_length=20, default="panel", help_text="panel, admin, cli or system.")
    action = models.CharField(max_length=40, db_index=True, help_text="For example jail.edit, ban.create.")
    object_type = models.CharField(max_length=40, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or 'system'} {self.action} {self.object_repr}"


class PanelSession(models.Model):
    """The address a live panel session was last seen from, so that no ban ever covers it.

    Written by jails.access.sessions.SessionAddressMiddleware (on login and when the address changes),
    deleted on logout; a row counts while its Django session lives and its user is active
    (jails.access.sessions.live_session_addresses). Any user's session counts, not only the requester's:
    an operator must not be able to ban an admin out of the panel.
    """

    session_key = models.CharField(max_length=40, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    address = models.GenericIPAddressField(unpack_ipv4=True)
    last_seen_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True, help_text="When the Django session expires.")

    def __str__(self) -> str:
        return f"{self.address} ({self.user_id})"


class Host(models.Model):
    """A server of the fleet: the central one (panel, database, Redis, beat) or one running an agent
    (its own log watchers and firewall worker, on its own queues, under its own credentials).

    A single server is a fleet of one: its row (kind central, named IPS_HOST_NAME) is created by the
    migration. Agents are added and removed by `manage.py hostctl` (bans.hosts), which creates
    and revokes their PostgreSQL role and Redis user (jails.fleet.credentials). No secret is stored
    here: the agent's passwords are printed once and live only in the agent's environment file.
    """

    class Kind(models.TextChoices):
        CENTRAL = "central", "central (panel, database, Redis, beat)"
        AGENT = "agent", "agent"

    class State(models.TextChoices):
        ENROLLED = "enrolled", "credentials issued, not seen yet"
        ACTIVE = "active", "active"
        REVOKED = "revoked", "removed"

    name = models.CharField(max_length=40, unique=True, validators=[validators.validate_host_name],
                            help_text="IPS_HOST_NAME of the host's workers.")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.AGENT)
    state = models.CharField(max_length=8, choices=State.choices, default=State.ENROLLED)
    groups = models.JSONField(default=list, blank=True, help_text="Named groups a jail's bans may be scoped to.")
    # Pinned by the admin at `hostctl add`, never reported by the agent (what an agent says about itself
    # is attack surface): no ban on any host may cover them, or the agent would be cut off from Redis
    # and PostgreSQL (an all-ports ban) and the fleet from it.
    addresses = models.JSONField(default=list, blank=True, help_text="The host's addresses, never banned anywhere.")
    db_role = models.CharField(max_length=63, blank=True, help_text="The agent's PostgreSQL role.")
    redis_user = models.CharField(max_length=100, blank=True, help_text="The agent's Redis ACL user.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def central(cls) -> Host:
        """This server's own row (made by the migration; made again here should it be gone)."""
        host, _ = cls.objects.get_or_create(name=settings.IPS_HOST_NAME[:40],
                                            defaults={"kind": cls.Kind.CENTRAL, "state": cls.State.ACTIVE})
        return host

    @property
    def is_agent(self) -> bool:
        return self.kind == self.Kind.AGENT


class LivePanelAddress(models.Model):
    """The addresses of the live panel sessions, and nothing else about them: a database view (made by
    the migration, on PostgreSQL) that a fleet agent's role may read for its lockout gate, where the
    sessions' own tables (whose keys are bearer tokens) and the users are refused to it."""

    address = models.GenericIPAddressField(primary_key=True)

    class Meta:
        managed = False
        db_table = "jails_live_panel_address"

    def __str__(self) -> str:
        return str(self.address)


class JailHost(models.Model):
    """A jail placed on a host of the fleet, with that host's log paths. A jail placed nowhere runs on
    the central host only (a single server's jails need no row); one placed anywhere runs exactly on
    the hosts it is placed on (jails_on)."""

    jail = models.ForeignKey(Jail, on_delete=models.CASCADE, related_name="placements")
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="placements")
    logpath = models.JSONField(default=list, blank=True, validators=[validators.validate_logpath],
                               help_text="This host's log files; empty: the jail's own logpath.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["jail", "host"], name="jailhost_one_per_jail_host")]
        ordering = ["jail", "host"]

    def __str__(self) -> str:
        return f"{self.jail_id} on {self.host_id}"


def jails_on(host_name: str) -> models.QuerySet[Jail]:
    """The jails that run on `host_name`: those placed on it, and on the central host those placed
    nowhere. Their placements come along (logpath_on reads them without a query)."""
    placed_here = models.Q(placements__host__name=host_name)
    if host_name == this_host_name() and settings.IPS_FLEET_ROLE == "central":
        placed_here |= models.Q(placements__isnull=True)
    return Jail.objects.filter(placed_here).distinct().prefetch_related("placements__host")


def logpath_on(jail: Jail, host_name: str) -> list[str]:
    """The jail's log paths on `host_name`: its placement's own, else the jail's."""
    for placement in jail.placements.all():  # prefetched by jails_on
        if placement.host.name == host_name and placement.logpath:
            return list(placement.logpath)
    return list(jail.logpath)
