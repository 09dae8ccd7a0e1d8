"""The panel protects its own login: throttled failures, and a log line per failure for its own jail.

Every login door (the panel's login page and Django admin's) goes through `authenticate()`, so
both are covered here: `ThrottledModelBackend` refuses a locked client before the password is
even checked, and the `user_login_failed` receiver counts the failure and writes the line that
the built-in "panel" filter (jails/builtin/filter.d/panel.conf) reads.

Throttling never locks everyone out: the counters are per client address + user name (a
stranger cannot lock the admin out from elsewhere) and per address across user names (password
spraying), the latter never for loopback (an SSH tunnel or a local proxy makes every client
loopback). The counters live in Django's cache (settings.CACHES: the database cache, shared by
all gunicorn workers); if the cache fails, logins still work and the error is logged: the jail
reading the panel log still bans the guesser.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import time
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest

from jails.access.client import client_address

log = logging.getLogger(__name__)

# 5 failures of one user name from one address in 15 minutes, or 20 from one address over any
# user names, and further attempts are refused until the oldest failure is 15 minutes old.
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
WINDOW_SECONDS = 15 * 60
# The longest user name written to the panel log (the form refuses longer ones anyway).
LOGGED_USERNAME_MAX = 200


# --- throttle ------------------------------------------------------------------------------------


def _keys(address: str, username: str) -> list[tuple[str, int]]:
    """The counters one attempt touches, with their limits. User names are hashed (any length)."""
    digest = sha256(username.casefold().encode("utf-8", "surrogatepass")).hexdigest()[:32]
    client = _client_key(address)
    keys = [(f"ips:login:pair:{client}:{digest}", MAX_FAILURES_PER_USER)]
    if not _is_loopback(address):
        keys.append((f"ips:login:addr:{client}", MAX_FAILURES_PER_ADDRESS))
    return keys


def _client_key(address: str) -> str:
    """What one client is counted as: its IPv4 address, or its IPv6 /64 (one host usually owns a
    whole /64, and would otherwise get a fresh counter for each of its 2**64 addresses)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and not ip.is_loopback:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _recent(key: str, now: float) -> list[float]:
    stamps = cache.get(key) or []
    return [stamp for stamp in stamps if now - stamp < WINDOW_SECONDS]


def seconds_locked(address: str, username: str, now: float | None = None) -> int:
    """How long this client must still wait before trying this user name again (0: it may try)."""
    now = time.time() if now is None else now
    wait = 0.0
    try:
        for key, limit in _keys(address, username):
            stamps = _recent(key, now)
            if len(stamps) >= limit:
                # the window slides: the attempt is allowed again once enough failures have aged out
                wait = max(wait, stamps[-limit] + WINDOW_SECONDS - now)
    except Exception:  # the cache is a convenience: never let it stop a login
        log.exception("login throttle: cannot read the cache; not throttling")
        return 0
    return math.ceil(wait)


def count_failure(address: str, username: str, now: float | None = None) -> None:
    now = time.time() if now is None else now
    try:
        for key, limit in _keys(address, username):
            stamps = [*_recent(key, now)[-(limit * 2):], now]  # bounded: only the last ones matter
            cache.set(key, stamps, WINDOW_SECONDS)
    except Exception:
        log.exception("login throttle: cannot write the cache; failure not counted")


def clear_failures(address: str, username: str) -> None:
    """A successful login forgets the failures of that user name from that address (not the
    per-address count: a spraying client that guessed one password stays slowed)."""
    try:
        cache.delete(_keys(address, username)[0][0])
    except Exception:
        log.exception("login throttle: cannot clear the cache")


def lock_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return (f"Too many failed logins from your address. Further attempts are refused for "
            f"{minutes} minute{'s' if minutes != 1 else ''}; ask an admin if you have lost your password.")


# --- the panel log (read by the built-in "panel" jail) -------------------------------------------


def escape_username(username: str) -> str:
    """The user name as panel.conf wants it between the double quotes: a backslash before `"` and
    `\\`, control characters as \\n, \\r, \\t or \\xHH, and Unicode line separators and bidi
    controls as \\uHHHH, so that it cannot end the value, the line, or paint a terminal."""
    out = []
    for char in username[:LOGGED_USERNAME_MAX]:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[char])
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif (code in (0x2028, 0x2029) or 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069 or code == 0xFEFF
              or 0xD800 <= code <= 0xDFFF):  # a lone surrogate cannot be written as UTF-8
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def failure_line(address: str, username: str, at: datetime | None = None) -> str:
    """One line in panel.conf's format, ending with a newline."""
    stamp = (at or datetime.now(UTC)).isoformat(timespec="microseconds")
    return f'{stamp} panel[{os.getpid()}]: login failed from {address} user="{escape_username(username)}"\n'


def write_failure(address: str, username: str) -> None:
    """Append the line to IPS_PANEL_LOG (one write: lines from several workers never interleave)."""
    path = settings.IPS_PANEL_LOG
    data = failure_line(address, username).encode("utf-8")
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        log.error("cannot write the failed login to %s: %s", path, exc)


# --- wiring into Django's authentication --------------------------------------------------------


def _attempt(request: HttpRequest | None, credentials: dict[str, Any]) -> tuple[str, str] | None:
    """(address, user name) of a login attempt made through a request, else None."""
    if request is None:
        return None
    address = client_address(request)
    if not address:
        return None
    return address, str(credentials.get("username") or "")


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend, refusing clients that failed too often (before checking the password,
    so a locked client learns nothing; the refusal itself counts as a failure and is logged)."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> Any:
        attempt = _attempt(request, {"username": username})
        if attempt is not None and seconds_locked(*attempt):
            raise PermissionDenied("login throttled")  # authenticate() sends user_login_failed
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None and attempt is not None:
            clear_failures(*attempt)
        return user


@receiver(user_login_failed, dispatch_uid="ips-panel-login-failed")
def on_login_failed(sender: object, credentials: dict[str, Any], request: HttpRequest | None = None,
                    **kwargs: Any) -> None:
    attempt = _attempt(request, credentials)
    if attempt is None:
        return  # not through the web (e.g. a management command): no client to count or ban
    count_failure(*attempt)
    write_failure(*attempt)


class ThrottleMessageMixin:
    """Login forms: say plainly that the client is throttled, instead of 'wrong password'."""

    request: HttpRequest | None
    cleaned_data: dict[str, Any]

    def get_invalid_login_error(self) -> forms.ValidationError:
        attempt = _attempt(self.request, {"username": self.cleaned_data.get("username")})
        wait = seconds_locked(*attempt) if attempt is not None else 0
        if wait:
            return forms.ValidationError(lock_message(wait), code="throttled")
        error: forms.ValidationError = super().get_invalid_login_error()  # type: ignore[misc]
        return error


class PanelAuthenticationForm(ThrottleMessageMixin, AuthenticationForm):
    pass


class PanelAdminAuthenticationForm(ThrottleMessageMixin, AdminAuthenticationForm):
    pass
