"""Import an existing fail2ban configuration tree (what `importconf` and the import page run).

Reads filter.d (.conf + .local) and the jail stack (jail.conf, jail.d/*.conf, jail.local,
jail.d/*.local with their paths-*.conf includes) through the engine's INI reader, turns every
jail option into a validated Jail field, and writes Filters and Jails in one transaction:
either everything arrives or nothing does. A second run with the same tree changes nothing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction

from jails import changes, ignores, services, validators
from jails.access import audit
from jails.engine import ini
from jails.engine.durations import format_duration, parse_duration
from jails.engine.errors import ConfigError, EngineError
from jails.models import Filter, Jail

TRUE_WORDS = {"true", "yes", "1", "on", "enabled"}
FALSE_WORDS = {"false", "no", "0", "off", "disabled", ""}
BACKENDS = {"auto": "auto", "pyinotify": "inotify", "inotify": "inotify", "gamin": "auto", "polling": "polling",
            "systemd": "systemd"}
# Jail options we turn into Jail fields; every other key of a jail section is kept in extra_options
# when the section itself set it (keys inherited from [DEFAULT] helpers such as `mta` are not).
KNOWN_OPTIONS = {
    "enabled", "filter", "logpath", "backend", "journalmatch", "logencoding", "logtimezone", "datepattern",
    "maxlines", "maxretry", "findtime", "bantime", "bantime.increment", "bantime.factor", "bantime.formula",
    "bantime.multipliers", "bantime.maxtime", "bantime.rndtime", "bantime.overalljails", "ignoreip",
    "ignoreself", "ignorecommand", "usedns", "maxmatches", "port", "protocol", "banaction", "blocktype",
}
NFTABLES_ACTIONS = {"nftables", "nftables-multiport", "nftables-allports"}
# What a change shows of each field (preview, audit entry, importconf): one side of one field holds at
# most this much, so a huge filter source cannot make the page or the audit entry huge.
MAX_FIELD_LINES = 40
MAX_FIELD_BYTES = 4096
LONG_TEXT_LINES = 3  # a value of more lines (a filter's source) is shown as its differing lines
DIFFED_LINES_MAX = 2000  # past this many differing lines, one block: SequenceMatcher is quadratic
MAX_AUDIT_VALUE_CHARS = 200_000  # all values of one import's audit entry; past it only the field names
DURATION_FIELDS = {"findtime", "bantime", "bantime_maxtime", "bantime_rndtime"}
CREATED_JAIL_FIELDS = ("enabled", "filter", "logpath", "port", "maxretry", "findtime", "bantime")


class ImportRefused(EngineError):
    """The tree cannot be imported as it is; nothing was written."""


Difference = tuple[str, str]  # a field's (old, new) as display text; "" for none


@dataclass
class Change:
    kind: str  # "filter" or "jail"
    name: str
    action: str  # "created", "updated", "unchanged" or "skipped"
    detail: str = ""
    # updated: {field: (old, new)} of every field that differs; created jail: its main values ("" old).
    # Display text with control characters escaped, each side bounded (see `difference`).
    fields: dict[str, Difference] = field(default_factory=dict)


@dataclass
class ImportReport:
    root: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False
    # regexes of the filters created or updated that can backtrack catastrophically: imported all
    # the same (a migration must not stop on them), listed in the notes and in the audit entry
    dangerous: list[services.DangerousRegex] = field(default_factory=list)

    def count(self, kind: str, action: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind and c.action == action)

    def of(self, action: str) -> list[Change]:
        return [c for c in self.changes if c.action == action]


Progress = Callable[[str], None]


def import_tree(
    root: str | Path,
    *,
    include_disabled: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    actor: audit.Actor | None = None,
    described: tuple[str, Mapping[str, object]] | None = None,
) -> ImportReport:
    """Import filters and jails from a fail2ban configuration directory (e.g. /etc/fail2ban).

    With an `actor`, an import that changed anything is audited as "config.import" in the same
    transaction; `described` is what the entry calls the import and says of its source (default:
    the directory)."""
    root_path = Path(root)
    if not (root_path / "jail.conf").is_file() and not (root_path / "jail.local").is_file():
        raise ImportRefused(f"{root_path}: no jail.conf or jail.local here; give the fail2ban directory, "
                            "e.g. /etc/fail2ban")
    report = ImportReport(root=str(root_path), dry_run=dry_run)
    say = progress or (lambda message: None)
    with transaction.atomic():
        import_filters(root_path, report, say)
        inherited = import_default_ignoreip(root_path, report, actor)
        import_jails(root_path, report, say, include_disabled, inherited)
        if dry_run:
            transaction.set_rollback(True)
        elif actor is not None:
            record_import(report, actor, include_disabled, described or (report.root, {"root": report.root}))
    return report


def record_import(report: ImportReport, actor: audit.Actor, include_disabled: bool,
                  described: tuple[str, Mapping[str, object]]) -> None:
    """The audit entry of an import: what it created and updated with the values before and after
    ({"jail sshd": {"bantime": "1h"}} -> {"jail sshd": {"bantime": "2h"}}), and the risky regexes it
    let in."""
    changed = [c for c in report.changes if c.action in ("created", "updated")]
    if not changed:
        return  # nothing to audit: the configuration was already there
    name, source = described
    before, values = audited_values(changed)
    after: dict[str, object] = {**values, **source, "include_disabled": include_disabled,
                                "changes": [f"{c.action} {c.kind} {c.name}" for c in changed]}
    if report.dangerous:
        after["dangerous_regexes"] = [d.as_record() for d in report.dangerous]
    audit.record(actor, "config.import", object_type="import", object_repr=name, before=before or None,
                 after=after)


def audited_values(changes: list[Change]) -> tuple[dict[str, object], dict[str, object]]:
    """(before, after) by "kind name" of the changes that carry values. Keys hold a space, so they
    never meet the entry's own keys (files, changes...). Past MAX_AUDIT_VALUE_CHARS a change keeps
    only the names of its fields, under "values_not_kept": the audit page shows an entry whole, and
    an import of a hundred rewritten filters must not make it megabytes."""
    before: dict[str, object] = {}
    after: dict[str, object] = {}
    not_kept: list[str] = []
    room = MAX_AUDIT_VALUE_CHARS
    for change in changes:
        if not change.fields:
            continue  # a created filter: "changes" names it, its file is the value
        key = f"{change.kind} {change.name}"
        size = sum(len(old) + len(new) for old, new in change.fields.values())
        if size > room:
            not_kept.append(f"{key}: {', '.join(change.fields)}")
            continue
        room -= size
        if change.action == "updated":
            before[key] = {name: old for name, (old, _) in change.fields.items()}
        after[key] = {name: new for name, (_, new) in change.fields.items()}
    if not_kept:
        after["values_not_kept"] = not_kept
    return before, after


# --- what changed, as text -------------------------------------------------------------------


def difference(key: str, old: Any, new: Any) -> Difference:
    """A field's old and new values as display text, each side bounded; long texts (a filter's
    source) keep only the lines that differ, so the one changed line of a hundred is what shows."""
    before, after = as_text(key, old), as_text(key, new)
    if max(before.count("\n"), after.count("\n")) >= LONG_TEXT_LINES:
        before, after = differing_lines(before, after)
    return bounded(before), bounded(after)


def as_text(key: str, value: Any) -> str:
    """A field value as an admin wrote it (durations as 1h, lists a line each, a filter by name),
    with control characters escaped: the text is attacker-written and lands in pages and terminals."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if key in DURATION_FIELDS and isinstance(value, int):
        return format_duration(value)
    if isinstance(value, models.Model):
        return audit.escape_controls(str(value))
    if isinstance(value, list | tuple):
        return "\n".join(as_text("", item) for item in value)
    if isinstance(value, dict):
        return "\n".join(f"{audit.escape_controls(str(k))} = {as_text('', v)}" for k, v in sorted(value.items()))
    return audit.escape_controls(str(value))


