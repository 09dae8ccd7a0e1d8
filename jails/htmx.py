"""The panel's htmx conventions, in one place: a typed request, and a page or its partial.

A page that htmx refreshes in part (a list filtered as you type, a progress poll) answers an htmx
request with one named partial of its template ({% partialdef %}), and anything else with the whole
page: a plain browser, a boosted link (htmx wants a page), and htmx's history restore (after a
cache miss it asks for the whole page of a URL it pushed). The answer varies with HX-Request, so a
cache never serves a fragment for a page or a page for a fragment.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A request that went through django_htmx's middleware (every request of the panel does)."""

    htmx: HtmxDetails


def wants_partial(request: HtmxHttpRequest) -> bool:
    """htmx asks for a piece of the page: not a boosted link, not a history restore."""
    htmx = request.htmx
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def render_page_or_partial(request: HtmxHttpRequest, template: str, partial: str, context: dict[str, Any],
                           *, status: int = 200) -> HttpResponse:
    """`template` whole, or its `partial` when htmx asks for a piece (wants_partial)."""
    name = f"{template}#{partial}" if wants_partial(request) else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response
