"""Django admin for bans, failures, counts, statistics, firewall hosts and replays (audited: jails.admin).

A ban made here goes through the same lockout gate as the panel's form and jailctl
(bans.services.ban_by_hand): the add form asks for what a person types there (address, jail,
duration, reason) and nothing else, and a ban that exists is read-only but for its reason: its
state is the firewall worker's, and lifting one is the panel's job (its page links there).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from bans import services
from bans.forms import parse_bantime
from bans.models import Ban, Failure, FirewallHost, Ignored, JailStat, ReplayRun, Tally
from jails.access import audit
from jails.access.client import request_peers
from jails.admin import AuditedModelAdmin
from jails.models import Jail


class BanAddForm(forms.ModelForm[Ban]):
    """A ban by hand, checked by the lockout gate in clean() and created by ban_by_hand on save."""

    address = forms.CharField(max_length=50, help_text="An address or a network in CIDR form.")
    target = forms.ChoiceField(label="Jail", help_text="The blocklist bans all ports, permanently.")
    duration = forms.CharField(required=False, max_length=40,
                               help_text="e.g. 10m, 1h, 1d or permanent; empty: the jail's ban time.")
    confirm = forms.BooleanField(required=False, label="Yes, ban it anyway",
                                 help_text="Needed for private space (RFC 1918, ULA) and this host's own network.")
    request: HttpRequest | None = None  # set by BanAdmin.get_form: the gate protects the requester too

    class Meta:
        model = Ban
        fields = ["reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        target = self.fields["target"]
        assert isinstance(target, forms.ChoiceField)  # noqa: S101  # type narrowing: declared as a ChoiceField
        target.choices = [*((n, n) for n in Jail.objects.order_by("name").values_list("name", flat=True)),
                          (Ban.BLOCKLIST, "all ports: the permanent blocklist")]

    def clean_duration(self) -> int | None:
        return parse_bantime(self.cleaned_data["duration"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        jail = None if cleaned["target"] == Ban.BLOCKLIST else Jail.objects.get(name=cleaned["target"])
        if jail is None and cleaned.get("duration") not in (None, -1):
            self.add_error("duration", "bans in the blocklist (all ports) are permanent")
            return cleaned
        cleaned["jail"] = jail
        cleaned["bantime"] = -1 if jail is None else cleaned.get("duration") or jail.bantime
        try:
            network = services.check_manual_ban(cleaned["address"], confirmed=cleaned["confirm"],
                                                protected=request_peers(self.request) if self.request else ())
        except services.ConfirmationNeeded as exc:
            self.add_error("confirm", str(exc))
            return cleaned
        except services.BanRefused as exc:
            self.add_error("address", str(exc))
            return cleaned
        name = jail.name if jail is not None else Ban.BLOCKLIST
        if services.live_ban(name, str(network), settings.IPS_HOST_NAME) is not None:
            self.add_error("address", f"{network} is already banned in {name}")
        return cleaned


@admin.register(Ban)
class BanAdmin(AuditedModelAdmin[Ban]):
    list_display = ["network", "jail_name", "state", "origin", "started_at", "expires_at", "host"]
    list_filter = ["state", "origin", "jail_name", "family", "host"]
    search_fields = ["network", "jail_name", "reason"]
    date_hierarchy = "started_at"
    readonly_fields = ["panel_link", "network", "jail", "jail_name", "family", "host", "started_at", "expires_at",
                       "bantime", "earlier_bans", "evidence", "origin", "created_by", "state", "applied_at",
                       "apply_attempts", "apply_error", "next_attempt_at", "ended_at", "ended_by"]

    def get_form(self, request: HttpRequest, obj: Ban | None = None, change: bool = False,
                 **kwargs: Any) -> Any:
        if obj is not None:
            return super().get_form(request, obj, change=change, **kwargs)
        return type("BanAddFormFor", (BanAddForm,), {"request": request})

    def get_fields(self, request: HttpRequest, obj: Ban | None = None) -> Any:
        if obj is None:
            return ["address", "target", "duration", "reason", "confirm"]
        return [*self.readonly_fields, "reason"]

    def get_readonly_fields(self, request: HttpRequest, obj: Ban | None = None) -> Any:
        return self.readonly_fields if obj is not None else []

    def get_actions(self, request: HttpRequest) -> Any:
        # deleting rows would leave their elements in the kernel until the next reconcile: lift instead
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: Ban | None = None) -> bool:
        if obj is not None and obj.state in (*Ban.LIVE_STATES, Ban.State.LIFTING):
            return False  # a live ban is lifted in the panel first
        return super().has_delete_permission(request, obj)

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        if change:
            return super().save_form(request, form, change)
        data = form.cleaned_data
        try:
            return services.ban_by_hand(data["jail"], data["address"], data["bantime"],
                                        actor=audit.Actor.of_request(request, via="admin"), confirmed=data["confirm"],
                                        protected=request_peers(request), reason=data["reason"],
                                        host=settings.IPS_HOST_NAME)
        except services.BanRefused as exc:  # became refused since clean() (a new session, a new ban)
            raise PermissionDenied(str(exc)) from None

    def log_addition(self, request: HttpRequest, obj: Ban, message: Any) -> Any:
        # ban_by_hand wrote the audit entry with the ban (as the panel's and jailctl's): Django's own
        # log only, not a second entry
        return admin.ModelAdmin.log_addition(self, request, obj, message)

    def save_model(self, request: HttpRequest, obj: Ban, form: Any, change: bool) -> None:
        if change:  # the reason only: the state is the firewall worker's, and may have moved meanwhile
            obj.save(update_fields=["reason"])
        # an addition was saved by ban_by_hand in save_form, through the gate

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if change:  # a ban has no many-to-many fields; the add form saved nothing itself
            super().save_related(request, form, formsets, change)

    @admin.display(description="In the panel")
    def panel_link(self, obj: Ban) -> str:
        return format_html('<a href="{}">the ban\'s page (lift, make permanent)</a>',
                           reverse("ban_detail", args=[obj.pk]))


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
    list_display = ["name", "state", "reason", "last_seen_at", "last_applied_at", "drift"]
    list_filter = ["state"]
    search_fields = ["name", "reason"]
    readonly_fields = ["name", "state", "reason", "last_seen_at", "last_applied_at", "drift", "drift_since"]


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
