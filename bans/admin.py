"""Django admin for bans, failures, counts, statistics, firewall hosts and replays (audited: jails.admin)."""

from django.contrib import admin

from bans.models import Ban, Failure, FirewallHost, Ignored, JailStat, ReplayRun, Tally
from jails.admin import AuditedModelAdmin


@admin.register(Ban)
class BanAdmin(AuditedModelAdmin[Ban]):
    list_display = ["network", "jail_name", "state", "origin", "started_at", "expires_at", "host"]
    list_filter = ["state", "origin", "jail_name", "family", "host"]
    search_fields = ["network", "jail_name", "reason"]
    date_hierarchy = "started_at"
    raw_id_fields = ["jail", "created_by", "ended_by"]


@admin.register(Failure)
class FailureAdmin(AuditedModelAdmin[Failure]):
    list_display = ["address", "jail", "time"]
    list_filter = ["jail"]
    search_fields = ["address", "line"]
    date_hierarchy = "time"


@admin.register(Tally)
class TallyAdmin(AuditedModelAdmin[Tally]):
    list_display = ["address", "jail", "count", "first_time", "last_time"]
    list_filter = ["jail"]
    search_fields = ["address"]


@admin.register(Ignored)
class IgnoredAdmin(AuditedModelAdmin[Ignored]):
    list_display = ["address", "jail", "time", "reason"]
    list_filter = ["jail"]
    search_fields = ["address", "reason"]


@admin.register(JailStat)
class JailStatAdmin(AuditedModelAdmin[JailStat]):
    list_display = ["jail_name", "resolution", "bucket", "failures", "bans"]
    list_filter = ["resolution", "jail_name"]
    search_fields = ["jail_name"]


@admin.register(FirewallHost)
class FirewallHostAdmin(AuditedModelAdmin[FirewallHost]):
    # written by the firewall workers (bans.status): shown, not edited
    list_display = ["name", "state", "reason", "last_seen_at", "last_applied_at"]
    list_filter = ["state"]
    search_fields = ["name", "reason"]
    readonly_fields = ["name", "state", "reason", "last_seen_at", "last_applied_at"]


@admin.register(ReplayRun)
class ReplayRunAdmin(AuditedModelAdmin[ReplayRun]):
    # written by the replay worker (bans.tasks.replay_jail): shown, not edited
    list_display = ["id", "jail", "state", "created_by", "created_at", "finished_at", "failures_found"]
    list_filter = ["state", "jail"]
    search_fields = ["jail__name", "error"]
    raw_id_fields = ["jail", "created_by"]
    readonly_fields = ["state", "started_at", "heartbeat_at", "finished_at", "files", "bytes_total", "bytes_read",
                       "lines_read", "failures_found", "first_time", "last_time", "results", "comparison", "summary",
                       "error"]
