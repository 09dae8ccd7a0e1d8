"""The filter tester page: fail2ban-regex in the browser, live as you type.

The same form works three ways: a plain POST renders the whole page with the results (JavaScript
off); with htmx, every edit posts the form (HX-Request) and only the results partial comes back;
"Load" fills the log box with the last lines of a jail's log (a plain POST, so the box is refilled).
Testing changes nothing, so a viewer may use it. Loading a log needs the operator role: a log holds
far more than failures (successful logins, with user names and the addresses admins come from),
while a viewer otherwise sees only the lines a filter matched (ban evidence, failures); operators
already read whole logs through replays. Viewers paste lines instead. Whatever the role, only a
stored jail's log files are read, never system or panel files (tester.private_file_reason).
"""

from __future__ import annotations

import re
import time
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods

from jails import slowlane, tester
from jails.access.roles import Role, has_role, role_required
from jails.engine.definition import FilterDefinition
from jails.engine.errors import EngineError
from jails.forms import TesterForm
from jails.htmx import HtmxHttpRequest, render_page_or_partial
from jails.logpaths import expand_logpaths
from jails.models import Filter, Jail


@require_http_methods(["GET", "POST"])
@role_required(Role.VIEWER)
def filter_tester(request: HtmxHttpRequest, name: str | None = None) -> HttpResponse:
    if name is not None:
        get_object_or_404(Filter, name=name)
    context: dict[str, Any] = {"filter_name": name, "limits": {"lines": tester.MAX_LINES,
                                                               "tail": tester.TAIL_MAX_LINES}}
    if request.method == "GET":
        context["form"] = TesterForm(initial=initial_values(request, name))
        return render(request, "jails/tester.html", context)
    draft = draft_values(request.POST, name)
    if draft is not None:
        # "Test this draft" on a filter's or a jail's edit page: the unsaved values, in the tester
        context["draft"], data = draft
        context["form"] = TesterForm(data)
        return render(request, "jails/tester.html", context)
    data = request.POST.copy()
    if "load_tail" in data:
        if has_role(request.user, Role.OPERATOR):
            context["loaded"] = load_tail(data)
        else:
            context["loaded"] = {"error": "Loading a jail's log needs the operator role; paste the lines instead."}
    form = TesterForm(data)
    context["form"] = form
    context.update(results(form, request.user.pk or 0))  # role_required: always a logged-in user
    return render_page_or_partial(request, "jails/tester.html", "results", context)


def initial_values(request: HttpRequest, name: str | None) -> dict[str, Any]:
    """Preselect the filter of /filters/NAME/test/, or a jail given as ?jail=NAME."""
    jail = request.GET.get("jail", "")
    if jail and Jail.objects.filter(name=jail).exists():
        return {"source": "jail", "jail": jail, "tail_jail": jail}
    return {"source": "stored", "filter": name or ""}


def draft_values(posted: QueryDict, filter_name: str | None = None) -> tuple[str, QueryDict] | None:
    """The tester's fields for the unsaved form of a filter or a jail (posted by their "Test this
    draft" button, ?test_draft=filter|jail), with its jail's log offered to load; None otherwise."""
    kind = posted.get("test_draft")
    data = QueryDict(mutable=True)
    if kind == "filter":
        name = filter_name or posted.get("name", "")  # an existing filter's name is in the URL
        data.update({"source": "pasted", "filter_source": posted.get("source", ""),
                     "filter_local": posted.get("source_local", "")})
        jail = Jail.objects.filter(filter__name=name).order_by("name").first() if name else None
        label = f"the unsaved filter {name}" if name else "the unsaved filter"
    elif kind == "jail":
        chosen_pk = posted.get("filter") or ""
        chosen = Filter.objects.filter(pk=int(chosen_pk)).first() if re.fullmatch(r"[0-9]{1,18}", chosen_pk) else None
        data.update({"source": "stored", "filter": chosen.name if chosen else "",
                     "options": posted.get("filter_options", ""), "datepattern": posted.get("datepattern", "")})
        jail = Jail.objects.filter(name=posted.get("name", "")).first()
        label = f"the unsaved jail {posted.get('name', '')}: its filter, filter options and datepattern"
    else:
        return None
    if jail is not None:
        data["tail_jail"] = jail.name
    return label, data


def load_tail(data: QueryDict) -> dict[str, Any]:
    """Put the last lines of the chosen jail's log into the form's log box; what happened, for the page."""
    jail = Jail.objects.filter(name=data.get("tail_jail", "")).first()
    if jail is None:
        return {"error": "Choose a jail to load lines from."}
    if jail.backend == Jail.Backend.SYSTEMD:
        return {"error": f"Jail {jail.name} reads the systemd journal: paste lines from "
                         "`journalctl -o short` instead."}
    try:
        count = int(data.get("tail_count") or 50)
    except ValueError:
        count = 50
    try:
        path, lines = tester.tail_lines(expand_logpaths(jail.logpath), count)
    except tester.TesterRefused as exc:
        return {"error": f"Jail {jail.name}: {exc}"}
    data["log"] = "\n".join(lines)
    if not data.get("source") or (data.get("source") == "stored" and not data.get("filter")):
        data["source"], data["jail"] = "jail", jail.name
    return {"path": path, "count": len(lines)}


