"""Template filters of the bans pages: durations as people write them, ISO times from JSON as dates."""

from __future__ import annotations

import datetime as dt

from django import template

from jails.engine.durations import format_duration

register = template.Library()


@register.filter
def duration(seconds: object) -> str:
    """3600 -> "1h", -1 -> "permanent" (fail2ban's syntax, as the forms read it)."""
    try:
        return format_duration(int(seconds))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return ""


@register.filter
def isotime(text: object) -> dt.datetime | None:
    """An ISO 8601 time kept in a JSONField, as a datetime the |date filter can format."""
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None


@register.filter
def address_only(network: object) -> str:
    """203.0.113.9/32 -> 203.0.113.9; networks keep their prefix."""
    text = str(network)
    return text.removesuffix("/32") if "." in text else text.removesuffix("/128")
