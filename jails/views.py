"""Pages of the jails app: the jail list, a jail's page, creating, editing, enabling and disabling.

Filters and their tester live in views_filters.py / views_tester.py, the fail2ban import in
views_import.py, the audit and users pages in jails/access/views.py. Saved changes need no restart: the
log followers re-read the jails every few seconds (watchers/follow.py, RESYNC_SECONDS).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bans.models import Ban, Failure, Tally
from jails import changes
from jails.access.audit import Actor
from jails.access.roles import Role, role_required
from jails.engine.durations import format_duration
from jails.forms import JAIL_GROUPS, JAIL_HELP, JailForm
from jails.htmx import HtmxHttpRequest, wants_partial
from jails.logpaths import expand_logpaths
from jails.models import Jail
from watchers.models import LogSource

# Said next to every save button: what "applies" means without a restart.
APPLIES_SOON = "Changes apply within seconds: the log watchers re-read the jails every 3 s, no restart needed."


# --- counts ---------------------------------------------------------------------------------------


def jail_counts(jails: Iterable[Jail]) -> dict[int, dict[str, int]]:
    """fail2ban-client's numbers per jail (as `jailctl status JAIL`), in four grouped queries."""
    ids = [jail.id for jail in jails]
    names = {jail.name: jail.id for jail in jails}
    counts: dict[int, dict[str, int]] = {
        i: {"currently_failed": 0, "total_failed": 0, "currently_banned": 0, "total_banned": 0} for i in ids}
    for jail_id, n in Tally.objects.filter(jail_id__in=ids).values_list("jail_id").annotate(n=Count("id")):
        counts[jail_id]["currently_failed"] = n
    for jail_id, n in Failure.objects.filter(jail_id__in=ids).values_list("jail_id").annotate(n=Count("id")):
        counts[jail_id]["total_failed"] = n
    bans = Ban.objects.originals().filter(jail_name__in=list(names))
    for name, n in bans.in_force().values_list("jail_name").annotate(n=Count("id")):
        counts[names[name]]["currently_banned"] = n
    for name, n in bans.values_list("jail_name").annotate(n=Count("id")):
        counts[names[name]]["total_banned"] = n
    return counts


def sources_by_jail(jails: Iterable[Jail]) -> dict[int, list[LogSource]]:
    """Each jail's log sources of its current backend: the journal's row of a jail moved back to files
    (or the files' rows of one moved to the journal) is kept for its read position, not shown."""
    journal = {jail.id: jail.backend == Jail.Backend.SYSTEMD for jail in jails}
    found: dict[int, list[LogSource]] = {jail_id: [] for jail_id in journal}
    for source in LogSource.objects.filter(jail_id__in=list(found)).order_by("path"):
        if (source.kind == LogSource.Kind.JOURNAL) == journal[source.jail_id]:
            found[source.jail_id].append(source)
    return found


def annotate(jails: list[Jail]) -> list[Jail]:
    """Attach `counts` and `log_sources` to each jail for the templates."""
    counts = jail_counts(jails)
    sources = sources_by_jail(jails)
    for jail in jails:
        jail.counts = counts[jail.id]  # type: ignore[attr-defined]
        jail.log_sources = sources[jail.id]  # type: ignore[attr-defined]
    return jails


def duration_text(seconds: int | None) -> str:
    return "" if seconds is None else format_duration(seconds)


def option_rows(jail: Jail) -> list[dict[str, Any]]:
    """Every option of the jail by section, as text, for its page (durations as 10m, lists joined)."""
    durations = {"findtime", "bantime", "bantime_maxtime", "bantime_rndtime"}
    groups = []
    for legend, _, names in JAIL_GROUPS:
        rows = []
        for name in names:
            value = getattr(jail, name)
            if name in durations:
                text = "permanent (-1)" if value == -1 else duration_text(value)
            elif isinstance(value, bool):
                text = "yes" if value else "no"
            elif isinstance(value, list):
                text = "\n".join(value)
            elif isinstance(value, dict):
                text = ", ".join(f"{key}={item}" for key, item in value.items())
            elif hasattr(jail, f"get_{name}_display"):
                text = getattr(jail, f"get_{name}_display")()
            else:
                text = "" if value is None else str(value)
            option = "bantime." + name.removeprefix("bantime_") if name.startswith("bantime_") else name
            rows.append({"name": name, "option": option, "value": text, "help": JAIL_HELP.get(name, "")})
        groups.append({"legend": legend, "rows": rows})
    return groups


