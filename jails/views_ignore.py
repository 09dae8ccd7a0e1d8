"""The ignore lists: a jail's own (ignoreip) and the global list every jail honours. Every role
reads them, operators add and remove entries.

Admins edit ignoreip in the jail's full form too; the jail's page here is the operator's door to it
alone, and /jails/ignore/ the door to the global list (Django admin's the other). Entries are checked
exactly as the jail form checks them (an address, a CIDR network or a host name; IPv4-mapped IPv6
written as the IPv4 it is). Every change locks its row and is audited by jails.changes with the
whole list before and after ("jail.ignoreip", "global.ignoreip"). The log followers read both lists
with each read of a log (jails.ignores), so a change applies from the next read. An entry only
stops new bans: a ban already in force stays, so the page points the operator to the bans it covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from bans.models import Ban
from jails import changes, ignores, validators
from jails.access.audit import Actor
from jails.access.roles import Role, has_role, role_required
from jails.forms import LinesField, ipv4_unmapped
from jails.htmx import HtmxHttpRequest, render_page_or_partial, wants_partial
from jails.models import Jail
from jails.views import APPLIES_SOON

# Bans named on the page when a new entry covers addresses banned now (the ban list has the rest).
MAX_COVERED_SHOWN = 20
MAX_ENTRY_TEXT = 2000  # one submission: a few entries separated by spaces or commas
# The global list is read with each log read and each ban's check, so no watcher needs to notice it.
GLOBAL_APPLIES = "Changes apply from the next read of each log and to the next ban, no restart needed."


class IgnoreAddForm(forms.Form):
    """New entries, one or several (separated by spaces, commas or lines, as in the jail form)."""

    entry = LinesField(words=True, max_length=MAX_ENTRY_TEXT, label="Add",
                       widget=forms.TextInput(attrs={"spellcheck": "false", "size": 30, "autocomplete": "off",
                                                     "aria-describedby": "id_entry-help"}),
                       help_text="An address (192.0.2.7), a network (192.0.2.0/24, 2001:db8::/32) or a host name.")

    def clean_entry(self) -> list[str]:
        """jails.validators (the model's check) on JailForm.clean_ignoreip's spelling of each entry."""
        entries = [ipv4_unmapped(text) for text in self.cleaned_data["entry"]]
        if not entries:
            raise ValidationError("Write an address, a network or a host name.")
        for text in entries:
            validators.validate_ignore_entry(text)
        return list(dict.fromkeys(entries))


@dataclass
class Covered:
    """The live bans that an entry overlaps, in one jail or in all (a few of them, and how many in all)."""

    entry: str
    bans: list[Ban]
    count: int


# --- reading --------------------------------------------------------------------------------------


def entry_rows(entries: list[str]) -> list[dict[str, Any]]:
    """Each entry with what it is: a host name is kept but never looked up (no DNS), so it matches nothing."""
    rows = []
    for text in entries:
        network = changes.network_of(text)
        kind = "host name" if network is None else "address" if network.num_addresses == 1 else "network"
        rows.append({"text": text, "kind": kind})
    return rows


def covered_bans(entry: str, jail_name: str | None) -> Covered | None:
    """The bans in force in jail `jail_name` (None: in any jail, for the global list) whose network
    overlaps `entry` (None for a host name or none).

    Scans only the live bans of the entry's family (of that jail), and keeps a few of them for the page.
    """
    network = changes.network_of(entry)
    if network is None:
        return None
    live = Ban.objects.originals().in_force().filter(family=network.version)
    if jail_name is not None:
        live = live.filter(jail_name=jail_name)
    found: list[int] = []
    count = 0
    for pk, text in live.order_by("network", "pk").values_list("pk", "network").iterator(chunk_size=2000):
        banned = changes.network_of(text)
        if banned is not None and banned.version == network.version and banned.overlaps(network):
            count += 1
            if len(found) < MAX_COVERED_SHOWN:
                found.append(pk)
    if not count:
        return None
    by_pk = Ban.objects.in_bulk(found)
    return Covered(entry=entry, bans=[by_pk[pk] for pk in found if pk in by_pk], count=count)


def render_editor(request: HtmxHttpRequest, jail: Jail, form: IgnoreAddForm, *, added: list[str] | None = None,
                  status_text: str = "", status_kind: str = "success", status: int = 200) -> HttpResponse:
    covered = [found for found in (covered_bans(entry, jail.name) for entry in added or []) if found is not None]
    context = {
        "jail": jail, "entries": entry_rows(jail.ignoreip), "form": form, "covered": covered,
        "global_entries": entry_rows(ignores.global_entries()),
        "status_text": status_text, "status_kind": status_kind, "applies_soon": APPLIES_SOON,
        "can_edit": has_role(request.user, Role.OPERATOR),
    }
    # 200 even for a refused entry when htmx asks: htmx swaps only successful answers, and the error is in it
    return render_page_or_partial(request, "jails/ignore.html", "ignore-editor", context,
                                  status=200 if wants_partial(request) else status)


# --- the page -------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@role_required(Role.VIEWER)
def jail_ignore(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """GET: the list (any role). POST action=add|remove: a change (operator)."""
    if request.method == "POST":
        if not has_role(request.user, Role.OPERATOR):
            raise PermissionDenied("changing an ignore list needs the operator role")
        return change_ignore_list(request, name)
    jail = get_object_or_404(Jail, name=name)
    # ?added= comes from the redirect after an add: name the bans the new entries cover
    added = [text for text in request.GET.getlist("added")[:MAX_COVERED_SHOWN] if text in jail.ignoreip]
    return render_editor(request, jail, IgnoreAddForm(), added=added)


def change_ignore_list(request: HtmxHttpRequest, name: str) -> HttpResponse:
    action = request.POST.get("action")
    if action == "add":
        return add_entries(request, name)
    if action == "remove":
        return remove_entry(request, name)
    return HttpResponse("action must be add or remove", status=400, content_type="text/plain")


def add_entries(request: HtmxHttpRequest, name: str) -> HttpResponse:
    form = IgnoreAddForm(request.POST)
    if not form.is_valid():
        jail = get_object_or_404(Jail, name=name)
        return render_editor(request, jail, form, status=400)
    try:
        jail, new = changes.add_ignored(name, form.cleaned_data["entry"], Actor.of_request(request))
    except Jail.DoesNotExist as gone:
        raise Http404(f"no jail {name}") from gone
    except ValidationError as too_many:
        form.add_error("entry", too_many)
        return render_editor(request, get_object_or_404(Jail, name=name), form, status=400)
    already = [text for text in form.cleaned_data["entry"] if text not in new]
    said = []
    if new:
        said.append(f"Added {', '.join(new)} to the ignore list of {jail.name}. {APPLIES_SOON}")
    names = [text for text in new if ignores.network_of(text) is None]
    if names and jail.usedns == Jail.UseDns.NO:  # the jail never looks names up: say what that means
        said.append(f"{', '.join(names)}: this jail does not look host names up (usedns = no), so "
                    f"{'it protects' if len(names) == 1 else 'they protect'} nothing; list the addresses.")
    if already:
        said.append(f"Already listed: {', '.join(already)}.")
    if wants_partial(request):
        return render_editor(request, jail, IgnoreAddForm(), added=new, status_text=" ".join(said),
                             status_kind="success" if new else "info")
    (messages.success if new else messages.info)(request, " ".join(said))
    query = f"?{urlencode({'added': new}, doseq=True)}" if new else ""
    return redirect(reverse("jail_ignore", args=[jail.name]) + query)


def remove_entry(request: HtmxHttpRequest, name: str) -> HttpResponse:
    text = request.POST.get("entry", "")[:MAX_ENTRY_TEXT]
    try:
        jail, removed = changes.remove_ignored(name, text, Actor.of_request(request))
    except Jail.DoesNotExist as gone:
        raise Http404(f"no jail {name}") from gone
    if removed:
        said = f"Removed {text} from the ignore list of {jail.name}. {APPLIES_SOON}"
    else:
        said = f"{text} is not in the ignore list of {jail.name} (any more): nothing to remove."
    if wants_partial(request):
        return render_editor(request, jail, IgnoreAddForm(), status_text=said,
                             status_kind="success" if removed else "warning")
    (messages.success if removed else messages.warning)(request, said)
    return redirect("jail_ignore", name=jail.name)


# --- the global list ------------------------------------------------------------------------------


def render_global_editor(request: HtmxHttpRequest, form: IgnoreAddForm, *, entries: list[str] | None = None,
                         added: list[str] | None = None, status_text: str = "", status_kind: str = "success",
                         status: int = 200) -> HttpResponse:
    """The page or its editor; `entries`: the global list if already read."""
    covered = [found for found in (covered_bans(entry, None) for entry in added or []) if found is not None]
    context = {
        "entries": entry_rows(ignores.global_entries() if entries is None else entries), "form": form,
        "covered": covered,
        "status_text": status_text, "status_kind": status_kind, "applies_soon": GLOBAL_APPLIES,
        "can_edit": has_role(request.user, Role.OPERATOR),
    }
    # as render_editor: 200 for htmx, which swaps only successful answers
    return render_page_or_partial(request, "jails/global_ignore.html", "global-ignore-editor", context,
                                  status=200 if wants_partial(request) else status)


@require_safe
@role_required(Role.VIEWER)
def global_ignore(request: HtmxHttpRequest) -> HttpResponse:
    """The global list (any role); operators see the add and remove buttons."""
    entries = ignores.global_entries()
    # ?added= comes from the redirect after an add: name the bans the new entries cover
    added = [text for text in request.GET.getlist("added")[:MAX_COVERED_SHOWN] if text in entries]
    return render_global_editor(request, IgnoreAddForm(), entries=entries, added=added)


@require_POST
@role_required(Role.OPERATOR)
def global_ignore_add(request: HtmxHttpRequest) -> HttpResponse:
    form = IgnoreAddForm(request.POST)
    if not form.is_valid():
        return render_global_editor(request, form, status=400)
    entries = form.cleaned_data["entry"]
    try:
        new = changes.add_global_ignored(entries, Actor.of_request(request))
    except ValidationError as too_many:
        form.add_error("entry", too_many)
        return render_global_editor(request, form, status=400)
    already = [text for text in entries if text not in new]
    said = []
    if new:
        said.append(f"Added {', '.join(new)} to the global ignore list: every jail ignores "
                    f"{'it' if len(new) == 1 else 'them'}. {GLOBAL_APPLIES}")
    names = [text for text in new if ignores.network_of(text) is None]
    if names:  # kept as fail2ban keeps them, but this panel never looks a name up
        said.append(f"{', '.join(names)}: host names are never looked up here, so they protect nothing; "
                    "list the addresses.")
    if already:
        said.append(f"Already listed: {', '.join(already)}.")
    if wants_partial(request):
        return render_global_editor(request, IgnoreAddForm(), added=new, status_text=" ".join(said),
                                    status_kind="success" if new else "info")
    (messages.success if new else messages.info)(request, " ".join(said))
    query = f"?{urlencode({'added': new}, doseq=True)}" if new else ""
    return redirect(reverse("global_ignore") + query)


@require_POST
@role_required(Role.OPERATOR)
def global_ignore_remove(request: HtmxHttpRequest) -> HttpResponse:
    text = request.POST.get("entry", "")[:MAX_ENTRY_TEXT]
    if changes.remove_global_ignored(text, Actor.of_request(request)):
        said, kind = f"Removed {text} from the global ignore list. {GLOBAL_APPLIES}", "success"
    else:
        said, kind = f"{text} is not in the global ignore list (any more): nothing to remove.", "warning"
    if wants_partial(request):
        return render_global_editor(request, IgnoreAddForm(), status_text=said, status_kind=kind)
    (messages.success if kind == "success" else messages.warning)(request, said)
    return redirect("global_ignore")
