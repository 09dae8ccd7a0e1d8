"""Pages of the jails app. The full panel (dashboard, editors, tester) grows here."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from jails.models import Filter, Jail


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "jails": Jail.objects.select_related("filter").all(),
        "filter_count": Filter.objects.filter(kind=Filter.Kind.FILTER).count(),
    }
    return render(request, "jails/home.html", context)
