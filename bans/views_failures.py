"""The failures page: the log lines counted as failures, newest first, by jail, address and time.

Where the dashboard's bars lead (a bar is a jail and a time range). Read-only, for viewers. The
lines are attacker-written: shown escaped, control characters made visible, never as markup.
"""

from __future__ import annotations

from django.http import HttpResponse
from django.views.decorators.http import require_GET

from bans import selectors
from bans.forms import FailureSearchForm
from jails.access.roles import Role, role_required
from jails.htmx import HtmxHttpRequest, render_page_or_partial


@require_GET
@role_required(Role.VIEWER)
def failure_list(request: HtmxHttpRequest) -> HttpResponse:
    form = FailureSearchForm(request.GET)
    page = selectors.FailurePage([], None)
    if form.is_valid():
        page = selectors.failure_page(selectors.search_failures(form.cleaned_data), request.GET.get("older", ""))
    query = request.GET.copy()
    query.pop("older", None)
    context = {"form": form, "page": page, "query": query.urlencode(), "paged": "older" in request.GET}
    return render_page_or_partial(request, "bans/failure_list.html", "failure-results", context)
