"""Filters and jails as the engine sees them: the bridge between rows and jails.engine.

The engine reads fail2ban's INI dialect through a loader; here the loader is the Filter table
(one `filter.d/NAME.conf` per row, plus its `.local` overlay), so includes such as
`before = common.conf` resolve against filters stored in the database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from jails.engine import ini
from jails.engine.definition import FilterDefinition
from jails.engine.filter import CompiledFilter
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
