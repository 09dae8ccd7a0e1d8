"""Validators for jail and filter settings, with messages that tell the admin what to write."""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError

from jails.engine.durations import parse_duration
from jails.engine.formula import compile_formula

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9-]{1,63}\.?$")
PORT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
# A fleet host's name becomes part of queue names, Redis keys and ACL rules, a PostgreSQL role and a
# systemd unit's environment: lower-case letters, digits and inner hyphens only (a DNS label, shorter).
HOST_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")


def validate_name(value: str) -> None:
    if not NAME_RE.match(value):
        raise ValidationError(
            f"{value!r} is not a valid name: use letters, digits, '-', '_', '.' or '@', "
            "starting with a letter or digit."
        )


def validate_host_name(value: str) -> None:
    if not HOST_NAME_RE.match(value):
        raise ValidationError(
            f"{value!r} is not a valid host name: use up to 40 lower-case letters, digits and inner '-' "
            "(for example web1 or mail-2)."
        )


def validate_host_group(value: str) -> None:
    if not HOST_NAME_RE.match(value):
        raise ValidationError(
            f"{value!r} is not a valid group name: use up to 40 lower-case letters, digits and inner '-'."
        )


def validate_duration_text(value: str) -> int:
    """Parse a fail2ban duration (600, 10m, 1h, 7d, 1w, 1mo, 1y, -1/permanent) into seconds."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def validate_bantime(value: int) -> None:
    if value == 0 or value < -1:
        raise ValidationError("A ban time is a positive duration, or -1 for a permanent ban.")


def validate_positive_duration(value: int) -> None:
    if value <= 0:
        raise ValidationError("Give a positive duration such as 600, 10m, 1h or 1d.")


# Names that are page addresses (/jails/new/, /jails/ignore/, /filters/import/...), not jails or filters.
RESERVED_NAMES = frozenset({"new", "import", "test", "ignore"})

# An ignore list holds at most this many entries (the global list, or a jail's own), and no network
# wider than these prefixes: 0.0.0.0/0 in an ignore list would switch off every ban without a word.
MAX_IGNORE_ENTRIES = 2000
WIDEST_IGNORED_PREFIX = {4: 8, 6: 16}


def validate_ignore_entry(value: str) -> None:
    """An ignoreip entry: an address, a network in CIDR form (at most a /8, a /16 in IPv6), or a host name."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        network = None
    if network is not None:
        widest = WIDEST_IGNORED_PREFIX[network.version]
        if network.prefixlen < widest:
            raise ValidationError(f"{value!r} is wider than a /{widest}: an ignore list that wide would stop "
                                  "nearly every ban. List the networks you mean.")
        return
    if HOSTNAME_RE.match(value) and not value.replace(".", "").isdigit():
        return
    raise ValidationError(f"{value!r} is neither an address (192.0.2.1), a network (192.0.2.0/24) nor a host name.")


def validate_ignoreip(values: list[str]) -> None:
    if len(values) > MAX_IGNORE_ENTRIES:
        raise ValidationError(f"{len(values):,} entries: an ignore list holds at most {MAX_IGNORE_ENTRIES:,}. "
                              "List networks rather than their addresses.")
    for value in values:
        validate_ignore_entry(value)


def validate_port_spec(value: str) -> None:
    """Ports as fail2ban writes them: names and numbers, ranges with ':' or '-', comma separated."""
    if value.strip().lower() in ("", "all", "0:65535", "1:65535"):
        return
    for item in value.split(","):
        _validate_port_item(item.strip())


def _validate_port_item(item: str) -> None:
    bounds = re.split(r"[:-]", item) if re.fullmatch(r"\d+[:-]\d+", item) else [item]
    for bound in bounds:
        if bound.isdigit():
            if not 1 <= int(bound) <= 65535:
                raise ValidationError(f"Port {bound} is out of range: ports go from 1 to 65535.")
        elif not PORT_NAME_RE.match(bound):
            raise ValidationError(
                f"{item!r} is not a port: write a number (22), a name (ssh) or a range (8000:8100)."
            )
    if len(bounds) == 2 and int(bounds[0]) > int(bounds[1]):
        raise ValidationError(f"The port range {item!r} runs backwards.")


def validate_logpath(values: list[str]) -> None:
    for value in values:
        if not value.startswith("/"):
            raise ValidationError(f"{value!r}: log paths must be absolute (start with /); globs such as *.log work.")
        if "\x00" in value or "\n" in value:
            raise ValidationError("A log path cannot contain NUL or newline characters.")


def validate_multipliers(value: str) -> None:
    for item in value.split():
        if not item.isdigit() or int(item) < 1:
            raise ValidationError(
                f"{item!r}: multipliers are positive whole numbers separated by spaces, e.g. '1 2 4 8'."
            )


def validate_formula(value: str) -> None:
    """The formula is admin-written text: the ban policy parses it and allows arithmetic only."""
    if not value.strip():
        return
    try:
        compile_formula(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
