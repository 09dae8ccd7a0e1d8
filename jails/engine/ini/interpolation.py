"""fail2ban's interpolation of INI values, keeping where each line was written.

* ``%(name)s`` (ConfigParser's BasicInterpolation, `_Interpolator`), with
  ``%(__name__)s``, ``%(sec/opt)s``, ``%(default/opt)s`` and ``%(known/opt)s`` = the
  value an overlay replaced, and ``%%`` for a literal percent sign;
* ``<name>`` tags in filters (fail2ban's ``substituteRecursiveTags``, `_TagResolver`):
  innermost first, so ``<mdre-<mode>>`` works; unknown tags (``<HOST>``...) are left as
  they are.

Values are lists of located lines (`_Line`: text, path, line number); a line built
from pieces of several values is blamed on the one inner line that alone makes it,
else on the outer line (`_finish_line`). Loops and runaway growth are `ConfigError`s
(MAX_DEPTH, MAX_TAG_REPLACEMENTS, MAX_VALUE_CHARS); where fail2ban loops (a chain of
``known/`` overlays) we follow the chain instead.

Built on `files.py` (the merged `_Config`); `filters.py` and `jails.py` build on this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import ConfigError
from .files import DEFAULT, DEFINITION, _Config, _Line, _Raw

# Guards against pathological (not looping, just huge) configurations.
MAX_DEPTH = 60
MAX_TAG_REPLACEMENTS = 10_000
# Values that reference others twice per level grow exponentially (a = <b><b>, b = <c><c>...).
MAX_VALUE_CHARS = 1_000_000

_Piece = tuple[str, _Line | None]  # text, and the inner line it came from (None: outer)


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