def differing_lines(before: str, after: str) -> Difference:
    """Only the blocks of lines that differ, each side under the line numbers it holds there."""
    old, new = before.split("\n"), after.split("\n")
    start = 0  # common lines at both ends first: linear, and usually all but the change
    while start < min(len(old), len(new)) and old[start] == new[start]:
        start += 1
    end = 0
    while end < min(len(old), len(new)) - start and old[-1 - end] == new[-1 - end]:
        end += 1
    old_mid, new_mid = old[start:len(old) - end], new[start:len(new) - end]
    blocks: Sequence[tuple[str, int, int, int, int]]
    if len(old_mid) + len(new_mid) > DIFFED_LINES_MAX:
        blocks = [("replace", 0, len(old_mid), 0, len(new_mid))]
    else:
        blocks = difflib.SequenceMatcher(None, old_mid, new_mid, autojunk=False).get_opcodes()
    old_parts = [line_block(old, start + i1, start + i2) for tag, i1, i2, _, _ in blocks if tag != "equal"]
    new_parts = [line_block(new, start + j1, start + j2) for tag, _, _, j1, j2 in blocks if tag != "equal"]
    if not old_parts:  # the values differ as stored (a list item holding a newline...), not as text
        return "(the same text)", "(the same text)"
    return "\n".join(old_parts), "\n".join(new_parts)


