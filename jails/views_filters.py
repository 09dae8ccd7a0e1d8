"""Filter pages: the list, a filter's page and editor, and importing one fail2ban filter.d file.

A filter is saved only when the engine reads and compiles it (includes resolved against the other
stored filters); its derived columns (failregex list, datepattern...) are refreshed in the same
save, by jails.changes, which also audits it. Jails using it pick the change up by themselves
(read_source recompiles a changed filter).
"""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from jails import changes
from jails.access.audit import Actor
from jails.access.roles import Role, role_required
from jails.forms import FilterForm, FilterImportForm
from jails.models import Filter
from jails.tester import lint_patterns
from jails.views import APPLIES_SOON


@require_GET
@role_required(Role.VIEWER)
def filter_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    filters = Filter.objects.annotate(jail_count=Count("jails")).order_by("name")  # GROUP BY drops Meta.ordering
    if query:
        filters = filters.filter(Q(name__icontains=query) | Q(description__icontains=query))
    return render(request, "jails/filter_list.html", {"filters": filters, "q": query})


@require_GET
@role_required(Role.VIEWER)
def filter_detail(request: HttpRequest, name: str) -> HttpResponse:
    flt = get_object_or_404(Filter, name=name)
    context = {
        "filter": flt,
        "jails": flt.jails.order_by("name"),
        "warnings": lint_patterns(flt.prefregex, flt.failregex, flt.ignoreregex),
    }
    return render(request, "jails/filter_detail.html", context)


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def filter_create(request: HttpRequest) -> HttpResponse:
    form = FilterForm(request.POST or None, initial={"source": "[Definition]\nfailregex = ^<HOST> \n"})
    if request.method == "POST" and form.is_valid():
        flt = changes.create_filter(form.save(commit=False), form.derived, form.dangerous, Actor.of_request(request))
        messages.success(request, f"Filter {flt.name} created.")
        return redirect("filter_detail", name=flt.name)
    return render(request, "jails/filter_form.html", {"form": form, "filter": None},
                  status=400 if form.is_bound else 200)


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def filter_edit(request: HttpRequest, name: str) -> HttpResponse:
    flt = get_object_or_404(Filter, name=name)
    form = FilterForm(request.POST or None, instance=flt)
    if request.method == "POST" and form.is_valid():
        flt = form.save(commit=False)
        changed = changes.save_filter(flt, form.derived, form.dangerous, Actor.of_request(request))
        messages.success(request, f"Filter {flt.name} saved. {APPLIES_SOON}" if changed else "Nothing changed.")
        return redirect("filter_detail", name=flt.name)
    return render(request, "jails/filter_form.html", {"form": form, "filter": flt},
                  status=400 if form.is_bound else 200)


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def filter_import(request: HttpRequest) -> HttpResponse:
    form = FilterImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        upload = data.get("conf_file")
        flt, replaced = changes.import_filter(
            data["name"], data["conf"], data["local"], upload.name if upload is not None else "pasted in the panel",
            form.derived, form.dangerous, Actor.of_request(request))
        messages.success(request, f"Filter {flt.name} imported. {APPLIES_SOON if replaced else ''}".strip())
        return redirect("filter_detail", name=flt.name)
    return render(request, "jails/filter_import.html", {"form": form}, status=400 if form.is_bound else 200)
