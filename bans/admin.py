from django.contrib import admin

from bans.models import Ban, Failure, FirewallHost, Ignored, JailStat, Tally


@admin.register(Ban)
class BanAdmin(admin.ModelAdmin[Ban]):
    list_display = ["network", "jail_name", "state", "origin", "started_at", "expires_at", "host"]
    list_filter = ["state", "origin", "jail_name", "family", "host"]
    search_fields = ["network", "jail_name", "reason"]
    date_hierarchy = "started_at"
    raw_id_fields = ["jail", "created_by", "ended_by"]


@admin.register(Failure)
class FailureAdmin(admin.ModelAdmin[Failure]):
    list_display = ["address", "jail", "time"]
    list_filter = ["jail"]
    search_fields = ["address", "line"]
    date_hierarchy = "time"


@admin.register(Tally)
class TallyAdmin(admin.ModelAdmin[Tally]):
    list_display = ["address", "jail", "count", "first_time", "last_time"]
    list_filter = ["jail"]
    search_fields = ["address"]


@admin.register(Ignored)
class IgnoredAdmin(admin.ModelAdmin[Ignored]):
    list_display = ["address", "jail", "time", "reason"]
    list_filter = ["jail"]
    search_fields = ["address", "reason"]


@admin.register(JailStat)
class JailStatAdmin(admin.ModelAdmin[JailStat]):
    list_display = ["jail_name", "resolution", "bucket", "failures", "bans"]
    list_filter = ["resolution", "jail_name"]


@admin.register(FirewallHost)
class FirewallHostAdmin(admin.ModelAdmin[FirewallHost]):
    # written by the firewall workers (bans.status): shown, not edited
    list_display = ["name", "state", "reason", "last_seen_at", "last_applied_at"]
    list_filter = ["state"]
    readonly_fields = ["name", "state", "reason", "last_seen_at", "last_applied_at"]