def line_block(lines: list[str], start: int, end: int) -> str:
    if start == end:
        return f"@@ after line {start}: nothing @@" if start else "@@ before line 1: nothing @@"
    where = f"line {start + 1}" if end == start + 1 else f"lines {start + 1}-{end}"
    return f"@@ {where} @@\n" + "\n".join(lines[start:end])


def bounded(text: str) -> str:
    """At most MAX_FIELD_LINES lines and about MAX_FIELD_BYTES bytes of UTF-8, saying what was cut."""
    lines = text.split("\n")
    kept = "\n".join(lines[:MAX_FIELD_LINES])
    data = kept.encode("utf-8")
    if len(data) > MAX_FIELD_BYTES - 100:  # room for the note below
        kept = data[:MAX_FIELD_BYTES - 100].decode("utf-8", errors="ignore")
    if kept == text:
        return text
    more_lines = len(lines) - len(kept.split("\n"))
    more_chars = len(text) - len(kept)
    return kept + f"\n… cut here: {more_lines} more line(s), {more_chars} more character(s)"


# --- filters ---------------------------------------------------------------------------------


def read_filter_texts(root: Path) -> dict[str, tuple[str, str, str]]:
    """filter.d files by filter name: (conf text, local text, path shown to the admin)."""
    directory = root / "filter.d"
    found: dict[str, tuple[str, str, str]] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".conf", ".local") or not path.is_file():
            continue
        conf, local, shown = found.get(path.stem, ("", "", ""))
        text = read_text(path)
        if path.suffix == ".conf":
            conf, shown = text, str(path)
        else:
            local, shown = text, shown or str(path)
        found[path.stem] = (conf, local, shown)
    return found


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ImportRefused(f"not UTF-8 text ({exc.reason} at byte {exc.start})", str(path)) from None
    except OSError as exc:
        raise ImportRefused(f"cannot read: {exc.strerror}", str(path)) from None


def import_filters(root: Path, report: ImportReport, say: Progress) -> None:
    texts = read_filter_texts(root)
    existing = {f.name: f for f in Filter.objects.all()}
    files = services.filter_files(list(existing.values()))
    for name, (conf, local, _) in texts.items():
        files[f"filter.d/{name}.conf"] = conf
        files.pop(f"filter.d/{name}.local", None)
        if local:
            files[f"filter.d/{name}.local"] = local
    loader = ini.MemoryLoader(files)
    for index, (name, (conf, local, shown)) in enumerate(sorted(texts.items()), 1):
        say(f"filter {index}/{len(texts)}: {name}")
        fields = derive_filter(loader, name, conf, local, shown, root)
        save_filter(existing.get(name), name, conf, local, shown, fields, report)
        if report.changes[-1].action in ("created", "updated"):
            note_dangerous(name, fields, report)


def note_dangerous(name: str, fields: dict[str, Any], report: ImportReport) -> None:
    """Imported anyway, but said: these regexes can take exponential time on a crafted line."""
    for found in services.dangerous_regexes(name, fields):
        report.dangerous.append(found)
        report.notes.append(f"filter {found}: imported anyway; rewrite it (saving it from the panel asks for "
                            "the override)")


