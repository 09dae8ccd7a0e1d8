"""The bans pages: search the bans, one ban's evidence and history, bans by hand, unbans, lifting a jail.

The searches and an address's history are bans.selectors' (the API will share them).

Reading needs the viewer role; every change needs operator. The changes themselves, the lockout
guard and their audit entries belong to bans.services.ban_by_hand and bans.actions (shared with
jailctl and Django admin); here the guard also gets the requesting person's own address, so nobody
bans themselves out of the panel.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from bans import actions, selectors, services
from bans.forms import BanCreateForm, BanSearchForm, LiftAllForm
from bans.models import Ban
from jails import slowlane
from jails.access import audit
from jails.access.client import client_address, request_peers
from jails.access.roles import Role, role_required
from jails.htmx import HtmxHttpRequest, render_page_or_partial
from jails.models import AuditEntry, Jail

PAGE_SIZE = 50


# --- searching (the queries are bans.selectors') ---------------------------------------------------


def page_of(request: HttpRequest, bans: QuerySet[Ban] | selectors.BansByPk) -> Page[Ban]:
    if isinstance(bans, QuerySet):
        bans = bans.select_related("created_by", "jail")
    return Paginator(bans, PAGE_SIZE).get_page(request.GET.get("page"))


def query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@require_GET
@role_required(Role.VIEWER)
def ban_list(request: HtmxHttpRequest) -> HttpResponse:
    form = BanSearchForm(request.GET)
    bans: QuerySet[Ban] | selectors.BansByPk = Ban.objects.none()
    groups: QuerySet[Any] | None = None
    capped_note = ""
    if form.is_valid():
        found, capped_note = selectors.matching_bans(form.cleaned_data)
        bans = selectors.BansByPk(found) if isinstance(found, list) else found
        if form.cleaned_data.get("group") == "address":
            groups = selectors.grouped_by_network(found)
    page = Paginator(groups, PAGE_SIZE).get_page(request.GET.get("page")) if groups is not None else page_of(
        request, bans)
    context = {"form": form, "page": page, "grouped": groups is not None, "query": query_without_page(request),
               "capped_note": capped_note, "live_per_jail": selectors.live_per_jail(),
               "columns": sort_columns(request), "max_selected": actions.MAX_SELECTED}
    return render_page_or_partial(request, "bans/ban_list.html", "ban-results", context)


BAN_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only, and within a 64-bit integer (SQLite's)
SORTABLE = [("network", "Address / network"), ("jail", "Jail"), ("started", "Since"), ("until", "Until")]


def sort_columns(request: HttpRequest) -> dict[str, dict[str, str]]:
    """Per sortable column: the link that sorts by it (the other way round when it is the current
    sort) and its aria-sort value; the search itself is kept, the page is not."""
    current = request.GET.get("sort") or "-started"
    query = request.GET.copy()
    query.pop("page", None)
    columns = {}
    for key, label in SORTABLE:
        ascending = current == key
        descending = current == f"-{key}"
        query["sort"] = f"-{key}" if ascending or (not descending and key == "started") else key
        columns[key] = {"label": label, "href": f"?{query.urlencode()}",
                        "aria_sort": "ascending" if ascending else "descending" if descending else "none"}
    return columns


@require_POST
@role_required(Role.OPERATOR)
def ban_unban_selected(request: HttpRequest) -> HttpResponse:
    """Lift the bans ticked in the bans list (each audited); back to the list as it was."""
    values = request.POST.getlist("ban")
    if not all(BAN_ID.fullmatch(value) for value in values):
        return HttpResponse("ban ids are numbers", status=400, content_type="text/plain; charset=utf-8")
    pks = sorted({int(value) for value in values})
    if not pks:
        messages.warning(request, "Tick the bans to lift first.")
        return back_or(request, reverse("ban_list"))
    try:
        lifted = actions.lift_selected(pks, audit.Actor.of_request(request))
    except ValueError as exc:
        messages.error(request, f"Nothing lifted: {exc}.")
        return back_or(request, reverse("ban_list"))
    not_live = len(pks) - len(lifted)
    messages.success(request, f"Lifting {len(lifted)} ban{'s' if len(lifted) != 1 else ''}"
                              + (f"; {not_live} no longer in force." if not_live else "."))
    return back_or(request, reverse("ban_list"))


EXPORT_FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula
ROWS_PER_CHUNK = 500  # one write to the client per this many rows, not one per row


@require_GET
@role_required(Role.VIEWER)
def ban_export(request: HttpRequest, fmt: str) -> HttpResponseBase:
    """The bans list's current search (the same filters, every page of it) as CSV or JSON, streamed."""
    if fmt not in EXPORT_FORMATS:
        raise Http404("export as csv or json")
    form = BanSearchForm(request.GET)
    if not form.is_valid():
        said = "; ".join(f"{name}: {' '.join(str(error) for error in errors)}" for name, errors in form.errors.items())
        return HttpResponse(said, status=400, content_type="text/plain; charset=utf-8")
    taken = slowlane.take(wait=0)  # an export streams for seconds: it must leave a worker free for pages
    if taken is None:
        return HttpResponse(slowlane.BUSY, status=503, content_type="text/plain; charset=utf-8",
                            headers={"Retry-After": str(slowlane.RETRY_SECONDS)})
    try:
        found, capped_note = selectors.bounded_for_export(*selectors.matching_bans(form.cleaned_data))
        rows = selectors.export_rows(found)
        chunks = csv_chunks(rows) if fmt == "csv" else json_chunks(rows)
    except BaseException:
        taken.release()
        raise
    response = StreamingHttpResponse(slowlane.HeldStream(taken, chunks), content_type=EXPORT_FORMATS[fmt])
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="bans-{stamp}.{fmt}"'
    if capped_note:
        response["X-Export-Note"] = capped_note  # a network search keeps its bounds
    return response