# Regex time one user may spend in the tester per minute. One run is bounded (tester.run), but the
# live tester posts on every pause in typing and gunicorn has few workers: without a budget per
# user, one viewer pasting a slow regex again and again could keep the panel busy for everyone.
BUDGET_SECONDS_PER_MINUTE = 20.0


def budget_key(user_id: int) -> str:
    return f"tester-spent:{user_id}:{int(time.time() // 60)}"


def over_budget(user_id: int) -> str | None:
    spent = cache.get(budget_key(user_id), 0.0)
    if spent < BUDGET_SECONDS_PER_MINUTE:
        return None
    wait = 60 - int(time.time() % 60)
    return (f"You have used this minute's tester time ({BUDGET_SECONDS_PER_MINUTE:.0f} s of regex work); "
            f"results resume in {wait} s.")


def charge(user_id: int, seconds: float) -> None:
    key = budget_key(user_id)
    cache.set(key, cache.get(key, 0.0) + seconds, timeout=120)


def results(form: TesterForm, user_id: int) -> dict[str, Any]:
    """The test's report, or why there is none (`error`): never an exception for the page."""
    if not form.is_valid():
        return {}
    data = form.cleaned_data
    if not data["log"].strip():
        return {"waiting": True}
    refused = over_budget(user_id)
    if refused:
        return {"error": refused}
    started = time.monotonic()
    # a run may take its whole time budget: it takes a slow lane, so pages keep a free worker
    with slowlane.lane() as held:
        if not held:
            return {"error": slowlane.BUSY}
        try:
            lines = tester.split_input(data["log"])
            definition, options, label = chosen_filter(data)
            report = tester.run(definition, lines, options, label=label)
        except tester.TesterRefused as exc:
            return {"error": str(exc)}
        except EngineError as exc:
            return {"error": f"The filter does not work: {exc}", "warnings": lint_anyway(data)}
        finally:
            charge(user_id, time.monotonic() - started)
    return {"report": report, "summary": tester.failure_summary(report), "warnings": report.warnings,
            **shown_lines(report, data.get("show") or "all", data.get("line_page") or 1)}


# The result list shows this many lines a page: 2,000 lines at once made 1.5 MB of HTML and 30,000
# DOM nodes, and the browser stalled on every keystroke.
PAGE_LINES = 200
SHOWN_STATUSES = {"matched": {"matched"}, "missed": {"missed", "timeout"}, "ignored": {"ignored"}}


def shown_lines(report: tester.TestReport, show: str, page: int) -> dict[str, Any]:
    """The lines to list (those of one result, or all) and the page of them asked for."""
    wanted = SHOWN_STATUSES.get(show)
    lines = [line for line in report.lines if wanted is None or line.status in wanted]
    pages = max(1, -(-len(lines) // PAGE_LINES))
    page = min(max(1, page), pages)
    return {"lines": lines[(page - 1) * PAGE_LINES:page * PAGE_LINES], "shown": show, "shown_count": len(lines),
            "line_page": page, "line_pages": pages,
            "line_page_numbers": [n for n in range(1, pages + 1) if n in (1, pages) or abs(n - page) <= 2]}


def chosen_filter(data: dict[str, Any]) -> tuple[FilterDefinition, tester.Settings, str]:
    source = data["source"]
    override = tester.Settings(datepattern=data.get("datepattern") or None)
    if source == "jail":
        jail = Jail.objects.select_related("filter").filter(name=data["jail"]).first()
        if jail is None:
            raise tester.TesterRefused(f"no jail named {data['jail']!r}")
        options = tester.Settings(
            datepattern=override.datepattern or jail.datepattern or None, logtimezone=jail.logtimezone or None,
            maxlines=jail.maxlines, use_dns="no" if jail.usedns == Jail.UseDns.NO else "yes")
        label = f"jail {jail.name}: {jail.filter.name}"
        return tester.stored_definition(jail.filter.name, jail.filter_options), options, label
    if source == "pasted":
        definition = tester.pasted_definition(data["filter_source"], data.get("filter_local") or "",
                                              options=data.get("options"))
        return definition, override, "pasted filter"
    if source == "regex":
        return tester.raw_definition(data["failregex"], data.get("ignoreregex") or ""), override, "raw regex"
    name = data["filter"]
    label = name + (f"[{', '.join(f'{k}={v}' for k, v in data['options'].items())}]" if data.get("options") else "")
    return tester.stored_definition(name, data.get("options")), override, label


def lint_anyway(data: dict[str, Any]) -> list[tester.RegexWarning]:
    """Raw regexes that do not compile still get their warnings (often the reason why)."""
    if data.get("source") != "regex":
        return []
    fails = [p for p in (data.get("failregex") or "").splitlines() if p.strip()]
    ignores = [p for p in (data.get("ignoreregex") or "").splitlines() if p.strip()]
    return tester.lint_patterns("", fails, ignores)
