"""Filters and jails as the engine sees them: the bridge between rows and jails.engine.

The engine reads fail2ban's INI dialect through a loader; here the loader is the Filter table
(one `filter.d/NAME.conf` per row, plus its `.local` overlay), so includes such as
`before = common.conf` resolve against filters stored in the database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from jails.engine import ini
from jails.engine.backtrack import Backtracking
from jails.engine.definition import FilterDefinition
from jails.engine.errors import EngineError
from jails.engine.filter import CompiledFilter
from jails.engine.guard import DANGEROUS, dangerous_regex
from jails.models import Filter

MODE_REFERENCE = re.compile(r"<([\w.-]+)-<mode>>")
DEFINES_FAILREGEX = re.compile(r"^failregex\s*[=:]", re.MULTILINE)


def filter_files(filters: list[Filter] | None = None) -> dict[str, str]:
    """The Filter table as the files of a fail2ban filter.d directory."""
    rows = filters if filters is not None else Filter.objects.only("name", "source", "source_local")
    files: dict[str, str] = {}
    for row in rows:
        files[f"filter.d/{row.name}.conf"] = row.source
        if row.source_local:
            files[f"filter.d/{row.name}.local"] = row.source_local
    return files


def load_definition(name: str, options: Mapping[str, str] | None = None) -> FilterDefinition:
    """Read a stored filter (with its includes from the database) as the engine's definition."""
    return ini.load_filter(ini.MemoryLoader(filter_files()), name, options)


def compile_stored_filter(name: str, options: Mapping[str, str] | None = None) -> CompiledFilter:
    return CompiledFilter.from_definition(load_definition(name, options))


def is_include_only(name: str, *texts: str) -> bool:
    """Files such as common.conf define variables for the filters that include them (fail2ban names
    them *common.conf, and some, like selinux-common, need variables only the includer sets); they
    are never compiled on their own."""
    return name.endswith("common") or not any(DEFINES_FAILREGEX.search(text) for text in texts)


def include_fields(path: str, *texts: str) -> dict[str, object]:
    """Derived columns of a shared-definitions file, after checking that it parses."""
    for text in texts:
        ini.parse_ini(path, text)
    return {"kind": Filter.Kind.INCLUDE, "prefregex": "", "failregex": [], "ignoreregex": [], "datepattern": "",
            "maxlines": 1, "journalmatch": "", "definition": {}, "init_options": {}, "modes": [], "parse_error": ""}


def derive_fields(definition: FilterDefinition, source: str) -> dict[str, object]:
    """What the engine read from a filter, as the Filter row's derived columns."""
    return {
        "prefregex": definition.prefregex.pattern if definition.prefregex else "",
        "failregex": [line.pattern for line in definition.failregex],
        "ignoreregex": [line.pattern for line in definition.ignoreregex],
        "datepattern": definition.datepattern or "",
        "maxlines": definition.maxlines,
        "journalmatch": definition.journalmatch,
        "definition": dict(definition.variables),
        "init_options": dict(definition.options),
        "modes": detect_modes(definition, source),
        "kind": Filter.Kind.FILTER if definition.failregex else Filter.Kind.INCLUDE,
        "parse_error": "",
    }


def detect_modes(definition: FilterDefinition, source: str) -> list[str]:
    """Values of the `mode` option a filter understands, from its `<prefix-<mode>>` references."""
    modes: set[str] = set()
    for prefix in MODE_REFERENCE.findall(source):
        start = prefix + "-"
        modes.update(key[len(start):] for key in definition.variables if key.startswith(start))
    return sorted(modes)


def check_definition(definition: FilterDefinition) -> None:
    """Compile a definition to prove its regexes work (raises FilterError with file and line)."""
    if definition.failregex:
        CompiledFilter.from_definition(definition)


def derive_stored_fields(name: str, conf: str, local: str = "") -> dict[str, object]:
    """The derived columns of filter `name` if its files were `conf` (+ `local`), proven to compile.

    Includes resolve against the other stored filters, as at run time. Raises EngineError (file and
    line) when the text does not parse or a regex does not compile; nothing is written here.
    """
    files = filter_files(list(Filter.objects.exclude(name=name).only("name", "source", "source_local")))
    files[f"filter.d/{name}.conf"] = conf
    if local:
        files[f"filter.d/{name}.local"] = local
    if is_include_only(name, conf, local):
        return include_fields(f"filter.d/{name}.conf", conf, local)
    definition = ini.load_filter(ini.MemoryLoader(files), name)
    check_definition(definition)
    return derive_fields(definition, conf)


# --- regexes that can backtrack catastrophically ----------------------------------------------------

OVERRIDE_LABEL = "I understand this regex can take exponential time on crafted lines; save anyway"


@dataclass(frozen=True)
class DangerousRegex:
    """A regex of a filter that can take exponential time on a line an attacker writes."""

    filter_name: str
    kind: str  # failregex, ignoreregex or prefregex
    number: int  # 1-based, as the filter lists them
    pattern: str
    found: Backtracking

    def __str__(self) -> str:
        return (f"{self.filter_name}: {self.kind} {self.number} `{self.pattern}`: {DANGEROUS} "
                f"({self.found.kind} `{self.found.shape}`: {self.found.explanation})")

    def as_record(self) -> dict[str, object]:
        """What the audit trail keeps of it."""
        return {"filter": self.filter_name, "regex": f"{self.kind} {self.number}", "pattern": self.pattern,
                "shape": self.found.shape, "kind": self.found.kind}


def dangerous_regexes(name: str, fields: Mapping[str, object]) -> list[DangerousRegex]:
    """The regexes of a filter's derived columns (prefregex, failregex, ignoreregex) that can
    backtrack catastrophically (guard.dangerous_regex), in the filter's order."""
    found: list[DangerousRegex] = []
    prefregex = str(fields.get("prefregex") or "")
    lists: list[tuple[str, list[str]]] = [
        ("prefregex", [prefregex] if prefregex.strip() else []),
        ("failregex", _patterns(fields.get("failregex"))),
        ("ignoreregex", _patterns(fields.get("ignoreregex"))),
    ]
    for kind, patterns in lists:
        for number, pattern in enumerate(patterns, 1):
            found.extend(DangerousRegex(name, kind, number, pattern, f) for f in dangerous_regex(pattern))
    return found


def _patterns(value: object) -> list[str]:
    return [str(pattern) for pattern in value] if isinstance(value, list | tuple) else []


def dangerous_in_save(name: str, conf: str, local: str, derived: Mapping[str, object]) -> list[DangerousRegex]:
    """What saving filter `name` with these files would put in the running filters that can backtrack
    catastrophically: its own dangerous regexes, and for a file of shared definitions (common.conf)
    the dangerous regexes it would newly bring into the filters that include it."""
    found = dangerous_regexes(name, derived)
    if derived.get("kind") != Filter.Kind.INCLUDE:
        return found
    others = list(Filter.objects.exclude(name=name))
    files = filter_files(others)
    files[f"filter.d/{name}.conf"] = conf
    files.pop(f"filter.d/{name}.local", None)
    if local:
        files[f"filter.d/{name}.local"] = local
    loader = ini.MemoryLoader(files)
    for row in others:
        if row.kind != Filter.Kind.FILTER:
            continue
        try:
            definition = ini.load_filter(loader, row.name)
        except EngineError:
            continue  # saving the include does not make it compile; that filter was broken already
        known = {row.prefregex, *row.failregex, *row.ignoreregex}
        found.extend(d for d in dangerous_regexes(row.name, derive_fields(definition, row.source))
                     if d.pattern not in known)
    return found
