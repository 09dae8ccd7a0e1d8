"""Django admin for log sources (audited: jails.admin)."""

from django.contrib import admin

from jails.admin import AuditedModelAdmin
from watchers.models import LogSource


@admin.register(LogSource)
class LogSourceAdmin(AuditedModelAdmin[LogSource]):
    list_display = ["jail", "kind", "path", "health", "offset", "lines_read", "last_read_at"]
    list_filter = ["health", "kind", "jail"]
    search_fields = ["path", "health_reason", "jail__name"]
    readonly_fields = ["device", "inode", "offset", "head_digest", "cursor", "lines_read", "last_read_at"]
