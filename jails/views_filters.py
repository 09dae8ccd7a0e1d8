"""Filter pages: the list, a filter's page and editor, and importing one fail2ban filter.d file.

A filter is saved only when the engine reads and compiles it (includes resolved against the other
stored filters); its derived columns (failregex list, datepattern...) are refreshed in the same
save. Jails using it pick the change up by themselves (read_source recompiles a changed filter).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib import messages
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from jails import services
from jails.access import audit
from jails.access.roles import Role, role_required
from jails.forms import FilterForm, FilterImportForm
from jails.models import Filter
from jails.tester import lint_patterns
from jails.views import APPLIES_SOON

# What an audit entry keeps of a filter: the texts an admin wrote (derived columns follow from them).
AUDITED = ["name", "description", "source", "source_local", "origin"]
# The audit action of a save whose regexes can backtrack catastrophically, made with the override.
ACCEPTED_BACKTRACKING = "filter.accept_backtracking"


def record_override(request: HttpRequest, flt: Filter, dangerous: Sequence[services.DangerousRegex],
                    via: str = "") -> None:
    """The admin ticked the override to save regexes that can backtrack catastrophically: say which."""
    if dangerous:
        audit.record(request, ACCEPTED_BACKTRACKING, flt, via=via,
                     after={"override": services.OVERRIDE_LABEL, "regexes": [d.as_record() for d in dangerous]})


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
        with transaction.atomic():
            flt = form.save(commit=False)
            for key, value in form.derived.items():
                setattr(flt, key, value)
            flt.origin = Filter.Origin.CUSTOM
            flt.save()
            audit.record(request, "filter.create", flt, after=audit.snapshot(flt, AUDITED))
            record_override(request, flt, form.dangerous)
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
        with transaction.atomic():
            before = audit.snapshot(Filter.objects.select_for_update().get(pk=flt.pk), AUDITED)
            flt = form.save(commit=False)
            for key, value in form.derived.items():
                setattr(flt, key, value)
            flt.save()
            after = audit.snapshot(flt, AUDITED)
            changed = audit.changed_fields(before, after)
            if changed:
                audit.record(request, "filter.edit", flt, before={k: before[k] for k in changed},
                             after={k: after[k] for k in changed})
            record_override(request, flt, form.dangerous)
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
        with transaction.atomic():
            flt = Filter.objects.select_for_update().filter(name=data["name"]).first()
            before = audit.snapshot(flt, AUDITED) if flt is not None else None
            flt = flt or Filter(name=data["name"])
            flt.source, flt.source_local = data["conf"], data["local"]
            flt.origin = Filter.Origin.IMPORTED
            upload = data.get("conf_file")
            flt.origin_path = upload.name[:500] if upload is not None else "pasted in the panel"
            for key, value in form.derived.items():
                setattr(flt, key, value)
            flt.save()
            audit.record(request, "filter.import", flt, before=before, after=audit.snapshot(flt, AUDITED))
            record_override(request, flt, form.dangerous)
        messages.success(request, f"Filter {flt.name} imported. {APPLIES_SOON if before else ''}".strip())
        return redirect("filter_detail", name=flt.name)
    return render(request, "jails/filter_import.html", {"form": form}, status=400 if form.is_bound else 200)
