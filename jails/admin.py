"""Django admin for jails and filters, the audit trail, and users; every change made here is audited.

`AuditedModelAdmin` is the base of every ModelAdmin of the project (bans/admin.py and
watchers/admin.py use it too): additions, changes and deletions made in Django admin are written
to the audit trail (via="admin") in the same transaction as the change, as the panel's own pages do.
"""

from __future__ import annotations

import json
from hashlib import sha256
from typing import Any, TypeVar

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import models, router, transaction
from django.db.models import QuerySet
from django.forms import CharField, HiddenInput, ModelForm
from django.http import HttpRequest, HttpResponse

from jails import changes
from jails.access import audit
from jails.access.logins import PanelAdminAuthenticationForm
from jails.forms import FilterSourceMixin, LinesField, ipv4_unmapped, override_field
from jails.models import AuditEntry, Filter, GlobalIgnore, Host, Jail

M = TypeVar("M", bound=models.Model)

# Never copied into the audit trail as they are; a change still shows (as a different digest).
SECRET_FIELDS = {"password"}

# Django admin's own login is throttled and logged like the panel's (jails/access/logins.py).
admin.site.login_form = PanelAdminAuthenticationForm
admin.site.site_header = "IPS panel: Django admin"
admin.site.site_title = "IPS panel admin"


def admin_snapshot(obj: models.Model) -> dict[str, Any]:
    """The object's fields and many-to-many values (a user's groups), secrets replaced by a digest."""
    # auto_now stamps change on every save: noise in a diff (the entry has its own time)
    names = [f.attname for f in obj._meta.concrete_fields if not getattr(f, "auto_now", False)]
    values = audit.snapshot(obj, names)
    for name in SECRET_FIELDS & values.keys():
        values[name] = f"(hidden, digest {sha256(str(values[name]).encode()).hexdigest()[:8]})"
    if obj.pk is not None:
        for field in obj._meta.many_to_many:
            values[field.name] = sorted(str(item) for item in getattr(obj, field.name).all())
    return audit.clean(values)  # type: ignore[no-any-return]


class AuditedModelAdmin(admin.ModelAdmin[M]):
    """Records jails.access.audit entries for what Django admin adds, changes and deletes.

    A model whose changes a service owns (jails and filters: jails.changes) sets `audited_by_service`
    and saves through it, so Django admin writes the same entry as the panel; only its deletions are
    recorded here."""

    audited_by_service = False

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> M | None:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj._audit_before = admin_snapshot(obj)  # type: ignore[attr-defined]  # read by log_change
        return obj

    def save_model(self, request: HttpRequest, obj: M, form: ModelForm[M], change: bool) -> None:
        if change and not hasattr(obj, "_audit_before"):  # list_editable rows skip get_object
            stored = type(obj)._default_manager.filter(pk=obj.pk).first()
            obj._audit_before = admin_snapshot(stored) if stored is not None else {}  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def log_addition(self, request: HttpRequest, obj: M, message: Any) -> Any:
        if self.audited_by_service:
            return super().log_addition(request, obj, message)
        audit.record(request, f"{obj._meta.model_name}.create", obj, after=admin_snapshot(obj), via="admin")
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: M, message: Any) -> Any:
        if self.audited_by_service:
            return super().log_change(request, obj, message)
        before: dict[str, Any] = getattr(obj, "_audit_before", {})
        after = admin_snapshot(obj)
        changed = audit.changed_fields(before, after)
        if changed:
            audit.record(request, f"{obj._meta.model_name}.edit", obj, via="admin",
                         before={name: old for name, (old, _) in changed.items()},
                         after={name: new for name, (_, new) in changed.items()})
        return super().log_change(request, obj, message)

    def response_action(self, request: HttpRequest, queryset: QuerySet[M], *args: Any, **kwargs: Any
                        ) -> HttpResponse | None:
        # Django runs list actions outside a transaction (the delete page has its own): "delete
        # selected" writes the audit entries, then deletes; one transaction keeps them together, so a
        # deletion that fails leaves no entries and no entry lacks its deletion
        with transaction.atomic(using=router.db_for_write(self.model)):
            return super().response_action(request, queryset, *args, **kwargs)

    def log_deletions(self, request: HttpRequest, queryset: QuerySet[M] | list[M]) -> Any:
        # called before the deletion, both by the delete page and by the "delete selected" action
        for obj in queryset:
            audit.record(request, f"{obj._meta.model_name}.delete", obj, before=admin_snapshot(obj), via="admin")
        return super().log_deletions(request, queryset)  # type: ignore[arg-type]


