"""Changes to jails, filters and ignore lists, each with its audit entry in the same transaction.

The pages, management commands and the importer call these functions; none of them writes a jail,
a filter or an audit entry by itself. A changed row gets a new `updated_at`, which is how the
followers notice it (they reload a jail whose stamp moved; read_source recompiles a changed filter).
Validation stays with the forms (and the engine behind them): a function here receives a row that
already passed it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from jails import services, validators
from jails.access import audit
from jails.ignores import network_of as network_of  # re-exported: the ignore pages read entries with it
from jails.ignores import same_entry_key, without_repeats
from jails.models import Filter, GlobalIgnore, Jail

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


def check_list_length(after: Sequence[str]) -> None:
    """ValidationError when an ignore list would hold more than validators.MAX_IGNORE_ENTRIES."""
    if len(after) > validators.MAX_IGNORE_ENTRIES:
        raise ValidationError(f"The list would hold {len(after):,} entries; it holds at most "
                              f"{validators.MAX_IGNORE_ENTRIES:,}. List networks rather than their addresses.")


def _save_ignore_list(jail: Jail, before: list[str], after: list[str], actor: audit.Actor) -> None:
    """The caller holds the jail's row lock, inside its transaction."""
    check_list_length(after)
    jail.ignoreip = after
    jail.save(update_fields=["ignoreip", "updated_at"])
    audit.record(actor, "jail.ignoreip", jail, before=before, after=after)


# --- the global ignore list -----------------------------------------------------------------------
# Every jail honours it besides its own ignoreip (jails.ignores). Its entries are checked as a jail's
# are (jails.validators.validate_ignore_entry); each change is audited as "global.ignoreip" with the
# whole list before and after, as "jail.ignoreip" is.

GLOBAL_IGNOREIP = "global.ignoreip"


def _locked_global_list() -> GlobalIgnore:
    """The global list's row, locked until the transaction ends (made, empty, the first time)."""
    row, _ = GlobalIgnore.objects.select_for_update().get_or_create(pk=GlobalIgnore.ONLY)
    return row


def add_global_ignored(entries: Sequence[str], actor: audit.Actor) -> list[str]:
    """Append the entries the global list does not hold yet (by network or host name); the ones added."""
    with transaction.atomic():
        row = _locked_global_list()
        before = list(row.entries)
        listed = {same_entry_key(text) for text in before}
        new = [text for text in without_repeats(entries) if same_entry_key(text) not in listed]
        if new:
            _save_global_list(row, before + new, actor)
    return new


def remove_global_ignored(text: str, actor: audit.Actor) -> bool:
    """Take `text` out of the global list (every copy); whether it was there."""
    with transaction.atomic():
        row = _locked_global_list()
        before = list(row.entries)
        after = [entry for entry in before if entry != text]
        if after != before:
            _save_global_list(row, after, actor)
    return after != before


def save_global_ignored(entries: Sequence[str], actor: audit.Actor, *, loaded: Sequence[str] | None = None) -> bool:
    """Django admin's form: the list as edited; whether it changed. With `loaded` (the list the form
    showed), only the form's own edits are applied to the list as it is now, so an entry someone
    added meanwhile on the panel's page is kept, not silently dropped."""
    with transaction.atomic():
        row = _locked_global_list()
        current = list(row.entries)
        wanted = list(entries)
        if loaded is not None:
            shown = {same_entry_key(text) for text in loaded}
            kept = {same_entry_key(text) for text in wanted}
            removed = shown - kept
            held = {same_entry_key(text) for text in current}
            wanted = [text for text in current if same_entry_key(text) not in removed] + [
                text for text in wanted if same_entry_key(text) not in shown and same_entry_key(text) not in held]
        if current == wanted:
            return False
        _save_global_list(row, wanted, actor)
    return True


def import_global_ignore(entries: Sequence[str], actor: audit.Actor | None) -> list[str]:
    """An import's `[DEFAULT] ignoreip`: the entries the global list lacks are added; the ones added.

    The one door without a form in front of it, so the entries are checked here: ValidationError
    names the first that is neither an address, a network nor a host name (nothing is added then).
    Run inside the import's transaction, so a dry run or a refused import leaves the list as it was;
    without an actor the entry is the system's."""
    for text in entries:
        validators.validate_ignore_entry(text)
    return add_global_ignored(entries, actor or audit.Actor.system())


def _save_global_list(row: GlobalIgnore, after: list[str], actor: audit.Actor) -> None:
    """The caller holds the row's lock (`_locked_global_list`), inside its transaction."""
    check_list_length(after)
    before = list(row.entries)
    row.entries = after
    row.save(update_fields=["entries", "updated_at"])
    audit.record(actor, GLOBAL_IGNOREIP, row, before=before, after=after)


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
