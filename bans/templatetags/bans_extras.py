"""Template filters of the bans pages: durations as people write them, ISO times from JSON as dates."""

from __future__ import annotations

import datetime as dt
import ipaddress

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from jails.access.audit import escape_controls
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
    """An ISO 8601 time kept in a JSONField, as a datetime the |date filter can format (in the
    panel's time zone, like every other time: a time written without an offset is UTC)."""
    try:
        moment = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


@register.filter
def address_only(network: object) -> str:
    """203.0.113.9/32 -> 203.0.113.9, 2001:db8::1/128 -> 2001:db8::1; networks keep their prefix
    (2001:db8::/32 too). Also `jailctl status` (text and --json) and the firewall worker's log."""
    text = str(network)
    try:
        parsed = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text
    return str(parsed.network_address) if parsed.prefixlen == parsed.max_prefixlen else str(parsed)


@register.filter
def controls(text: object) -> str:
    """Attacker-written text (log lines, user names from logs) with control characters and bidi
    overrides shown as \\xHH / \\uHHHH: HTML escaping alone lets U+202E reverse what an operator
    reads (an address, a user name). Autoescaping still applies to the result."""
    return escape_controls("" if text is None else str(text))


@register.filter
def origin_text(ban: object) -> str:
    """Who made a ban, in the ban list's words: "manual (alice)", "automatic (jail sshd)"."""
    origin = getattr(ban, "origin", "")
    if origin == "user":
        user = getattr(ban, "created_by", None)
        return f"manual ({user.get_username()})" if user is not None else "manual"
    if origin == "jail":
        return f"automatic (jail {getattr(ban, 'jail_name', '')})"
    if origin == "schedule":
        return "automatic (recidive schedule)"
    return str(origin)


@register.filter
def network_breaks(network: object) -> SafeString:
    """An address or network that may wrap before its prefix and after an IPv6 ":" (and nowhere
    else), for narrow cards: 2001:db8:85a3:<wbr>1234::/64. Escaped before the <wbr> go in."""
    escaped = str(conditional_escape("" if network is None else str(network)))
    return mark_safe(escaped.replace(":", ":<wbr>").replace("/", "<wbr>/"))  # noqa: S308 - escaped above
