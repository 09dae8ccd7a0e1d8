"""The Hosts page: each server of the fleet, how its firewall and its log watchers are doing, the bans
it applies and its queues (watchers.hosts). Read-only, for viewers: joining and leaving are
`manage.py hostctl` (credentials are made there)."""

from __future__ import annotations

from django.http import HttpResponse
from django.views.decorators.http import require_GET

from jails.access.roles import Role, role_required
from jails.htmx import HtmxHttpRequest, render_page_or_partial
from watchers import hosts


@require_GET
@role_required(Role.VIEWER)
def host_list(request: HtmxHttpRequest) -> HttpResponse:
    rows, fleet_queue = hosts.host_rows()
    context = {"rows": rows, "fleet_queue": fleet_queue,
               "agents": sum(1 for row in rows if row.host.is_agent and row.host.state != row.host.State.REVOKED)}
    return render_page_or_partial(request, "watchers/host_list.html", "host-table", context)