def derive_filter(loader: ini.MemoryLoader, name: str, conf: str, local: str, shown: str, root: Path
                  ) -> dict[str, Any]:
    try:
        if services.is_include_only(name, conf, local):
            return services.include_fields(shown, conf, local)
        definition = ini.load_filter(loader, name)
        services.check_definition(definition)
    except EngineError as exc:
        raise ImportRefused(f"filter {name}: {exc.message}", real_path(exc.path, root) or shown, exc.lineno) from None
    return services.derive_fields(definition, conf)


def real_path(loader_path: str | None, root: Path) -> str | None:
    """Engine errors name `filter.d/x.conf` inside the loader: show the file on disk instead."""
    return str(root / loader_path) if loader_path and not loader_path.startswith("/") else loader_path


def save_filter(
    row: Filter | None, name: str, conf: str, local: str, shown: str, fields: dict[str, Any], report: ImportReport
) -> None:
    values = {"source": conf, "source_local": local, "origin": Filter.Origin.IMPORTED, "origin_path": shown,
              **fields}
    if row is None:
        Filter.objects.create(name=name, **values)
        report.changes.append(Change("filter", name, "created", shown))
        return
    # where the file lay is not a change of the filter: an upload lands in a new temporary directory
    # each time, and the same file imported from another copy of the tree is the same filter
    changed = [key for key, value in values.items() if key != "origin_path" and getattr(row, key) != value]
    if not changed:
        report.changes.append(Change("filter", name, "unchanged"))
        return
    was_builtin = row.origin == Filter.Origin.BUILTIN
    differences = {key: difference(key, getattr(row, key), values[key]) for key in changed}
    for key in changed:
        setattr(row, key, values[key])
    row.origin_path = shown  # where this version came from
    row.save()
    detail = "replaced the built-in filter" if was_builtin else "changed: " + ", ".join(changed)
    report.changes.append(Change("filter", name, "updated", detail, differences))


# --- jails -----------------------------------------------------------------------------------


def import_default_ignoreip(root: Path, report: ImportReport, actor: audit.Actor | None) -> list[str]:
    """`[DEFAULT] ignoreip` goes to the global ignore list once (jails.changes.import_global_ignore:
    the entries it lacks are added, audited as "global.ignoreip"); returns its entries, which
    jail_fields then leaves out of each jail's own list."""
    try:
        default = ini.load_default(ini.DirectoryLoader(str(root)), "ignoreip")
    except ConfigError as exc:
        raise ImportRefused(exc.message, exc.path, exc.lineno) from None
    entries = split_words(default.text) if default is not None else []
    if default is None or not entries:
        return []
    before = ignores.global_entries()
    try:
        added = changes.import_global_ignore(entries, actor)
    except ValidationError as exc:
        shown = default.text if len(default.text) <= 200 else default.text[:200] + "…"
        raise ImportRefused(f"[DEFAULT] ignoreip = {shown!r}: {' '.join(exc.messages)}", default.path,
                            default.lineno) from None
    if added:
        listed = " ".join(added[:20]) + (f" and {len(added) - 20} more" if len(added) > 20 else "")
        report.changes.append(Change("ignore list", "global", "updated", f"added {listed}",
                                     {"entries": (bounded(" ".join(before)), bounded(" ".join(before + added)))}))
    return entries


