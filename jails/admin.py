from django.contrib import admin

from jails.models import Filter, Jail


@admin.register(Filter)
class FilterAdmin(admin.ModelAdmin[Filter]):
    list_display = ["name", "kind", "origin", "maxlines", "updated_at"]
    list_filter = ["kind", "origin"]
    search_fields = ["name", "description", "source"]
    readonly_fields = [
        "prefregex", "failregex", "ignoreregex", "datepattern", "maxlines", "journalmatch",
        "definition", "init_options", "modes", "parse_error", "created_at", "updated_at",
    ]


@admin.register(Jail)
class JailAdmin(admin.ModelAdmin[Jail]):
    list_display = ["name", "enabled", "filter", "backend", "maxretry", "findtime", "bantime"]
    list_filter = ["enabled", "backend", "bantime_increment", "usedns"]
    search_fields = ["name", "description", "filter__name"]
    autocomplete_fields = ["filter"]
