"""The audit trail page (every role reads it) and the users page (admins only).

Every change here is audited in the same transaction. Users keep at least one active admin: a
change that would leave none (the last admin demoting or deactivating themselves, or two admins
removing each other at once) is refused. Only a superuser may change a superuser.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jails.access import audit
from jails.access.forms import ActiveForm, AuditFilterForm, RoleForm, UserCreateForm
from jails.access.roles import Role, role_required
from jails.htmx import HtmxHttpRequest, render_page_or_partial
from jails.models import AuditEntry

AUDIT_PAGE_SIZE = 50
ROLE_NAMES = [role.group_name for role in Role]


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


# --- users ---------------------------------------------------------------------------------------


def role_name(user: User) -> str:
    """The user's role from prefetched groups (jails.access.roles.role_of without a query per user)."""
    if user.is_superuser:
        return Role.ADMIN.group_name
    names = {group.name for group in user.groups.all()}
    held = [role for role in Role if role.group_name in names]
    return max(held).group_name if held else ""


def active_admins() -> QuerySet[User]:
    # admin group members by subquery, not a join: no DISTINCT needed, which FOR UPDATE refuses
    in_admin_group = User.groups.through.objects.filter(group__name=Role.ADMIN.group_name).values("user_id")
    return User.objects.filter(Q(is_superuser=True) | Q(pk__in=in_admin_group), is_active=True)


def lock_admins() -> list[int]:
    """Lock the active admins' rows (in id order, so two requests cannot deadlock) until the
    transaction ends. Two admins demoting or deactivating each other at once: the second waits here
    until the first commits, and its `leaves_no_admin` (a new query) then sees the first's change.
    no_key: other pages' audit entries (a key reference to their user) need not wait for it."""
    return list(active_admins().select_for_update(no_key=True).order_by("pk").values_list("pk", flat=True))


def leaves_no_admin(user: User) -> bool:
    """Whether `user` losing the admin role (or being deactivated) leaves no active admin at all.
    Call it after lock_admins, in the same transaction."""
    return not active_admins().exclude(pk=user.pk).exists()


def refuse_unless_still_admin(request: HttpRequest) -> None:
    """After lock_admins: the requester may have been demoted or deactivated while waiting for it."""
    pk = request.user.pk
    if pk is None or not active_admins().filter(pk=pk).exists():
        raise PermissionDenied("you are no longer an active admin")


def superuser_refusal(request: HttpRequest, user: User) -> str:
    """Only a superuser may change a superuser (a panel admin is not one, and must not be able to
    lock the superuser out); "" when the change may go ahead."""
    if user.is_superuser and not getattr(request.user, "is_superuser", False):
        return f"{user.get_username()} is a superuser: only a superuser may change a superuser."
    return ""


def set_role(user: User, role: str) -> None:
    user.groups.remove(*Group.objects.filter(name__in=ROLE_NAMES))
    user.groups.add(Group.objects.get_or_create(name=role)[0])


@require_GET
@role_required(Role.ADMIN)
def user_list(request: HttpRequest) -> HttpResponse:
    users = list(User.objects.prefetch_related("groups").order_by("-is_active", "username"))
    for user in users:
        user.role_name = role_name(user)  # type: ignore[attr-defined]
    context = {"users": users, "roles": ROLE_NAMES}
    return render(request, "access/users.html", context)


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def user_create(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save()
            set_role(user, form.cleaned_data["role"])
            audit.record(request, "user.create", user, after={
                "username": user.get_username(), "email": user.email, "role": form.cleaned_data["role"],
                "is_active": True})
        messages.success(request, f"User {user.get_username()} created with the {form.cleaned_data['role']} role.")
        return redirect("user_list")
    return render(request, "access/user_form.html", {"form": form}, status=400 if form.errors else 200)


def _locked_user(request: HttpRequest, pk: int) -> User | None:
    """In a transaction: lock the admins and user `pk` as they are now, and check the
    requester may still change that user (None: refused, with the message set)."""
    lock_admins()
    refuse_unless_still_admin(request)
    user = get_object_or_404(User.objects.select_for_update(no_key=True), pk=pk)  # as it is now
    refused = superuser_refusal(request, user)
    if refused:
        messages.error(request, refused)
        return None
    return user


@require_POST
@role_required(Role.ADMIN)
def user_role(request: HttpRequest, pk: int) -> HttpResponse:
    get_object_or_404(User, pk=pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: viewer, operator or admin.")
        return redirect("user_list")
    new = form.cleaned_data["role"]
    with transaction.atomic():
        user = _locked_user(request, pk)
        if user is None:
            return redirect("user_list")
        if user.is_superuser:
            messages.error(request, f"{user.get_username()} is a superuser, always an admin; "
                                    "change that in Django admin.")
            return redirect("user_list")
        old = role_name(user)
        if new == old:
            return redirect("user_list")
        if old == Role.ADMIN.group_name and user.is_active and leaves_no_admin(user):
            messages.error(request, f"{user.get_username()} is the last active admin: "
                                    "make someone else an admin first.")
            return redirect("user_list")
        set_role(user, new)
        audit.record(request, "user.role", user, before={"role": old}, after={"role": new})
    messages.success(request, f"{user.get_username()} is now {new}.")
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
    with transaction.atomic():
        user = _locked_user(request, pk)
        if user is None:
            return redirect("user_list")
        if active == user.is_active:
            return redirect("user_list")
        if not active and role_name(user) == Role.ADMIN.group_name and leaves_no_admin(user):
            messages.error(request, f"{user.get_username()} is the last active admin and cannot be deactivated.")
            return redirect("user_list")
        user.is_active = active
        user.save(update_fields=["is_active"])
        audit.record(request, "user.activate" if active else "user.deactivate", user,
                     before={"is_active": not active}, after={"is_active": active})
    verb = "can log in again" if active else "is deactivated and can no longer log in"
    messages.success(request, f"{user.get_username()} {verb}.")
    return redirect("user_list")