class _Line:
    """A file-like for csv.writer that hands back what it was given."""

    def write(self, text: str) -> str:
        return text


def csv_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    writer = csv.writer(_Line())
    lines = [writer.writerow(selectors.EXPORT_COLUMNS)]
    for row in rows:
        lines.append(writer.writerow([spreadsheet_safe(row[column]) for column in selectors.EXPORT_COLUMNS]))
        if len(lines) >= ROWS_PER_CHUNK:
            yield "".join(lines)
            lines = []
    yield "".join(lines)


def spreadsheet_safe(value: Any) -> Any:
    """A text a spreadsheet would run as a formula (a reason someone typed) is kept as text."""
    if isinstance(value, str) and value.lstrip(" \n\r\t").startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def json_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    pieces = ["["]
    for index, row in enumerate(rows):
        pieces.append(("," if index else "") + "\n" + json.dumps(row))
        if len(pieces) >= ROWS_PER_CHUNK:
            yield "".join(pieces)
            pieces = []
    pieces.append("\n]\n")
    yield "".join(pieces)


# --- one ban ---------------------------------------------------------------------------------------





@require_GET
@role_required(Role.VIEWER)
def ban_detail(request: HttpRequest, pk: int) -> HttpResponse:
    ban = get_object_or_404(Ban.objects.select_related("created_by", "ended_by", "jail", "covered_by"), pk=pk)
    audit_entries = AuditEntry.objects.filter(object_type="ban", object_id=str(ban.pk)).order_by("-at")[:20]
    context = {"ban": ban, "is_live": ban.in_force, "audit_entries": audit_entries,
               **selectors.address_history(ban)}
    return render(request, "bans/ban_detail.html", context)


