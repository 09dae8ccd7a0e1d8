"""Template filters of the jails pages."""

from __future__ import annotations

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def path_breaks(path: object) -> SafeString:
    """A file path that may wrap after each "/" (and nowhere else): /var/log/ | auth.log, not
    /var/log/au | th.log, in narrow table cells. The text is escaped before the <wbr> go in."""
    escaped = str(conditional_escape("" if path is None else str(path)))
    return mark_safe(escaped.replace("/", "/<wbr>"))  # noqa: S308 - escaped just above


@register.filter
def date_template_label(template_name: object, date_hits: object) -> str:
    """A line's date template as a short label ("date template 1", numbered as in the tester's
    date-template table), since the full pattern repeated on every row makes rows tall; the
    page puts the full pattern in a title. Unknown to the table: the pattern, shortened."""
    name = str(template_name or "")
    hits: list[tuple[str, int]] = list(date_hits or []) if isinstance(date_hits, list | tuple) else []
    for number, (hit_name, _count) in enumerate(hits, 1):
        if hit_name == name:
            return f"date template {number}"
    return name if len(name) <= 30 else name[:29] + "…"
