"""Replay pages: run a jail's settings (edited or not) over its log in the background, watch the
progress bar, then compare what it would have banned with what the live jail did (bans.replay)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from bans import replay
from bans.forms import ReplayForm
from bans.models import ReplayRun
from jails.access.audit import Actor
from jails.access.roles import Role, role_required
from jails.htmx import HtmxHttpRequest, render_page_or_partial
from jails.models import Jail

RECENT_RUNS = 20


@require_http_methods(["GET", "POST"])
@role_required(Role.OPERATOR)
def replay_start(request: HttpRequest) -> HttpResponse:
    """The replay form and the recent runs. A replay changes nothing, but it reads whole logs on a
    worker and runs regexes a person typed: operators only."""
    if request.method == "POST":
        form = ReplayForm(request.POST)
        if form.is_valid():
            run = replay.start_replay(form.cleaned_data["jail"], form.overrides(), Actor.of_request(request))
            return redirect("replay_detail", pk=run.pk)
    else:
        form = ReplayForm(initial={"jail": request.GET.get("jail")} if request.GET.get("jail") else None)
    context = {"form": form, "runs": ReplayRun.objects.select_related("jail", "created_by")[:RECENT_RUNS],
               "jails": Jail.objects.exclude(backend=Jail.Backend.SYSTEMD).select_related("filter")}
    return render(request, "bans/replay_form.html", context)


@require_GET
@role_required(Role.VIEWER)
def replay_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The run's progress (polled by htmx every second until it is finished), then its results."""
    run = get_object_or_404(ReplayRun.objects.select_related("jail", "created_by"), pk=pk)
    context = {"run": run, "changed": sorted(run.overrides)}
    return render_page_or_partial(request, "bans/replay_detail.html", "replay-status", context)