# --- changes ----------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@role_required(Role.OPERATOR)
def ban_create(request: HtmxHttpRequest) -> HttpResponse:
    """A ban by hand. A refusal of the lockout gate comes back as a form error saying why; a ban
    inside private space or this host's network comes back asking for a confirmation."""
    if request.method != "POST":
        initial = {key: request.GET[key] for key in ("address", "jail") if key in request.GET}
        return render_ban_form(request, BanCreateForm(initial=initial))
    form = BanCreateForm(request.POST)
    if not form.is_valid():
        return render_ban_form(request, form)
    jail = form.chosen_jail
    try:
        ban = services.ban_by_hand(jail, form.cleaned_data["address"], form.bantime_for(jail),
                                   actor=audit.Actor.of_request(request), protected=request_peers(request),
                                   confirmed=form.cleaned_data["confirm"], reason=form.cleaned_data["reason"],
                                   host=settings.IPS_HOST_NAME)
    except services.ConfirmationNeeded as exc:
        form.ask_confirmation(str(exc))
        return render_ban_form(request, form)
    except services.BanRefused as exc:
        form.add_error(None, str(exc))
        return render_ban_form(request, form)
    messages.success(request, f"{ban.network} banned in {ban.jail_name}; the firewall applies it shortly.")
    if request.htmx:
        return HttpResponseClientRedirect(reverse("ban_detail", args=[ban.pk]))
    return redirect("ban_detail", pk=ban.pk)


def render_ban_form(request: HtmxHttpRequest, form: BanCreateForm) -> HttpResponse:
    context = {"form": form, "client_address": client_address(request), "blocklist": Ban.BLOCKLIST,
               "max_prefix": {4: settings.IPS_MAX_BAN_PREFIX_V4, 6: settings.IPS_MAX_BAN_PREFIX_V6}}
    return render_page_or_partial(request, "bans/ban_form.html", "ban-form", context)


@require_POST
@role_required(Role.OPERATOR)
def ban_unban(request: HttpRequest, pk: int) -> HttpResponse:
    ban = get_object_or_404(Ban, pk=pk)
    lifted = actions.lift_ban(ban, audit.Actor.of_request(request))
    if lifted:
        messages.success(request, f"Lifting the ban of {ban.network} in {ban.jail_name}.")
    else:
        messages.warning(request, f"The ban of {ban.network} in {ban.jail_name} is not in force: nothing to lift.")
    return back_or(request, reverse("ban_detail", args=[ban.pk]))


def back_or(request: HttpRequest, default: str) -> HttpResponse:
    """Back to the page the form came from (the ban list) when it is one of ours, else `default`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return redirect(target)
    return redirect(default)


@require_POST
@role_required(Role.OPERATOR)
def ban_make_permanent(request: HttpRequest, pk: int) -> HttpResponse:
    ban = get_object_or_404(Ban.objects.select_related("jail"), pk=pk)
    # a permanent ban must pass the lockout guard as a new one would: a jail may have banned the
    # person's own address, this host's or an address since added to ignoreip (it expires; a
    # permanent one would not)
    try:
        services.check_manual_ban(ban.network, protected=request_peers(request), confirmed=True)
    except services.BanRefused as exc:
        messages.error(request, f"The ban of {ban.network} cannot be made permanent: {exc}.")
        return redirect("ban_detail", pk=ban.pk)
    changed = actions.make_permanent(ban, audit.Actor.of_request(request))
    if changed:
        messages.success(request, f"The ban of {ban.network} in {ban.jail_name} is now permanent.")
    else:
        messages.warning(request, f"The ban of {ban.network} is not in force or is permanent already.")
    return redirect("ban_detail", pk=ban.pk)


@require_http_methods(["GET", "POST"])
@role_required(Role.OPERATOR)
def jail_lift_all(request: HttpRequest, jail_name: str) -> HttpResponse:
    """Lift every ban of a jail (or of the blocklist), after a confirmation step."""
    live = Ban.objects.in_force().filter(jail_name=jail_name)
    jail = Jail.objects.filter(name=jail_name).first()
    if jail is None and jail_name != Ban.BLOCKLIST and not Ban.objects.filter(jail_name=jail_name).exists():
        raise Http404(f"no jail named {jail_name!r} and no bans under that name")
    form = LiftAllForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        lifted = actions.lift_jail(jail_name, audit.Actor.of_request(request))
        messages.success(request, f"Lifting {len(lifted)} ban(s) of {jail_name}.")
        return redirect(f"{reverse('ban_list')}?{urlencode({'jail': jail_name})}")
    context = {"jail_name": jail_name, "count": live.count(), "sample": live.order_by("network")[:20], "form": form}
    return render(request, "bans/lift_all_confirm.html", context)
