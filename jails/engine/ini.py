"""fail2ban's INI dialect: files, includes, layering and both kinds of interpolation.

fail2ban reads its configuration with Python's ConfigParser plus its own additions.
This module re-implements the behaviour we rely on, in one pass and without
ConfigParser, so that every value keeps the file and line it was written on:

* dialect: ``[section]``, ``key = value`` / ``key: value`` (keys are lower-cased),
  full-line comments (``#``/``;``), inline comments (``;`` after whitespace), values
  continued on lines indented deeper than the key (comment lines inside are skipped,
  blank lines kept), ``%%`` for a literal percent sign;
* stacking: ``x.conf``, ``x.d/*.conf``, ``x.local``, ``x.d/*.local``; each file read is
  surrounded by its ``[INCLUDES] before``/``after`` files (relative to its directory),
  each of those followed by its own ``.local``; ``[DEFAULT]`` is shared by the stack;
* ``%(name)s`` interpolation (ConfigParser's), with ``%(__name__)s``, ``%(sec/opt)s``,
  ``%(default/opt)s`` and ``%(known/opt)s`` = the value an overlay replaced;
* ``<name>`` tags in filters (fail2ban's ``substituteRecursiveTags``): innermost first,
  so ``<mdre-<mode>>`` works; unknown tags (``<HOST>``...) are left as they are.

Where fail2ban fails with a Python traceback we raise `ConfigError` with a location.
Where fail2ban loops (a chain of ``known/`` overlays) we follow the chain instead.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from .definition import FilterDefinition, RegexLine
from .errors import ConfigError

__all__ = [
    "DirectoryLoader",
    "JailSection",
    "ListingLoader",
    "Loader",
    "MemoryLoader",
    "Value",
    "load_filter",
    "load_filter_file",
    "load_jails",
    "parse_filter_spec",
]

DEFAULT = "DEFAULT"
INCLUDES = "INCLUDES"
DEFINITION = "Definition"
INIT = "Init"

# Filter options fail2ban reads from [Definition] (FilterReader._configOpts).
FILTER_OPTIONS = ("usedns", "prefregex", "ignoreregex", "failregex", "maxlines", "datepattern", "journalmatch")

# Guards against pathological (not looping, just huge) configurations.
MAX_DEPTH = 60
MAX_TAG_REPLACEMENTS = 10_000
# Values that reference others twice per level grow exponentially (a = <b><b>, b = <c><c>...).
MAX_VALUE_CHARS = 1_000_000


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
_Piece = tuple[str, _Line | None]  # text, and the inner line it came from (None: outer)


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


# --------------------------------------------------------------------------- located lines


def _check_size(lines: list[_Line], where: _Line) -> None:
    if sum(len(line[0]) + 1 for line in lines) > MAX_VALUE_CHARS:  # +1: a newline each
        raise ConfigError(f"value grows beyond {MAX_VALUE_CHARS} characters after interpolation", where[1], where[2])


def _finish_line(pieces: list[_Piece], outer: _Line) -> _Line:
    """Join pieces into one line, blaming the inner line when it alone makes the line."""
    text = "".join(p[0] for p in pieces)
    owner: _Line | None = None
    for piece_text, inner in pieces:
        if not piece_text.strip():
            continue
        if inner is None or inner[1] is None or (owner is not None and owner is not inner):
            return text, outer[1], outer[2]
        owner = inner
    if owner is None:
        return text, outer[1], outer[2]
    return text, owner[1], owner[2]


def _splice(lines: list[_Line], pieces: list[_Piece], outer: _Line, value: list[_Line]) -> list[_Piece]:
    """Insert a multi-line `value` into the line being built; returns the new current pieces."""
    if not value:
        return pieces
    pieces.append((value[0][0], value[0]))
    if len(value) == 1:
        return pieces
    lines.append(_finish_line(pieces, outer))
    lines.extend(value[1:-1])
    return [(value[-1][0], value[-1])]


# --------------------------------------------------------------------------- %(name)s

_PERCENT_RE = re.compile(r"%(?:(%)|\(([^)]*)\)s|)")
_SECTION_OPTION_RE = re.compile(r"^([\w\-]+)/([^\s>]+)$")

_Frame = tuple[str, str, int]  # (section or DEFAULT, key, layer)


class _Interpolator:
    """ConfigParser's BasicInterpolation plus fail2ban's additions, keeping line origins."""

    def __init__(self, config: _Config, variables: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.vars = {k.lower(): v for k, v in (variables or {}).items()}
        self._cache: dict[tuple[str, str, str, int], list[_Line]] = {}

    # -- lookups

    def layers(self, owner: str, key: str) -> list[_Raw] | None:
        if owner == DEFAULT:
            return self.config.defaults.get(key)
        return self.config.sections.get(owner, {}).get(key)

    def get(self, section: str, key: str, use_vars: bool = True) -> list[_Line] | None:
        """Effective value of `key` seen from `section` (own, else [DEFAULT]), interpolated."""
        key = key.lower()
        if use_vars and key in self.vars:
            return self._expand_text(self.vars[key], section, (), None)
        own = self.config.sections.get(section, {}).get(key)
        if own is not None:
            return self._evaluate(section, (section, key, len(own) - 1), ())
        inherited = self.config.defaults.get(key)
        if inherited is not None:
            return self._evaluate(section, (DEFAULT, key, len(inherited) - 1), ())
        return None

    def _evaluate(self, section: str, frame: _Frame, stack: tuple[_Frame, ...]) -> list[_Line]:
        cache_key = (section, *frame)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        owner, key, layer = frame
        raw = self.layers(owner, key)[layer]  # type: ignore[index]
        if raw.plain is not None:
            return raw.plain
        if frame in stack:
            names = " -> ".join(f"%({f[1]})s" for f in (*stack[stack.index(frame) :], frame))
            raise ConfigError(f"interpolation loop: {names}", raw.path, raw.linenos[0])
        if len(stack) > MAX_DEPTH:
            raise ConfigError(f"interpolation nested too deeply at %({key})s", raw.path, raw.linenos[0])
        result: list[_Line] = []
        for line, lineno in zip(raw.lines, raw.linenos, strict=True):
            result.extend(self._expand_line((line, raw.path, lineno), section, (*stack, frame)))
            _check_size(result, (line, raw.path, lineno))
        self._cache[cache_key] = result
        return result

    def _expand_text(self, text: str, section: str, stack: tuple[_Frame, ...], where: _Line | None) -> list[_Line]:
        origin = where or ("", None, None)
        result: list[_Line] = []
        for line in text.split("\n"):
            result.extend(self._expand_line((line, origin[1], origin[2]), section, stack))
        return result

    def _expand_line(self, outer: _Line, section: str, stack: tuple[_Frame, ...]) -> list[_Line]:
        text = outer[0]
        if "%" not in text:
            return [outer]
        lines: list[_Line] = []
        pieces: list[_Piece] = []
        pos = 0
        for match in _PERCENT_RE.finditer(text):
            pieces.append((text[pos : match.start()], None))
            pos = match.end()
            if match.group(1):
                pieces.append(("%", None))
            elif match.group(2) is not None:
                value = self._reference(match.group(2), section, stack, outer)
                pieces = _splice(lines, pieces, outer, value)
                _check_size([*lines, ("".join(p[0] for p in pieces), None, None)], outer)
            else:
                raise ConfigError(
                    f"'%' must be followed by '%' or '(name)s' in {text!r}: write '%%' for a literal '%'",
                    outer[1],
                    outer[2],
                )
        pieces.append((text[pos:], None))
        lines.append(_finish_line(pieces, outer))
        return lines

    def _reference(self, name: str, section: str, stack: tuple[_Frame, ...], where: _Line) -> list[_Line]:
        key = name.lower()
        if key == "__name__":
            return [(section, None, None)]
        if key in self.vars:
            return self._expand_text(self.vars[key], section, stack, where)
        frame = self._frame_for(key, section, stack)
        if frame is None and "/" in name:
            frame = self._section_option_frame(name, section, stack)
        if frame is None:
            raise ConfigError(f"%({name})s refers to an option that is not defined (seen from [{section}])", *where[1:])
        return self._evaluate(section, frame, stack)

    def _frame_for(self, key: str, section: str, stack: tuple[_Frame, ...]) -> _Frame | None:
        own = self.config.sections.get(section, {}).get(key)
        if own is not None:
            return (section, key, len(own) - 1)
        inherited = self.config.defaults.get(key)
        if inherited is not None:
            return (DEFAULT, key, len(inherited) - 1)
        return None

    def _section_option_frame(self, name: str, section: str, stack: tuple[_Frame, ...]) -> _Frame | None:
        match = _SECTION_OPTION_RE.match(name)
        if not match:
            return None
        target, key = match.group(1), match.group(2).lower()
        if target.lower() == "known":
            return self._known_frame(key, section, stack)
        if target.lower() == "default":
            return self._frame_for(key, "\0no-section", stack)
        if target not in self.config.sections:
            return None
        return self._frame_for(key, target, stack)

    def _known_frame(self, key: str, section: str, stack: tuple[_Frame, ...]) -> _Frame | None:
        """`known/key`: the layer below the one being evaluated (fail2ban's KNOWN/ sections)."""
        for owner, frame_key, layer in reversed(stack):
            if frame_key != key:
                continue
            if layer > 0:
                return (owner, key, layer - 1)
            if owner != DEFAULT and key in self.config.defaults:
                return (DEFAULT, key, len(self.config.defaults[key]) - 1)
            return None
        own = self.config.sections.get(section, {}).get(key)
        if own is not None and len(own) > 1:
            return (section, key, len(own) - 2)
        inherited = self.config.defaults.get(key)
        if inherited is not None:
            return (DEFAULT, key, len(inherited) - 1)
        return None


# --------------------------------------------------------------------------- <name> tags

_TAG_RE = re.compile(r"<([^ <>]+)>")


def _cut(pieces: list[_Piece], start: int, end: int) -> list[_Piece]:
    """The part [start, end) of a line held as pieces, keeping each piece's origin."""
    out: list[_Piece] = []
    pos = 0
    for text, inner in pieces:
        lo, hi = max(start, pos), min(end, pos + len(text))
        if lo < hi:
            out.append((text[lo - pos : hi - pos], inner))
        pos += len(text)
    return out


def _restart_at(text: str, start: int) -> int:
    """After replacing a tag at `start`, an enclosing tag may now be complete (<a-<b>>)."""
    opening = text.rfind("<", 0, start)
    if opening >= 0 and not any(c in text[opening + 1 : start] for c in "> "):
        return opening
    return start


class _TagResolver:
    """fail2ban's recursive `<name>` substitution over located lines."""

    def __init__(self, combined: Mapping[str, list[_Line]], fallback: _Interpolator, plain: _Interpolator) -> None:
        self.combined = combined
        self.fallback = fallback  # [Definition] with the jail's options as variables
        self.plain = plain  # the same config without them (for sec/opt tags)
        self._done: dict[str, list[_Line] | None] = {}
        self._active: list[str] = []

    def resolve(self, name: str, where: _Line | None = None) -> list[_Line] | None:
        if name in self._done:
            return self._done[name]
        if name in self._active:
            loop = " -> ".join(f"<{n}>" for n in (*self._active[self._active.index(name) :], name))
            raise ConfigError(f"tag loop: {loop}", *(where[1:] if where else (None, None)))
        if len(self._active) > MAX_DEPTH:
            raise ConfigError(f"tags nested too deeply at <{name}>", *(where[1:] if where else (None, None)))
        raw = self._lookup(name)
        if raw is None:
            self._done[name] = None
            return None
        self._active.append(name)
        try:
            result = self.substitute(raw)
            _check_size(result, where or ("", None, None))
        finally:
            self._active.pop()
        self._done[name] = result
        return result

    def _lookup(self, name: str) -> list[_Line] | None:
        value = self.combined.get(name)
        if value is not None:
            return value
        match = _SECTION_OPTION_RE.match(name) if "/" in name else None
        if match:
            section, key = match.group(1), match.group(2)
            if section.lower() == "known":
                frame = self.plain._known_frame(key.lower(), DEFINITION, ())
                if frame is not None:
                    return self.plain._evaluate(DEFINITION, frame, ())
                value = self.plain.get(DEFINITION, key, use_vars=False)
            else:
                section = DEFAULT if section.lower() == "default" else section
                if section == DEFAULT or section in self.plain.config.sections:
                    value = self.plain.get(section, key, use_vars=False)
            if value is not None:
                return value
        return self.fallback.get(DEFINITION, name)

    def substitute(self, lines: list[_Line]) -> list[_Line]:
        out: list[_Line] = []
        for line in lines:
            if "<" in line[0]:
                out.extend(self._substitute_line([(line[0], None)], line, 0, 0))
            else:
                out.append(line)
        return out

    def _substitute_line(self, pieces: list[_Piece], outer: _Line, pos: int, count: int) -> list[_Line]:
        text = "".join(p[0] for p in pieces)
        while True:
            match = _TAG_RE.search(text, pos)
            if match is None:
                return [_finish_line(pieces, outer)]
            value = self.resolve(match.group(1), outer)
            if value is None:  # unknown tag (<HOST>, <F-USER>...): leave it for the regex compiler
                pos = match.end()
                continue
            count += 1
            if count > MAX_TAG_REPLACEMENTS:
                raise ConfigError(f"too many tag replacements in {outer[0]!r}", outer[1], outer[2])
            before = _cut(pieces, 0, match.start())
            after = _cut(pieces, match.end(), len(text))
            restart = _restart_at(text, match.start())
            if len(value) <= 1:
                inserted: list[_Piece] = [(value[0][0], value[0])] if value else []
                pieces = before + inserted + after
                text = "".join(p[0] for p in pieces)
                _check_size([(text, None, None)], outer)
                pos = restart
                continue
            first = self._substitute_line([*before, (value[0][0], value[0])], outer, restart, count)
            last = self._substitute_line([(value[-1][0], value[-1]), *after], outer, 0, count)
            result = first + list(value[1:-1]) + last
            _check_size(result, outer)
            return result


# --------------------------------------------------------------------------- filters


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


# --------------------------------------------------------------------------- jails


@dataclass(frozen=True)
class Value:
    """An effective, interpolated option value and where it was written."""

    text: str
    path: str
    lineno: int


@dataclass
class JailSection:
    """A jail: its effective options (own, then [DEFAULT]), interpolated."""

    name: str
    values: dict[str, Value]
    # where the section header is (first file that opened it); added for error messages
    path: str = ""
    lineno: int = 0
    # options that cannot be interpolated, with the reason ("path:line: message"); added
    # because jail.conf's [DEFAULT] holds helpers (action_cf_mwl...) that only work when
    # an action supplies their variables, and fail2ban only complains about what it uses
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        value = self.values.get("enabled")
        return value is not None and value.text.strip().lower() in ("1", "on", "true", "yes")


# Sections of jail files that are not jails.
_NOT_JAILS = frozenset({INCLUDES, DEFINITION, INIT})

# The options fail2ban itself reads for an enabled jail (JailReader._configOpts): a
# broken one is an error; a broken helper option is only reported in `errors`.
JAIL_OPTIONS = frozenset(
    {
        "enabled", "backend", "maxretry", "maxmatches", "findtime", "bantime", "bantime.increment",
        "bantime.factor", "bantime.formula", "bantime.multipliers", "bantime.maxtime", "bantime.rndtime",
        "bantime.overalljails", "ignorecommand", "ignoreself", "ignoreip", "ignorecache", "filter",
        "logtimezone", "logencoding", "logpath", "action", *FILTER_OPTIONS,
    }
)  # fmt: skip


def load_jails(loader: Loader, *, confpath: str | None = None) -> list[JailSection]:
    """Every jail of jail.conf, jail.d/*.conf, jail.local, jail.d/*.local (fail2ban's order).

    Raises ConfigError for a syntax error anywhere, and for an option fail2ban needs
    (JAIL_OPTIONS) that cannot be interpolated in an enabled jail.
    """
    files = _stack_for(loader, "jail")
    if not files:
        raise ConfigError("no jail.conf or jail.local found")
    config = _StackReader(loader).read_all(files)
    _add_builtin_defaults(config, loader, confpath)
    interpolator = _Interpolator(config)
    jails: list[JailSection] = []
    for name, options in config.sections.items():
        if name in _NOT_JAILS or _CONDITIONAL_RE.match(name):
            continue
        path, lineno = config.section_origins.get(name, ("", 0))
        jail = JailSection(name, {}, path, lineno)
        for key in dict.fromkeys([*options, *config.defaults]):
            layers = options.get(key) or config.defaults[key]
            try:
                lines = interpolator.get(name, key, use_vars=False) or []
            except ConfigError as exc:
                jail.errors[key] = str(exc)
                continue
            jail.values[key] = Value(_joined_value(lines), layers[-1].path, layers[-1].linenos[0])
        _check_needed_options(jail)
        jails.append(jail)
    return jails


def _check_needed_options(jail: JailSection) -> None:
    if "enabled" in jail.errors:
        raise ConfigError(f"jail [{jail.name}]: {jail.errors['enabled']}")
    if not jail.enabled:
        return
    for key, message in jail.errors.items():
        if key in JAIL_OPTIONS:
            raise ConfigError(f"jail [{jail.name}], option {key!r}: {message}")


def _joined_value(lines: list[_Line]) -> str:
    return "\n".join(line[0] for line in lines).rstrip()


def _add_builtin_defaults(config: _Config, loader: Loader, confpath: str | None) -> None:
    """fail2ban adds these two defaults before interpolating jails (jail.conf uses both)."""
    root = confpath if confpath is not None else getattr(loader, "root", "/etc/fail2ban")
    builtin = {"fail2ban_version": "1.0.2", "fail2ban_confpath": str(root)}
    for key, text in builtin.items():
        # jail files may not override them: fail2ban's merge_defaults comes last
        config.defaults[key] = [_Raw.make((text,), (0,), "<fail2ban>")]