class FilterAdminForm(FilterSourceMixin, ModelForm[Filter]):
    """As the panel's filter form: the engine must read the text, and a regex that can backtrack
    catastrophically needs the override (audited by FilterAdmin.save_model)."""

    accept_backtracking = override_field()

    class Meta:
        model = Filter
        fields = ["name", "origin", "origin_path", "description", "source", "source_local"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        name = data.get("name") or self.instance.name
        try:
            self.derive(name, data.get("source") or "", data.get("source_local") or "")
            self.check_dangerous(bool(data.get("accept_backtracking")))
        except ValidationError as exc:
            self.add_error("source", exc)
        return data


@admin.register(Filter)
class FilterAdmin(AuditedModelAdmin[Filter]):
    form = FilterAdminForm
    list_display = ["name", "kind", "origin", "maxlines", "parse_error", "updated_at"]
    list_filter = ["kind", "origin"]
    search_fields = ["name", "description", "source"]
    readonly_fields = [
        "kind", "prefregex", "failregex", "ignoreregex", "datepattern", "maxlines", "journalmatch",
        "definition", "init_options", "modes", "parse_error", "created_at", "updated_at",
    ]

    audited_by_service = True

    def save_model(self, request: HttpRequest, obj: Filter, form: ModelForm[Filter], change: bool) -> None:
        # as the panel saves a filter: the derived columns follow the text, the override is recorded
        derived: dict[str, object] = getattr(form, "derived", {})
        dangerous = getattr(form, "dangerous", ())
        actor = audit.Actor.of_request(request, via="admin")
        if change:
            changes.save_filter(obj, derived, dangerous, actor)
        else:  # Django admin lets the admin choose the origin (the panel's new filters are custom)
            changes.create_filter(obj, derived, dangerous, actor, origin=obj.origin)


@admin.register(Jail)
class JailAdmin(AuditedModelAdmin[Jail]):
    list_display = ["name", "enabled", "filter", "backend", "maxretry", "findtime", "bantime", "port"]
    list_filter = ["enabled", "backend", "bantime_increment", "usedns", "protocol", "blocktype"]
    search_fields = ["name", "description", "filter__name"]
    autocomplete_fields = ["filter"]
    audited_by_service = True

    def save_model(self, request: HttpRequest, obj: Jail, form: ModelForm[Jail], change: bool) -> None:
        actor = audit.Actor.of_request(request, via="admin")
        if change:
            changes.save_jail(obj, actor)
        else:
            changes.create_jail(obj, actor)


class GlobalIgnoreAdminForm(ModelForm[GlobalIgnore]):
    """The entries one per line (or separated by spaces or commas), checked as the panel's forms check them."""

    entries = LinesField(words=True, required=False, help_text="Addresses and networks (192.0.2.0/24) that no jail "
                         "counts nor bans, on top of each jail's own ignoreip. Host names are kept but never looked "
                         "up: they protect nothing.")

    # the list as this form showed it: the save applies only this form's edits (jails.changes)
    loaded = CharField(required=False, widget=HiddenInput)

    class Meta:
        model = GlobalIgnore
        fields = ["entries"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["loaded"].initial = json.dumps(list(self.instance.entries or []))

    def clean_loaded(self) -> list[str] | None:
        try:
            loaded = json.loads(self.cleaned_data.get("loaded") or "null")
        except ValueError:
            return None
        return [str(text) for text in loaded] if isinstance(loaded, list) else None

    def clean_entries(self) -> list[str]:
        # as JailForm.clean_ignoreip; the model's validator then checks each entry
        return [ipv4_unmapped(entry) for entry in self.cleaned_data["entries"]]


@admin.register(GlobalIgnore)
class GlobalIgnoreAdmin(AuditedModelAdmin[GlobalIgnore]):
    """One row: changed through jails.changes (audited as "global.ignoreip", as the panel's page does).
    It cannot be deleted: an empty list is the same thing, and says so."""

    form = GlobalIgnoreAdminForm
    list_display = ["__str__", "entries", "updated_at"]
    readonly_fields = ["updated_at"]
    audited_by_service = True

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not GlobalIgnore.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: GlobalIgnore | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: GlobalIgnore, form: ModelForm[GlobalIgnore], change: bool) -> None:
        changes.save_global_ignored(obj.entries, audit.Actor.of_request(request, via="admin"),
                                    loaded=form.cleaned_data.get("loaded"))


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin[AuditEntry]):
    """The audit trail is read-only everywhere: nobody edits or deletes history."""

    list_display = ["at", "username", "address", "via", "action", "object_type", "object_repr"]
    list_filter = ["via", "action", "object_type", ("at", admin.DateFieldListFilter)]
    search_fields = ["username", "address", "action", "object_type", "object_repr", "object_id"]
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False


@admin.register(Host)
class HostAdmin(AuditedModelAdmin[Host]):
    """The fleet's hosts, to look at: joining and leaving create and revoke credentials (a database
    role, a Redis user), which only `manage.py hostctl` does (bans.hosts)."""

    list_display = ["name", "kind", "state", "addresses", "groups", "created_at"]
    list_filter = ["kind", "state"]
    search_fields = ["name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Host | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Host | None = None) -> bool:
        return False


# Users and groups (the role groups viewer/operator/admin): Django's own admin pages, audited.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedModelAdmin[User], UserAdmin[User]):
    list_filter = ["is_active", "is_superuser", "is_staff", "groups"]


@admin.register(Group)
class AuditedGroupAdmin(AuditedModelAdmin[Group], GroupAdmin):
    pass
