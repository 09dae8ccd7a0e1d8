"""The bans pages: search the bans, one ban's evidence and history, bans by hand, unbans, lifting a jail.

Reading needs the viewer role; every change needs operator. The changes themselves, the lockout
guard and their audit entries belong to bans.services.ban_by_hand and bans.actions (shared with
jailctl and Django admin); here the guard also gets the requesting person's own address, so nobody
bans themselves out of the panel.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from bans import actions, services
from bans.forms import BanCreateForm, BanSearchForm, LiftAllForm
from bans.models import Ban, Failure
from jails.access import audit
from jails.access.client import client_address, request_peers
from jails.access.roles import Role, role_required
from jails.htmx import HtmxHttpRequest, render_page_or_partial
from jails.models import AuditEntry, Jail

PAGE_SIZE = 50
HISTORY_ROWS = 50
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# A network search keeps at most this many matches and examines at most this many bans: searching
# 0.0.0.0/0 must not load every ban (nor send SQLite an IN list over its 32,766 variables).
MAX_NETWORK_MATCHES = 1000
MAX_NETWORK_SCAN = 50_000
NARROW = "narrow the search (a smaller network, a jail or a state) to see the others."


# --- searching -------------------------------------------------------------------------------------


def networks_holding(address: Address) -> list[str]:
    """Every network (in the Ban table's CIDR text) that contains `address`, from /32 (/128) up."""
    prefixes = range(address.max_prefixlen + 1)
    return [str(ipaddress.ip_network(f"{address}/{prefix}", strict=False)) for prefix in prefixes]


@dataclass
class Matches:
    """The ids of the bans a network search found, newest first, and why the list may be incomplete."""

    pks: list[int]
    capped_note: str = ""


def bans_inside(bans: QuerySet[Ban], network: Network, *, limit: int | None = None,
                scan_limit: int | None = None) -> Matches:
    """The bans whose network lies inside `network` (the network itself included), newest first.

    CIDR text cannot be compared as numbers in SQL portably, so the database narrows by family and
    by the address text every member shares, and `ipaddress` decides. Bounded, because a viewer can
    search 0.0.0.0/0: at most `limit` matches are kept and `scan_limit` bans examined (streamed, not
    loaded at once); the caller pages the ids, so no query carries more than a page of them.
    """
    limit = MAX_NETWORK_MATCHES if limit is None else limit
    scan_limit = MAX_NETWORK_SCAN if scan_limit is None else scan_limit
    bans = bans.filter(family=network.version)
    shared = services.shared_text_prefix(network)
    if shared:
        bans = bans.filter(network__startswith=shared)
    rows = bans.order_by("-started_at", "-pk").values_list("pk", "network")[: scan_limit + 1]
    found: list[int] = []
    for seen, (pk, text) in enumerate(rows.iterator(chunk_size=2000)):
        if seen == scan_limit:
            return Matches(found, f"Only the newest {scan_limit:,} bans were searched: {NARROW}")
        if ipaddress.ip_network(text).subnet_of(network):  # type: ignore[arg-type]
            if len(found) == limit:
                return Matches(found, f"Showing the first {limit:,} matches (newest first): {NARROW}")
            found.append(pk)
    return Matches(found)


class BansByPk(Sequence[Ban]):
    """Bans in the order of a list of ids, fetched a page at a time when the paginator slices it."""

    def __init__(self, pks: list[int]) -> None:
        self.pks = pks

    def __len__(self) -> int:
        return len(self.pks)

    @overload
    def __getitem__(self, index: int) -> Ban: ...

    @overload
    def __getitem__(self, index: slice) -> list[Ban]: ...

    def __getitem__(self, index: int | slice) -> Ban | list[Ban]:
        if isinstance(index, int):
            return Ban.objects.get(pk=self.pks[index])
        wanted = self.pks[index]
        rows = Ban.objects.select_related("created_by", "jail").in_bulk(wanted)
        return [rows[pk] for pk in wanted if pk in rows]  # one ended and was deleted meanwhile: skipped


def search_bans(cleaned: dict[str, Any]) -> QuerySet[Ban]:
    bans = Ban.objects.all()
    if cleaned.get("jail"):
        bans = bans.filter(jail_name=cleaned["jail"])
    state = cleaned.get("state")
    now = timezone.now()
    ran_out = Q(state__in=Ban.LIVE_STATES, expires_at__lte=now)  # expired the moment its time is up
    if state == "live":
        bans = bans.in_force(now)
    elif state == "ended":
        bans = bans.filter(Q(state__in=[Ban.State.LIFTED, Ban.State.EXPIRED, Ban.State.REFUSED]) | ran_out)
    elif state == Ban.State.EXPIRED:
        bans = bans.filter(Q(state=state) | ran_out)
    elif state in Ban.LIVE_STATES:
        bans = bans.in_force(now).filter(state=state)
    elif state:
        bans = bans.filter(state=state)
    if cleaned.get("origin") == "manual":
        bans = bans.filter(origin=Ban.Origin.USER)
    elif cleaned.get("origin") == "automatic":
        bans = bans.exclude(origin=Ban.Origin.USER)
    target = cleaned.get("q")
    if isinstance(target, ipaddress.IPv4Address | ipaddress.IPv6Address):
        bans = bans.filter(network__in=networks_holding(target))
    return bans.order_by("-started_at", "-pk")  # a network (q) is matched by bans_inside, in ban_list


def page_of(request: HttpRequest, bans: QuerySet[Ban] | BansByPk) -> Page[Ban]:
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
    bans: QuerySet[Ban] | BansByPk = Ban.objects.none()
    capped_note = ""
    if form.is_valid():
        bans = search_bans(form.cleaned_data)
        target = form.cleaned_data.get("q")
        if isinstance(target, ipaddress.IPv4Network | ipaddress.IPv6Network):
            matches = bans_inside(bans, target)
            bans, capped_note = BansByPk(matches.pks), matches.capped_note
    context = {"form": form, "page": page_of(request, bans), "query": query_without_page(request),
               "capped_note": capped_note, "live_per_jail": live_per_jail()}
    return render_page_or_partial(request, "bans/ban_list.html", "ban-results", context)


def live_per_jail() -> list[dict[str, Any]]:
    rows = Ban.objects.in_force().values("jail_name").annotate(count=Count("pk"))
    return [dict(row) for row in rows.order_by("jail_name")]


# --- one ban ---------------------------------------------------------------------------------------


def address_history(ban: Ban) -> dict[str, Any]:
    """The bans of the same address or network in every jail, and, for one address, its failures."""
    network = ban.ip_network
    if network.num_addresses == 1:
        holders = networks_holding(network.network_address)
        failures = Failure.objects.filter(address=str(network.network_address))
    else:
        holders = [ban.network]
        failures = Failure.objects.none()
    bans = Ban.objects.filter(network__in=holders).exclude(pk=ban.pk).order_by("-started_at")
    return {
        "other_bans": bans[:HISTORY_ROWS],
        "failures": failures.select_related("jail").order_by("-time")[:HISTORY_ROWS],
        "failures_per_jail": failures.values("jail__name").annotate(count=Count("pk")).order_by("-count"),
    }


@require_GET
@role_required(Role.VIEWER)
def ban_detail(request: HttpRequest, pk: int) -> HttpResponse:
    ban = get_object_or_404(Ban.objects.select_related("created_by", "ended_by", "jail", "covered_by"), pk=pk)
    audit_entries = AuditEntry.objects.filter(object_type="ban", object_id=str(ban.pk)).order_by("-at")[:20]
    context = {"ban": ban, "is_live": ban.in_force, "audit_entries": audit_entries,
               **address_history(ban)}
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
