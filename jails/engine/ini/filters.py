"""A filter's files read into a `FilterDefinition`, as fail2ban's FilterReader does.

Owns the filter spec of a jail (``name[opt=value, ...]``, `parse_filter_spec`), where
a filter's files are (`load_filter`: ``filter.d/<name>.conf`` with its ``.d/`` and
``.local`` overlays; `load_filter_file`: any path, as fail2ban-regex takes it), the
options fail2ban reads from ``[Definition]`` (FILTER_OPTIONS) and ``[Init]``, the
jail's options passed in as variables, and the resolved values turned into regex
lines, a datepattern and maxlines with the place each was written.

Built on `files.py` and `interpolation.py`.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..definition import FilterDefinition, RegexLine
from ..errors import ConfigError
from .files import _CONDITIONAL_RE, DEFINITION, INIT, DirectoryLoader, Loader, _Config, _Line, _stack_for, _StackReader
from .interpolation import _Interpolator, _TagResolver

# Filter options fail2ban reads from [Definition] (FilterReader._configOpts).
FILTER_OPTIONS = ("usedns", "prefregex", "ignoreregex", "failregex", "maxlines", "datepattern", "journalmatch")


def parse_filter_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``name[opt=value, opt2="a,b"][opt3='x']`` into the name and its options."""
    text = spec.strip()
    bracket = text.find("[")
    if bracket < 0:
        if not text:
            raise ConfigError("empty filter name")
        return text, {}
    name = text[:bracket].strip()
    if not name:
        raise ConfigError(f"missing filter name before '[' in {spec!r}")
    options: dict[str, str] = {}
    pos = bracket
    while pos < len(text):
        if text[pos] != "[":
            raise ConfigError(f"unexpected {text[pos : pos + 20]!r} after the options in {spec!r}")
        pos = _parse_option_group(text, pos + 1, options, spec)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return name, options


_OPTION_PAIR_RE = re.compile(r"\s*([\w.\-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^,\]\"']*))\s*")


def _parse_option_group(text: str, pos: int, options: dict[str, str], spec: str) -> int:
    """Parse ``a=1, b="x"]`` starting at `pos`; returns the position after ``]``."""
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos < len(text) and text[pos] == "]":
            return pos + 1
        match = _OPTION_PAIR_RE.match(text, pos)
        if not match:
            raise ConfigError(f"expected name=value at {text[pos : pos + 20]!r} in {spec!r}")
        quoted = match.group(2) if match.group(2) is not None else match.group(3)
        options[match.group(1)] = quoted if quoted is not None else match.group(4).strip()
        pos = match.end()
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            raise ConfigError(f"missing ',' or ']' at {text[pos : pos + 20]!r} in {spec!r}")


def load_filter(
    loader: Loader, name: str, options: Mapping[str, str] | None = None, *, backend: str = "auto"
) -> FilterDefinition:
    """Load ``filter.d/<name>.conf`` (+ .d/, .local) with options passed from a jail."""
    base = _filter_base(name)
    files = _stack_for(loader, base)
    if not files:
        raise ConfigError(f"filter {name!r} not found: no {base}.conf or {base}.local")
    return _build_filter(loader, files, posixpath.basename(base), options, backend)


def load_filter_file(
    path: str | os.PathLike[str], options: Mapping[str, str] | None = None, *, backend: str = "auto"
) -> FilterDefinition:
    """Load a filter from any .conf path, as fail2ban-regex does for a file argument."""
    full = Path(os.path.abspath(os.fspath(path)))
    if full.parent.name == "filter.d":
        # inside a filter.d folder: the whole stack (.d/ and .local overlays) applies
        return load_filter(DirectoryLoader(full.parent.parent), full.stem, options, backend=backend)
    loader = DirectoryLoader(full.parent)
    if loader.read(full.name) is None:
        raise ConfigError("filter file does not exist", str(full))
    return _build_filter(loader, [full.name], full.stem, options, backend)


