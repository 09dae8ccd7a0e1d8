"""The audit trail page (every role reads it) and the users page (admins only).

The users page only calls jails.access.users, which owns the rules (at least one active admin,
superusers changed only by superusers) and audits each change in its own transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jails.access import audit, users
from jails.access.forms import ActiveForm, AuditFilterForm, RoleForm, UserCreateForm
from jails.access.roles import Role, role_required
from jails.htmx import HtmxHttpRequest, render_page_or_partial
from jails.models import AuditEntry

AUDIT_PAGE_SIZE = 50


# --- audit ---------------------------------------------------------------------------------------


@require_GET
@role_required(Role.VIEWER)
def audit_list(request: HtmxHttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    entries = filtered_entries(form)
    page = Paginator(entries, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    for entry in page.object_list:
        entry.diff = entry_diff(entry)  # type: ignore[attr-defined]
        # escaped when recorded; again here for entries written another way (shown only, never saved)
        entry.username, entry.object_repr = display(entry.username), display(entry.object_repr)
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    return render_page_or_partial(request, "access/audit_list.html", "audit-results", context)


def filtered_entries(form: AuditFilterForm) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.all()  # newest first (Meta.ordering)
    if not form.is_bound or not form.is_valid():
        return entries
    data = form.cleaned_data
    if data["user"]:
        entries = entries.filter(username__icontains=data["user"])
    if data["action"]:
        entries = entries.filter(action=data["action"])
    if data["object_type"]:
        entries = entries.filter(object_type=data["object_type"])
    if data["via"]:
        entries = entries.filter(via=data["via"])
    if data["since"]:
        entries = entries.filter(at__gte=start_of(data["since"]))
    if data["until"]:
        entries = entries.filter(at__lt=start_of(data["until"] + dt.timedelta(days=1)))
    if data["q"]:
        text = data["q"]
        entries = entries.filter(
            Q(object_repr__icontains=text) | Q(object_id=text) | Q(username__icontains=text)
            | Q(address__icontains=text) | Q(action__icontains=text)
            | Q(before__icontains=text) | Q(after__icontains=text)
        )
    return entries


def start_of(day: dt.date) -> dt.datetime:
    """Midnight of a day in the panel's time zone (the dates people type are local)."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def entry_diff(entry: AuditEntry) -> list[dict[str, str]]:
    """The entry's before/after as rows {field, before, after}: for mappings only the fields that
    changed (a creation: everything after, a deletion: everything before); other values whole."""
    before, after = entry.before, entry.after
    if isinstance(before, dict) or isinstance(after, dict):
        old = before if isinstance(before, dict) else {}
        new = after if isinstance(after, dict) else {}
        if not new:  # a deletion: what was there
            return [row(name, value, None) for name, value in old.items()]
        return [row(name, a, b) for name, (a, b) in audit.changed_fields(old, new).items()]
    if before is None and after is None:
        return []
    return [row("value", before, after)]


def row(name: str, before: Any, after: Any) -> dict[str, str]:
    return {"field": audit.escape_controls(str(name)), "before": display(before), "after": display(after)}


def display(value: Any) -> str:
    """A stored value as text. Control characters were escaped when stored; escaped again here in
    case an entry was written another way (the template escapes HTML)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return audit.escape_controls(text)


# --- users (the rules and the audit live in jails.access.users) -----------------------------------


@require_GET
@role_required(Role.ADMIN)
def user_list(request: HttpRequest) -> HttpResponse:
    people = list(User.objects.prefetch_related("groups").order_by("-is_active", "username"))
    for user in people:
        user.role_name = users.role_name(user)  # type: ignore[attr-defined]
    context = {"users": people, "roles": users.ROLE_NAMES}
    return render(request, "access/users.html", context)


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def user_create(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        role = form.cleaned_data["role"]
        user = users.create_user(form.save(commit=False), role, audit.Actor.of_request(request))
        messages.success(request, f"User {user.get_username()} created with the {role} role.")
        return redirect("user_list")
    return render(request, "access/user_form.html", {"form": form}, status=400 if form.errors else 200)


@require_POST
@role_required(Role.ADMIN)
def user_role(request: HttpRequest, pk: int) -> HttpResponse:
    get_object_or_404(User, pk=pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: viewer, operator or admin.")
        return redirect("user_list")
    role = form.cleaned_data["role"]
    try:
        user, changed = users.change_role(pk, role, audit.Actor.of_request(request))
    except users.Refused as refused:
        messages.error(request, str(refused))
        return redirect("user_list")
    if changed:
        messages.success(request, f"{user.get_username()} is now {role}.")
    return redirect("user_list")


@require_POST
@role_required(Role.ADMIN)
def user_active(request: HttpRequest, pk: int) -> HttpResponse:
    get_object_or_404(User, pk=pk)
    form = ActiveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say whether the user is active.")
        return redirect("user_list")
    active: bool = form.cleaned_data["active"]
    try:
        user, changed = users.set_active(pk, active, audit.Actor.of_request(request))
    except users.Refused as refused:
        messages.error(request, str(refused))
        return redirect("user_list")
    if changed:
        verb = "can log in again" if active else "is deactivated and can no longer log in"
        messages.success(request, f"{user.get_username()} {verb}.")
    return redirect("user_list")