def import_jails(root: Path, report: ImportReport, say: Progress, include_disabled: bool,
                 inherited: Sequence[str] = ()) -> None:
    try:
        sections = ini.load_jails(ini.DirectoryLoader(str(root)))
    except ConfigError as exc:
        raise ImportRefused(exc.message, exc.path, exc.lineno) from None
    filters = {f.name: f for f in Filter.objects.all()}
    disabled: list[str] = []
    dns_jails: list[str] = []
    for index, section in enumerate(sections, 1):
        say(f"jail {index}/{len(sections)}: {section.name}")
        if not include_disabled and not truthy(value_text(section, "enabled", "false"), section, "enabled"):
            disabled.append(section.name)
            continue
        if section.name.lower() in validators.RESERVED_NAMES:  # its page would be the panel's own page
            report.changes.append(Change("jail", section.name, "skipped",
                                         f"{section.name!r} names one of the panel's pages (/jails/{section.name}/); "
                                         "rename the jail to import it"))
            continue
        fields, notes = jail_fields(section, filters, inherited)
        if fields is None:
            report.changes.append(Change("jail", section.name, "skipped", "; ".join(notes)))
            continue
        report.notes.extend(f"jail {section.name}: {note}" for note in notes)
        if fields["usedns"] in ("yes", "warn"):
            dns_jails.append(section.name)
        save_jail(section, fields, report)
    if disabled:
        report.changes.append(Change("jails", f"{len(disabled)} disabled", "skipped",
                                     "disabled in the configuration (use --all to import them too): "
                                     + ", ".join(disabled)))
    if dns_jails:
        report.notes.append("usedns is yes/warn for " + ", ".join(dns_jails) + ": host names written in those logs "
                            "will be looked up in DNS (whoever controls a name's zone chooses what is banned, and "
                            "the watcher waits up to 0.5 s a read for answers); set usedns = no to act on "
                            "addresses only")


def value_text(section: ini.JailSection, key: str, default: str = "") -> str:
    value = section.values.get(key)
    return value.text.strip() if value is not None else default


def where(section: ini.JailSection, key: str) -> tuple[str | None, int | None]:
    value = section.values.get(key)
    return (value.path, value.lineno) if value is not None else (None, None)


def refuse(section: ini.JailSection, key: str, message: str) -> ImportRefused:
    path, lineno = where(section, key)
    return ImportRefused(f"jail {section.name}: {key} = {value_text(section, key)!r}: {message}", path, lineno)


