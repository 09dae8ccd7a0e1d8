from django.contrib import admin

from watchers.models import LogSource


@admin.register(LogSource)
class LogSourceAdmin(admin.ModelAdmin[LogSource]):
    list_display = ["jail", "kind", "path", "health", "offset", "lines_read", "last_read_at"]
    list_filter = ["health", "kind", "jail"]
    search_fields = ["path", "health_reason"]
    readonly_fields = ["device", "inode", "offset", "head_digest", "cursor", "lines_read", "last_read_at"]
