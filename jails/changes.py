"""Changes to jails, filters and ignore lists, each with its audit entry in the same transaction.

The pages, management commands and the importer call these functions; none of them writes a jail,
a filter or an audit entry by itself. A changed row gets a new `updated_at`, which is how the
followers notice it (they reload a jail whose stamp moved; read_source recompiles a changed filter).
Validation stays with the forms (and the engine behind them): a function here receives a row that
already passed it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction

from jails import services
from jails.access import audit
from jails.models import Filter, Jail

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# What an audit entry keeps of a filter: the texts an admin wrote (derived columns follow from them).
FILTER_AUDIT_FIELDS = ["name", "description", "source", "source_local", "origin", "origin_path"]
# The audit action of a save whose regexes can backtrack catastrophically, made with the override.
ACCEPTED_BACKTRACKING = "filter.accept_backtracking"


# What an audit entry keeps of a jail: every field but the save stamps (they move on every save,
# and the entry has its own time).
JAIL_AUDIT_FIELDS = [field.attname for field in Jail._meta.concrete_fields
                     if not getattr(field, "auto_now", False) and not getattr(field, "auto_now_add", False)]


def jail_snapshot(jail: Jail) -> dict[str, Any]:
    return audit.snapshot(jail, JAIL_AUDIT_FIELDS)


# --- jails ----------------------------------------------------------------------------------------


def create_jail(jail: Jail, actor: audit.Actor) -> Jail:
    with transaction.atomic():
        jail.save()
        audit.record(actor, "jail.create", jail, after=jail_snapshot(jail))
    return jail


def save_jail(jail: Jail, actor: audit.Actor) -> dict[str, Any]:
    """Save an existing jail holding its new values; the fields that changed (audited), {} if none."""
    with transaction.atomic():
        # "before" from the locked row (the instance already holds the new values): two admins
        # saving at once each get a true before/after
        before = jail_snapshot(Jail.objects.select_for_update().get(pk=jail.pk))
        after = jail_snapshot(jail)
        if before == after:
            return {}  # nothing to save: no new stamp (the followers would reload it) and no entry
        jail.save()
        changed = {key: after[key] for key in audit.changed_fields(before, after)}
        if changed:
            audit.record(actor, "jail.edit", jail, before={k: before[k] for k in changed}, after=changed)
    return changed


def set_jail_enabled(name: str, enabled: bool, actor: audit.Actor) -> tuple[Jail, bool]:
    """Enable or disable jail `name` (Jail.DoesNotExist if there is none); (the jail, whether it changed)."""
    with transaction.atomic():
        jail = Jail.objects.select_for_update().get(name=name)
        if jail.enabled == enabled:
            return jail, False
        jail.enabled = enabled
        jail.save(update_fields=["enabled", "updated_at"])
        audit.record(actor, "jail.enable" if enabled else "jail.disable", jail,
                     before={"enabled": not enabled}, after={"enabled": enabled})
    return jail, True


def network_of(entry: str) -> Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def same_entry_key(entry: str) -> object:
    """What makes two ignore entries the same: the network (192.0.2.1 = 192.0.2.1/32), or the host name."""
    return network_of(entry) or entry.lower().rstrip(".")


def add_ignored(name: str, entries: Sequence[str], actor: audit.Actor) -> tuple[Jail, list[str]]:
    """Append the entries not listed yet to jail `name`'s ignore list; (the jail, the entries added)."""
    with transaction.atomic():
        jail = Jail.objects.select_for_update().get(name=name)
        before = list(jail.ignoreip)
        listed = {same_entry_key(text) for text in before}
        new = [text for text in entries if same_entry_key(text) not in listed]
        if new:
            _save_ignore_list(jail, before, before + new, actor)
    return jail, new


def remove_ignored(name: str, text: str, actor: audit.Actor) -> tuple[Jail, bool]:
    """Take `text` out of jail `name`'s ignore list (every copy: an import may have listed it twice)."""
    with transaction.atomic():
        jail = Jail.objects.select_for_update().get(name=name)
        before = list(jail.ignoreip)
        after = [entry for entry in before if entry != text]
        if after != before:
            _save_ignore_list(jail, before, after, actor)
    return jail, after != before


def _save_ignore_list(jail: Jail, before: list[str], after: list[str], actor: audit.Actor) -> None:
    """The caller holds the jail's row lock, inside its transaction."""
    jail.ignoreip = after
    jail.save(update_fields=["ignoreip", "updated_at"])
    audit.record(actor, "jail.ignoreip", jail, before=before, after=after)


# --- filters --------------------------------------------------------------------------------------


def create_filter(flt: Filter, derived: Mapping[str, object], dangerous: Sequence[services.DangerousRegex],
                  actor: audit.Actor, origin: str = Filter.Origin.CUSTOM) -> Filter:
    """Save a new filter (custom unless told) with the fields the engine derived from its text."""
    with transaction.atomic():
        _apply(flt, derived)
        flt.origin = origin
        flt.save()
        audit.record(actor, "filter.create", flt, after=audit.snapshot(flt, FILTER_AUDIT_FIELDS))
        record_override(flt, dangerous, actor)
    return flt


def save_filter(flt: Filter, derived: Mapping[str, object], dangerous: Sequence[services.DangerousRegex],
                actor: audit.Actor) -> dict[str, Any]:
    """Save an existing filter holding its new texts; the fields that changed (audited), {} if none."""
    with transaction.atomic():
        before = audit.snapshot(Filter.objects.select_for_update().get(pk=flt.pk), FILTER_AUDIT_FIELDS)
        _apply(flt, derived)
        flt.save()
        after = audit.snapshot(flt, FILTER_AUDIT_FIELDS)
        changed = {key: after[key] for key in audit.changed_fields(before, after)}
        if changed:
            audit.record(actor, "filter.edit", flt, before={k: before[k] for k in changed}, after=changed)
        record_override(flt, dangerous, actor)
    return changed


def import_filter(name: str, conf: str, local: str, origin_path: str, derived: Mapping[str, object],
                  dangerous: Sequence[services.DangerousRegex], actor: audit.Actor) -> tuple[Filter, bool]:
    """Create or replace filter `name` from a filter.d file; (the filter, whether it replaced one)."""
    with transaction.atomic():
        flt = Filter.objects.select_for_update().filter(name=name).first()
        before = audit.snapshot(flt, FILTER_AUDIT_FIELDS) if flt is not None else None
        flt = flt or Filter(name=name)
        flt.source, flt.source_local = conf, local
        flt.origin = Filter.Origin.IMPORTED
        flt.origin_path = origin_path[:500]
        _apply(flt, derived)
        flt.save()
        audit.record(actor, "filter.import", flt, before=before, after=audit.snapshot(flt, FILTER_AUDIT_FIELDS))
        record_override(flt, dangerous, actor)
    return flt, before is not None


def _apply(flt: Filter, derived: Mapping[str, object]) -> None:
    for key, value in derived.items():
        setattr(flt, key, value)


def record_override(flt: Filter, dangerous: Sequence[services.DangerousRegex], actor: audit.Actor) -> None:
    """The admin ticked the override to save regexes that can backtrack catastrophically: say which."""
    if dangerous:
        audit.record(actor, ACCEPTED_BACKTRACKING, flt,
                     after={"override": services.OVERRIDE_LABEL, "regexes": [d.as_record() for d in dangerous]})