def truthy(text: str, section: ini.JailSection, key: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise refuse(section, key, "expected true or false")


def jail_fields(section: ini.JailSection, filters: dict[str, Filter],
                inherited: Sequence[str] = ()) -> tuple[dict[str, Any] | None, list[str]]:
    """Map one effective jail section onto Jail fields; (None, reasons) when it cannot be imported."""
    notes: list[str] = []
    filter_spec = value_text(section, "filter", section.name)
    try:
        filter_name, filter_options = ini.parse_filter_spec(filter_spec)
    except ConfigError as exc:
        raise refuse(section, "filter", exc.message) from None
    if filter_name not in filters or filters[filter_name].kind != Filter.Kind.FILTER:
        return None, [f"filter {filter_name!r} is not in filter.d nor in the database"]
    fields: dict[str, Any] = {
        "enabled": truthy(value_text(section, "enabled", "false"), section, "enabled"),
        "filter": filters[filter_name],
        "filter_options": filter_options,
        "logpath": split_logpath(value_text(section, "logpath")),
        "backend": backend(section, notes),
        "journalmatch": value_text(section, "journalmatch"),
        "logencoding": value_text(section, "logencoding", "auto") or "auto",
        "logtimezone": value_text(section, "logtimezone"),
        "datepattern": value_text(section, "datepattern"),
        "maxlines": optional_int(section, "maxlines"),
        "maxretry": whole_number(section, "maxretry", "5"),
        "findtime": duration(section, "findtime", "10m"),
        "bantime": duration(section, "bantime", "10m"),
        "bantime_increment": truthy(value_text(section, "bantime.increment", "false"), section, "bantime.increment"),
        "bantime_factor": number(section, "bantime.factor", "1"),
        "bantime_formula": value_text(section, "bantime.formula"),
        "bantime_multipliers": value_text(section, "bantime.multipliers"),
        "bantime_maxtime": optional_duration(section, "bantime.maxtime"),
        "bantime_rndtime": optional_duration(section, "bantime.rndtime"),
        "bantime_overalljails": truthy(value_text(section, "bantime.overalljails", "false"), section,
                                       "bantime.overalljails"),
        "ignoreip": own_ignoreip(section, inherited, notes),
        "ignoreself": truthy(value_text(section, "ignoreself", "true"), section, "ignoreself"),
        "ignorecommand": value_text(section, "ignorecommand"),
        "usedns": usedns(section),
        "maxmatches": optional_int(section, "maxmatches"),
        "protocol": value_text(section, "protocol", "tcp") or "tcp",
        "blocktype": "reject" if value_text(section, "blocktype").startswith("reject") else "drop",
        "extra_options": extra_options(section),
    }
    fields["port"], fields["banaction"] = ports_and_banaction(section, notes)
    notes.extend(action_notes(section))
    return fields, notes


def own_ignoreip(section: ini.JailSection, inherited: Sequence[str], notes: list[str]) -> list[str]:
    """The jail's ignoreip without what the global list holds (`[DEFAULT] ignoreip`, imported there
    once): a jail that inherits it keeps none, one that extends it (`%(default/ignoreip)s 10.0.0.5`,
    or the entries written again) keeps its additions. A jail that replaced it (fail2ban then
    ignored only the jail's own) is noted: here the global list applies to every jail."""
    entries = split_words(value_text(section, "ignoreip"))
    listed = {ignores.same_entry_key(text) for text in inherited}
    own = [text for text in entries if ignores.same_entry_key(text) not in listed]
    present = {ignores.same_entry_key(text) for text in entries}
    missing = [text for text in inherited if ignores.same_entry_key(text) not in present]
    if missing:
        notes.append(f"its ignoreip replaces [DEFAULT]'s, which fail2ban then did not apply to it; the global "
                     f"ignore list applies to every jail here, so it now also ignores {' '.join(missing)}")
    return own


def split_logpath(text: str) -> list[str]:
    """logpath lines; fail2ban allows a trailing ' head' or ' tail' (where to start reading)."""
    paths = []
    for line in text.splitlines():
        line = line.strip()
        for suffix in (" head", " tail"):
            if line.endswith(suffix):
                line = line[: -len(suffix)].strip()
        if line:
            paths.append(line)
    return paths


def split_words(text: str) -> list[str]:
    return [word for word in re.split(r"[\s,]+", text) if word]


def backend(section: ini.JailSection, notes: list[str]) -> str:
    text = value_text(section, "backend", "auto") or "auto"
    name = text.split("[", 1)[0].strip().lower()
    if name not in BACKENDS:
        raise refuse(section, "backend", "expected auto, pyinotify, inotify, polling or systemd")
    if name in ("gamin", "pyinotify"):
        notes.append(f"backend {name} runs as {BACKENDS[name]}")
    return BACKENDS[name]


def usedns(section: ini.JailSection) -> str:
    text = value_text(section, "usedns", "no").lower() or "no"
    if text not in {choice.value for choice in Jail.UseDns}:
        raise refuse(section, "usedns", "expected yes, warn, no or raw")
    return text


def whole_number(section: ini.JailSection, key: str, default: str) -> int:
    text = value_text(section, key, default)
    try:
        return int(text)
    except ValueError:
        raise refuse(section, key, "expected a whole number") from None


def optional_int(section: ini.JailSection, key: str) -> int | None:
    return whole_number(section, key, "") if value_text(section, key) else None


def number(section: ini.JailSection, key: str, default: str) -> float:
    text = value_text(section, key, default)
    try:
        return float(text)
    except ValueError:
        raise refuse(section, key, "expected a number") from None


def duration(section: ini.JailSection, key: str, default: str) -> int:
    try:
        return parse_duration(value_text(section, key, default) or default)
    except ValueError as exc:
        raise refuse(section, key, str(exc)) from None


def optional_duration(section: ini.JailSection, key: str) -> int | None:
    return duration(section, key, "") if value_text(section, key) else None


def ports_and_banaction(section: ini.JailSection, notes: list[str]) -> tuple[str, str]:
    port = value_text(section, "port", "all") or "all"
    action = value_text(section, "banaction", "nftables") or "nftables"
    action_name = action.split("[", 1)[0].strip()
    if action_name.endswith("allports") or "type=allports" in action:
        port = "all"
    if action_name not in NFTABLES_ACTIONS:
        notes.append(f"banaction {action_name} is replaced by our nftables table (same ports and protocol)")
    return port, "nftables"


def action_notes(section: ini.JailSection) -> list[str]:
    """fail2ban actions beyond the ban itself (mail, abuse reports...) are not run: say so."""
    action = value_text(section, "action")
    names = {line.strip().split("[", 1)[0] for line in action.splitlines() if line.strip()}
    banaction = value_text(section, "banaction", "nftables").split("[", 1)[0].strip()
    others = sorted(name for name in names if name and name != banaction and name not in NFTABLES_ACTIONS)
    return [f"action {name} is not run (only the ban itself is)" for name in others]


def extra_options(section: ini.JailSection) -> dict[str, str]:
    """fail2ban options we keep for reference but do not act on (shown on the jail's page)."""
    return {key: value_text(section, key) for key in ("action", "mode", "chain") if value_text(section, key)}


def save_jail(section: ini.JailSection, fields: dict[str, Any], report: ImportReport) -> None:
    row = Jail.objects.filter(name=section.name).first()
    candidate = row or Jail(name=section.name, ban_scope=Jail.default_scope(section.name))
    changed = [key for key, value in fields.items() if getattr(candidate, key, None) != value or row is None]
    if row is not None and not changed:
        report.changes.append(Change("jail", section.name, "unchanged"))
        return
    if row is None:  # what the new jail does, in short: its full options are on its page
        differences = {key: difference(key, None, fields[key]) for key in CREATED_JAIL_FIELDS if key in fields}
    else:
        differences = {key: difference(key, getattr(row, key, None), fields[key]) for key in changed}
    for key in changed:
        setattr(candidate, key, fields[key])
    validate_jail(candidate, section)
    candidate.save()
    detail = "" if row is None else "changed: " + ", ".join(changed)
    report.changes.append(Change("jail", section.name, "created" if row is None else "updated", detail,
                                 differences))


FIELD_TO_OPTION = {"bantime_" + name: "bantime." + name for name in
                   ("increment", "factor", "formula", "multipliers", "maxtime", "rndtime", "overalljails")}


def validate_jail(jail: Jail, section: ini.JailSection) -> None:
    try:
        jail.full_clean(validate_unique=False)
    except ValidationError as exc:
        field_name, messages = next(iter(exc.message_dict.items()))
        raise refuse(section, FIELD_TO_OPTION.get(field_name, field_name), " ".join(messages)) from None


def summarize(report: ImportReport, verbose: bool = False) -> Iterable[str]:
    """The human report printed by importconf (and shown by the import page).

    Jail changes are always listed; filter changes only when verbose (a stock tree has a hundred).
    """
    verb = "Would import" if report.dry_run else "Imported"
    yield f"{verb} from {report.root}:"
    for kind in ("filter", "jail"):
        counts = ", ".join(f"{report.count(kind, a)} {a}" for a in ("created", "updated", "unchanged"))
        yield f"  {kind}s: {counts}"
    for change in report.changes:
        if change.action in ("created", "updated") and (verbose or change.kind != "filter"):
            yield f"  {change.action} {change.kind} {change.name}" + (f" ({change.detail})" if change.detail else "")
            if change.action == "updated" or verbose:
                yield from difference_lines(change)
    skipped = report.of("skipped")
    if skipped:
        yield "Skipped:"
        yield from (f"  {c.kind} {c.name}: {c.detail}" for c in skipped)
    if report.notes:
        yield "Notes:"
        yield from (f"  {note}" for note in report.notes)


def difference_lines(change: Change) -> Iterable[str]:
    """A change's fields for a terminal: `bantime: 1h -> 2h` on one line, long values as - and + lines."""
    for key, (old, new) in change.fields.items():
        if change.action == "created":
            if "\n" in new:
                yield f"      {key}:"
                yield from (f"        {line}" for line in new.split("\n"))
            else:
                yield f"      {key}: {new or '(empty)'}"
        elif "\n" in old or "\n" in new:
            yield f"      {key}:"
            yield from (f"        - {line}" for line in old.split("\n"))
            yield from (f"        + {line}" for line in new.split("\n"))
        else:
            yield f"      {key}: {old or '(empty)'} -> {new or '(empty)'}"
