"""fail2ban's INI files: where they come from, how one is read, how a stack is merged.

fail2ban reads its configuration with Python's ConfigParser plus its own additions.
This package re-implements the behaviour we rely on, in one pass and without
ConfigParser, so that every value keeps the file and line it was written on. This
module owns the files, before any interpolation:

* loaders: `Loader` (a directory, the database...), `DirectoryLoader`, `MemoryLoader`;
* dialect (`parse_ini`): ``[section]``, ``key = value`` / ``key: value`` (keys are
  lower-cased), full-line comments (``#``/``;``), inline comments (``;`` after
  whitespace), values continued on lines indented deeper than the key (comment lines
  inside are skipped, blank lines kept); each value is a `_Raw` with its lines' places;
* stacking (`_StackReader`, `_stack_for`): ``x.conf``, ``x.d/*.conf``, ``x.local``,
  ``x.d/*.local``; each file read is surrounded by its ``[INCLUDES] before``/``after``
  files (relative to its directory), each of those followed by its own ``.local``;
  ``[DEFAULT]`` is shared by the stack; every option keeps all its layers (`_Config`).

Where fail2ban fails with a Python traceback we raise `ConfigError` with a location.
`interpolation.py` builds on this.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import ConfigError

DEFAULT = "DEFAULT"
INCLUDES = "INCLUDES"
DEFINITION = "Definition"
INIT = "Init"


# --------------------------------------------------------------------------- loaders


class Loader(Protocol):
    """Where configuration files come from (a directory, the database...)."""

    def read(self, relpath: str) -> tuple[str, str] | None:
        """(display path, text) of `relpath`, or None when there is no such file."""
        ...


@runtime_checkable
class ListingLoader(Loader, Protocol):
    """A loader that can also list a folder (needed for ``jail.d/*.conf``)."""

    def listdir(self, reldir: str) -> list[str]:
        """Names of the files directly inside `reldir` (empty when it does not exist)."""
        ...


class DirectoryLoader:
    """Files under `root` on disk; `relpath` may also be absolute."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))

    def _full(self, relpath: str) -> str:
        return os.path.normpath(os.path.join(self.root, relpath))

    def read(self, relpath: str) -> tuple[str, str] | None:
        full = self._full(relpath)
        try:
            with open(full, encoding="utf-8") as handle:
                return full, handle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"file is not valid UTF-8 ({exc.reason} at byte {exc.start})", full) from None
        except OSError as exc:
            raise ConfigError(f"cannot read file: {exc.strerror}", full) from None

    def listdir(self, reldir: str) -> list[str]:
        full = self._full(reldir)
        try:
            return sorted(n for n in os.listdir(full) if os.path.isfile(os.path.join(full, n)))
        except OSError:
            return []


class MemoryLoader:
    """Files held in a dict ``{"filter.d/sshd.conf": text}``; display path = key."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = {posixpath.normpath(k): v for k, v in files.items()}

    def read(self, relpath: str) -> tuple[str, str] | None:
        key = posixpath.normpath(relpath)
        text = self.files.get(key)
        return None if text is None else (key, text)

    def listdir(self, reldir: str) -> list[str]:
        prefix = posixpath.normpath(reldir) + "/"
        return sorted(k[len(prefix) :] for k in self.files if k.startswith(prefix) and "/" not in k[len(prefix) :])


# --------------------------------------------------------------------------- parsing


# A line of a resolved value with where it was written (path None: came from options).
_Line = tuple[str, str | None, int | None]


@dataclass(frozen=True, slots=True)
class _Raw:
    """One value as written: its lines (already stripped) and where each line is."""

    lines: tuple[str, ...]
    linenos: tuple[int, ...]
    path: str
    # most values contain no %(...)s: they are their own interpolation, shared by all sections
    plain: list[_Line] | None = None

    @staticmethod
    def make(lines: tuple[str, ...], linenos: tuple[int, ...], path: str) -> _Raw:
        has_percent = any("%" in line for line in lines)
        plain: list[_Line] | None = None
        if not has_percent:
            plain = [(line, path, n) for line, n in zip(lines, linenos, strict=True)]
        return _Raw(lines, linenos, path, plain)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class _ParsedFile:
    path: str
    defaults: dict[str, _Raw] = field(default_factory=dict)
    sections: dict[str, dict[str, _Raw]] = field(default_factory=dict)
    section_linenos: dict[str, int] = field(default_factory=dict)


_SECTION_RE = re.compile(r"\[(?P<name>.+)\]")
_OPTION_RE = re.compile(r"(?P<key>.*?)\s*[=:]\s*(?P<value>.*)$")
_NON_SPACE_RE = re.compile(r"\S")
# fail2ban's conditional sections, e.g. [Init?family=inet6] (used by actions)
_CONDITIONAL_RE = re.compile(r"^(\w+)(\?.+)$")


def _strip_comment(line: str) -> tuple[str, bool]:
    """(content, had_comment): full-line `#`/`;` comments, inline `;` after whitespace."""
    stripped = line.strip()
    if stripped[:1] in ("#", ";"):
        return "", True
    index = line.find(";")
    while index > 0:
        if line[index - 1].isspace():
            return line[:index].strip(), True
        index = line.find(";", index + 1)
    return stripped, False


class _ValueBuilder:
    """Collects the lines of the option being read (first line + continuations)."""

    __slots__ = ("key", "lines", "linenos", "indent")

    def __init__(self, key: str, first: str, lineno: int, indent: int) -> None:
        self.key = key
        self.lines = [first]
        self.linenos = [lineno]
        self.indent = indent

    def finish(self, path: str) -> _Raw:
        lines, linenos = self.lines, self.linenos
        while len(lines) > 1 and not lines[-1]:  # ConfigParser rstrip()s the joined value
            lines.pop()
            linenos.pop()
        return _Raw.make(tuple(lines), tuple(linenos), path)


def parse_ini(path: str, text: str) -> _ParsedFile:
    """Parse one file of fail2ban's dialect (no includes, no interpolation)."""
    result = _ParsedFile(path)
    current: dict[str, _Raw] | None = None
    section_name = ""
    pending: _ValueBuilder | None = None

    def flush() -> None:
        nonlocal pending
        if pending is not None and current is not None:
            current[pending.key] = pending.finish(path)
        pending = None

    for lineno, line in enumerate(text.splitlines(), start=1):
        content, had_comment = _strip_comment(line)
        if not content:
            # A blank line stays part of a multi-line value; a comment line does not.
            if pending is not None and not had_comment:
                pending.lines.append("")
                pending.linenos.append(lineno)
            continue
        indent = _NON_SPACE_RE.search(line).start()  # type: ignore[union-attr]
        if pending is not None and indent > pending.indent:
            pending.lines.append(content)
            pending.linenos.append(lineno)
            continue
        flush()
        header = _SECTION_RE.match(content)
        if header:
            section_name = header.group("name")
            current = _open_section(result, section_name, lineno)
            continue
        if current is None:
            raise ConfigError(f"{content!r} comes before any [section] header", path, lineno)
        option = _OPTION_RE.match(content)
        if not option or not option.group("key"):
            raise ConfigError(f"cannot read {content!r}: expected 'name = value' or a [section]", path, lineno)
        key = option.group("key").rstrip().lower()
        if key in current:
            first = current[key].linenos[0]
            raise ConfigError(f"option {key!r} is set twice in [{section_name}] (first on line {first})", path, lineno)
        pending = _ValueBuilder(key, option.group("value").strip(), lineno, indent)
        # reserve the key now so a duplicate inside the same section is caught
        current[key] = _Raw(("",), (lineno,), path)
    flush()
    return result


def _open_section(result: _ParsedFile, name: str, lineno: int) -> dict[str, _Raw]:
    if name == DEFAULT:
        return result.defaults
    if name in result.sections:
        first = result.section_linenos[name]
        raise ConfigError(f"section [{name}] appears twice in this file (first on line {first})", result.path, lineno)
    result.section_linenos[name] = lineno
    result.sections[name] = {}
    return result.sections[name]


# Parsing is pure, so identical files (common.conf for every filter) are parsed once.
_PARSE_CACHE: dict[tuple[str, str], _ParsedFile] = {}
_PARSE_CACHE_MAX = 512


def _parse_cached(path: str, text: str) -> _ParsedFile:
    key = (path, text)
    parsed = _PARSE_CACHE.get(key)
    if parsed is None:
        parsed = parse_ini(path, text)
        if len(_PARSE_CACHE) >= _PARSE_CACHE_MAX:
            _PARSE_CACHE.clear()
        _PARSE_CACHE[key] = parsed
    return parsed


# --------------------------------------------------------------------------- stacking


@dataclass
class _Config:
    """Every file of a stack merged; each option keeps all its layers (oldest first)."""

    defaults: dict[str, list[_Raw]] = field(default_factory=dict)
    sections: dict[str, dict[str, list[_Raw]]] = field(default_factory=dict)
    section_origins: dict[str, tuple[str, int]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def merge(self, parsed: _ParsedFile) -> None:
        self.sources.append(parsed.path)
        for key, raw in parsed.defaults.items():
            self.defaults.setdefault(key, []).append(raw)
        for name, options in parsed.sections.items():
            conditional = _CONDITIONAL_RE.match(name)
            suffix = ""
            if conditional:
                name, suffix = conditional.groups()
            target = self.sections.setdefault(name, {})
            self.section_origins.setdefault(name, (parsed.path, parsed.section_linenos[name + suffix]))
            for key, raw in options.items():
                target.setdefault(key + suffix, []).append(raw)


def _local_of(relpath: str) -> str:
    return posixpath.splitext(relpath)[0] + ".local"


class _StackReader:
    """Reads a list of files with their includes, in fail2ban's order."""

    def __init__(self, loader: Loader) -> None:
        self.loader = loader
        self.config = _Config()

    def read_all(self, relpaths: list[str]) -> _Config:
        for relpath in self._with_locals(relpaths):
            self._read_with_includes(relpath, (), None)
        return self.config

    def _with_locals(self, relpaths: list[str]) -> list[str]:
        expanded: list[str] = []
        for relpath in relpaths:
            expanded.append(relpath)
            local = _local_of(relpath)
            if local not in relpaths and local != relpath and self.loader.read(local) is not None:
                expanded.append(local)
        return expanded

    def _read_with_includes(self, relpath: str, seen: tuple[str, ...], origin: tuple[str, int] | None) -> None:
        found = self.loader.read(relpath)
        if found is None:
            # Includes of *.local files are optional by convention (common.local...).
            if origin is not None and not relpath.endswith(".local"):
                raise ConfigError(f"included file {relpath!r} does not exist", *origin)
            return
        parsed = _parse_cached(*found)
        if self.config.sources and self.config.sources[-1] == parsed.path:
            # `after = x.local` in x.conf names the file its .local companion already is
            return
        before, after = self._include_lists(parsed, relpath, seen)
        for child, where in before:
            for item in self._with_locals([child]):
                self._read_with_includes(item, (*seen, relpath), where)
        self.config.merge(parsed)
        for child, where in after:
            for item in self._with_locals([child]):
                self._read_with_includes(item, (*seen, relpath), where)

    @staticmethod
    def _include_lists(
        parsed: _ParsedFile, relpath: str, seen: tuple[str, ...]
    ) -> tuple[list[tuple[str, tuple[str, int]]], list[tuple[str, tuple[str, int]]]]:
        section = parsed.sections.get(INCLUDES, {})
        folder = posixpath.dirname(relpath)
        lists: list[list[tuple[str, tuple[str, int]]]] = []
        for option in ("before", "after"):
            names: list[tuple[str, tuple[str, int]]] = []
            raw = section.get(option)
            for line, lineno in zip(raw.lines, raw.linenos, strict=True) if raw else ():
                if not line:
                    continue
                child = line if posixpath.isabs(line) else posixpath.normpath(posixpath.join(folder, line))
                if child in seen or child == relpath:  # include loops are cut, as fail2ban does
                    continue
                names.append((child, (parsed.path, lineno)))
            lists.append(names)
        return lists[0], lists[1]


def _stack_for(loader: Loader, base: str) -> list[str]:
    """`base`.conf, `base`.d/*.conf, `base`.local, `base`.d/*.local (existing ones)."""
    listed = loader.listdir(base + ".d") if isinstance(loader, ListingLoader) else []
    candidates = [base + ".conf"]
    candidates += [f"{base}.d/{n}" for n in listed if n.endswith(".conf")]
    candidates.append(base + ".local")
    candidates += [f"{base}.d/{n}" for n in listed if n.endswith(".local")]
    return [c for c in candidates if loader.read(c) is not None]