# --- pages ----------------------------------------------------------------------------------------


@require_GET
@role_required(Role.VIEWER)
def jail_list(request: HttpRequest) -> HttpResponse:
    jails = annotate(list(Jail.objects.select_related("filter")))
    return render(request, "jails/jail_list.html", {"jails": jails, "applies_soon": APPLIES_SOON})


@require_GET
@role_required(Role.VIEWER)
def jail_detail(request: HttpRequest, name: str) -> HttpResponse:
    jail = annotate([get_object_or_404(Jail.objects.select_related("filter"), name=name)])[0]
    files = expand_logpaths(jail.logpath) if jail.backend != Jail.Backend.SYSTEMD else []
    known = {source.path for source in jail.log_sources}  # type: ignore[attr-defined]
    context = {
        "jail": jail,
        "unread_files": [path for path in files if path not in known],
        "groups": option_rows(jail),
        "live_bans": Ban.objects.originals().in_force().filter(jail_name=jail.name).order_by("network")[:50],
        "applies_soon": APPLIES_SOON,
        # a fleet: where the jail runs (placed nowhere: on this server only) and its bans apply
        "placements": list(jail.placements.select_related("host").order_by("host__name")),
        "several_hosts": len({source.host for source in jail.log_sources}) > 1,  # type: ignore[attr-defined]
        "central_host": settings.IPS_HOST_NAME,
    }
    return render(request, "jails/jail_detail.html", context)


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def jail_create(request: HttpRequest) -> HttpResponse:
    form = JailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        jail = changes.create_jail(form.save(commit=False), Actor.of_request(request))
        messages.success(request, f"Jail {jail.name} created. {APPLIES_SOON}")
        return redirect("jail_detail", name=jail.name)
    return render(request, "jails/jail_form.html", {"form": form, "jail": None, "applies_soon": APPLIES_SOON},
                  status=400 if form.is_bound else 200)


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def jail_edit(request: HttpRequest, name: str) -> HttpResponse:
    jail = get_object_or_404(Jail, name=name)
    form = JailForm(request.POST or None, instance=jail)
    if request.method == "POST" and form.is_valid():
        jail = form.save(commit=False)
        changed = changes.save_jail(jail, Actor.of_request(request))
        messages.success(request, f"Jail {jail.name} saved. {APPLIES_SOON}" if changed else "Nothing changed.")
        return redirect("jail_detail", name=jail.name)
    return render(request, "jails/jail_form.html", {"form": form, "jail": jail, "applies_soon": APPLIES_SOON},
                  status=400 if form.is_bound else 200)


@require_POST
@role_required(Role.ADMIN)
def jail_toggle(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """Enable or disable (the form says which, so a double click cannot flip it back)."""
    wanted = request.POST.get("enabled")
    if wanted not in ("on", "off"):
        return HttpResponse("enabled must be on or off", status=400, content_type="text/plain")
    try:
        jail, _changed = changes.set_jail_enabled(name, wanted == "on", Actor.of_request(request))
    except Jail.DoesNotExist as gone:
        raise Http404(f"no jail {name}") from gone
    if wants_partial(request):
        row = annotate([Jail.objects.select_related("filter").get(pk=jail.pk)])[0]
        return render(request, "jails/jail_list.html#jail_row", {"jail": row, "just_toggled": True})
    messages.success(request, f"Jail {jail.name} {'enabled' if jail.enabled else 'disabled'}. {APPLIES_SOON}")
    if request.POST.get("next") == "detail":
        return redirect("jail_detail", name=jail.name)
    return redirect("jail_list")
