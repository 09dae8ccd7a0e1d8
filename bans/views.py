"""Pages of the bans app: the dashboard, bans, replay."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from jails.roles import Role, role_required


@require_GET
@role_required(Role.VIEWER)
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "placeholder.html", {"title": "Dashboard"})


@require_GET
@role_required(Role.VIEWER)
def ban_list(request: HttpRequest) -> HttpResponse:
    return render(request, "placeholder.html", {"title": "Bans"})