def _filter_base(name: str) -> str:
    clean = name.strip()
    for suffix in (".conf", ".local"):
        if clean.endswith(suffix):
            clean = clean[: -len(suffix)]
    parts = clean.split("/")
    if not clean or clean.startswith("/") or ".." in parts or "" in parts:
        raise ConfigError(f"invalid filter name {name!r}")
    return "filter.d/" + clean


def _build_filter(
    loader: Loader, files: list[str], name: str, options: Mapping[str, str] | None, backend: str
) -> FilterDefinition:
    config = _StackReader(loader).read_all(files)
    passed = dict(options or {})
    # fail2ban's applyAutoOptions: the backend decides logtype unless set explicitly.
    if "logtype" not in passed and "logtype" not in config.sections.get(DEFINITION, {}):
        passed["logtype"] = "journal" if backend.startswith("systemd") else "file"
    with_vars = _Interpolator(config, passed)
    plain = _Interpolator(config)

    combined: dict[str, list[_Line]] = {}
    # Like fail2ban, a file without [Definition] (common.conf...) defines no filter options.
    has_definition = DEFINITION in config.sections
    for option in FILTER_OPTIONS:
        if has_definition and option not in passed:
            value = with_vars.get(DEFINITION, option)
            if value is not None:
                combined[option] = value
    init_values: dict[str, list[_Line]] = {}
    for key in config.sections.get(INIT, {}):
        value = plain.get(INIT, key, use_vars=False)
        if value is None:  # pragma: no cover - keys come from the section itself
            continue
        init_values[key] = value
        combined["known/" + key] = value
        if key not in passed:
            combined[key] = value
    for key, text in passed.items():
        combined[key] = [(line, None, None) for line in text.split("\n")]
    tags = _TagResolver(combined, with_vars, plain)
    return _definition_from(name, config, tags, init_values, passed)


def _definition_from(
    name: str,
    config: _Config,
    tags: _TagResolver,
    init_values: Mapping[str, list[_Line]],
    passed: Mapping[str, str],
) -> FilterDefinition:
    def resolved(key: str) -> list[_Line]:
        return tags.resolve(key) or [] if key in tags.combined else []

    failregex = _regex_lines(resolved("failregex"))
    ignoreregex = _regex_lines(resolved("ignoreregex"))
    prefregex = _single_regex(resolved("prefregex"), "prefregex")
    datepattern = _joined(resolved("datepattern")).strip() or None
    maxlines = _int_option(resolved("maxlines"), "maxlines", default=1)
    journalmatch = _joined(resolved("journalmatch")).strip()

    variables: dict[str, str] = {}
    names = [*config.defaults, *config.sections.get(DEFINITION, {}), *init_values, *passed]
    for key in dict.fromkeys(names):
        if _CONDITIONAL_RE.match(key):
            continue
        value = tags.resolve(key)
        if value is not None:
            variables[key] = _joined(value)
    option_values = {key: _joined(tags.resolve(key) or []) for key in init_values}
    option_values.update(passed)
    return FilterDefinition(
        name=name,
        failregex=failregex,
        ignoreregex=ignoreregex,
        prefregex=prefregex,
        datepattern=datepattern,
        maxlines=maxlines,
        journalmatch=journalmatch,
        variables=variables,
        options=option_values,
        sources=tuple(config.sources),
    )


def _joined(lines: Iterable[_Line]) -> str:
    return "\n".join(line[0] for line in lines).strip()


def _regex_lines(lines: list[_Line]) -> tuple[RegexLine, ...]:
    # A blank (or blank after substitution) line is no regex: it would match anything.
    return tuple(RegexLine(text, path, lineno) for text, path, lineno in lines if text.strip())


def _single_regex(lines: list[_Line], option: str) -> RegexLine | None:
    found = _regex_lines(lines)
    if not found:
        return None
    if len(found) > 1:
        raise ConfigError(f"{option} must be a single line, found {len(found)}", found[1].path, found[1].lineno)
    return found[0]


def _int_option(lines: list[_Line], option: str, default: int) -> int:
    text = _joined(lines)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        where = next((line for line in lines if line[0].strip()), lines[0])
        raise ConfigError(f"{option} must be a whole number, not {text!r}", where[1], where[2]) from None
