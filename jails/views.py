"""Pages of the jails app: jails, filters and their tester, import, audit."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from jails.models import Filter, Jail
from jails.roles import Role, role_required


@require_GET
@role_required(Role.VIEWER)
def jail_list(request: HttpRequest) -> HttpResponse:
    context = {
        "jails": Jail.objects.select_related("filter").all(),
        "filter_count": Filter.objects.filter(kind=Filter.Kind.FILTER).count(),
    }
    return render(request, "jails/home.html", context)


@require_GET
@role_required(Role.VIEWER)
def filter_list(request: HttpRequest) -> HttpResponse:
    return render(request, "placeholder.html", {"title": "Filters"})


@require_GET
@role_required(Role.ADMIN)
def import_config(request: HttpRequest) -> HttpResponse:
    return render(request, "placeholder.html", {"title": "Import"})


@require_GET
@role_required(Role.VIEWER)
def audit_list(request: HttpRequest) -> HttpResponse:
    return render(request, "placeholder.html", {"title": "Audit"})
