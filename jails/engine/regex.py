"""fail2ban regexes -> Python regexes.

fail2ban filters are written with tags (`<HOST>`, `<F-USER>...</F-USER>`, `<SKIPLINES>`...)
that stand for fixed sub-expressions or for named captures. This module expands them the
way fail2ban does, so that stock filters behave the same, and compiles the result once.

Semantics kept from fail2ban (learned from its documentation and behaviour):
- `<HOST>` is an address (IPv4, IPv6, optionally in brackets) or a DNS-like name; the
  capture groups are `ip4`, `ip6` and `dns`. `<ADDR>` is the address part only.
- `<F-NAME>...</F-NAME>` captures as group `name` (lower case; `id` -> `fid`,
  `port` -> `fport`). A closing tag that was never opened stays literal text.
- `<F-ALT_NAME>` / `<F-ALT_NAME_2>` captures are merged into `name` when it is empty;
  `<F-TUPLE_NAME>` captures are combined with `name` into a tuple.
- `<SKIPLINES>` skips any number of whole lines in a multi-line buffer.
- `((?i)x)` / `(?:(?i)x)` are rewritten to the local flag form `(?i:x)`.
- Unknown tags (`<br>`, `<name>` inside `(?P<name>`) are left untouched.
"""

from __future__ import annotations

import re
import re._constants as sre_c
import re._parser as sre_parse
from dataclasses import dataclass
from typing import Any

from .definition import RegexLine
from .errors import FilterError

# --- building blocks ----------------------------------------------------------------

# Four dot-separated groups of 1-3 digits. Deliberately not range-checked: fail2ban does
# not either, and a stricter form would let "999.1.2.3" fall through to the DNS branch.
_IP4 = r"\d{1,3}(?:\.\d{1,3}){3}"
# Up to 7 "hex:" / "hex::" / "::" chunks then a final hex group or a second colon.
_IP6 = r"(?:[0-9a-fA-F]{1,4}:{1,2}|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)"
# An IPv4 address may be written IPv4-mapped (::ffff:1.2.3.4); only the v4 part is kept.
_IP4_GROUP = rf"(?:::f{{4,6}}:)?(?P<ip4>{_IP4})"
_IP6_GROUP = rf"(?P<ip6>{_IP6})"
_DNS_GROUP = r"(?P<dns>[\w\-.^_]*\w)"
_CIDR_GROUP = r"(?P<cidr>\d+)"
_ADDR = rf"\[?(?:{_IP4_GROUP}|{_IP6_GROUP})\]?"
_HOST = rf"(?:{_ADDR}|{_DNS_GROUP})"
_SUBNET = rf"\[?(?:{_IP4_GROUP}|{_IP6_GROUP})(?:/{_CIDR_GROUP})?\]?"

# Tags that expand to a fixed expression (bare, or as a self-closing F- tag).
_FIXED_TAGS: dict[str, str] = {
    "IP4": _IP4_GROUP,
    "IP6": _IP6_GROUP,
    "ADDR": _ADDR,
    "CIDR": _CIDR_GROUP,
    "SUBNET": _SUBNET,
    "DNS": _DNS_GROUP,
}
_SELF_CLOSING: dict[str, str] = {f"F-{name}/": expr for name, expr in _FIXED_TAGS.items()}
_SELF_CLOSING["F-ID/"] = r"(?P<fid>\S+)"
_SELF_CLOSING["F-PORT/"] = r"(?P<fport>\w+)"

# Group names that identify who failed; a failregex needs one (itself or via prefregex).
ID_GROUPS = ("fid", "ip4", "ip6", "dns")
ROLE_GROUPS = (*ID_GROUPS, "mlfid", "nofail")

_TAG_RE = re.compile(r"<(/?)([\w-]+)(/?)>")
_CUSTOM_NAME_RE = re.compile(r"^F-([A-Z0-9_-]+)$")
_RENAMED = {"id": "fid", "port": "fport"}
_COMPLEX_NAME_RE = re.compile(r"^(alt_|tuple_)(.*?)(?:_\d+)?$")
# "((?i)x" or "(?:(?i)x" -> "(?i:x": Python only accepts global flags at the very start.
_GLOBAL_FLAG_RE = re.compile(r"(?<!\\)\((?:\?:)?(\(\?[a-z]+)\)")


def group_name_for(tag_name: str) -> str:
    """`USER` -> `user`, `ID` -> `fid`: the group a `<F-NAME>` tag captures into."""
    low = tag_name.lower()
    return _RENAMED.get(low, low)


@dataclass(frozen=True)
class Translation:
    """A fail2ban regex expanded to Python syntax (not yet compiled)."""

    source: str
    skiplines: int  # how many <SKIPLINES> tags (groups skiplines0..N-1)


def translate(pattern: str, *, use_dns: str = "yes") -> Translation:
    """Expand fail2ban tags in `pattern` into a Python regex source.

    `use_dns="no"` makes `<HOST>` accept addresses only, like fail2ban's usedns=no.
    """
    opened: set[str] = set()
    skiplines = 0

    def expand(m: re.Match[str]) -> str:
        nonlocal skiplines
        closing, name, selfclose = m.group(1), m.group(2), m.group(3)
        if not closing and not selfclose:
            if name == "HOST":
                return _ADDR if use_dns == "no" else _HOST
            if name == "SKIPLINES":
                skiplines += 1
                return rf"\n(?P<skiplines{skiplines - 1}>(?:(?:.*\n)*?))"
            fixed = _FIXED_TAGS.get(name)
            if fixed is not None:
                return fixed
        if selfclose and not closing:
            return _SELF_CLOSING.get(name + "/", m.group(0))
        if closing and selfclose:
            return m.group(0)
        custom = _CUSTOM_NAME_RE.match(name)
        if custom is None:
            return m.group(0)
        tag = custom.group(1)
        if closing:
            # a close tag never opened is literal text (fail2ban does the same)
            return ")" if tag in opened else m.group(0)
        opened.add(tag)
        return f"(?P<{group_name_for(tag)}>"

    source = _TAG_RE.sub(expand, pattern)
    source = _GLOBAL_FLAG_RE.sub(r"\1:", source)
    return Translation(source, skiplines)


@dataclass(frozen=True)
class CompiledRegex:
    """One translated, compiled regex plus what the matcher needs to read its groups."""

    original: RegexLine
    source: str
    regex: re.Pattern[str]
    skiplines: int
    # (group, target) pairs, sorted, for <F-ALT_x> merging and <F-TUPLE_x> combining
    alt_groups: tuple[tuple[str, str], ...]
    tuple_groups: tuple[tuple[str, str], ...]
    group_names: frozenset[str]

    def groups(self, m: re.Match[str]) -> dict[str, Any]:
        """The captured groups of a match, with alternates and tuples merged."""
        found: dict[str, Any] = m.groupdict()
        for group, target in self.alt_groups:
            value = found.get(group)
            if value and not found.get(target):
                found[target] = value
        for group, target in self.tuple_groups:
            value = found.get(group)
            current = found.get(target)
            found[target] = (*current, value) if isinstance(current, tuple) else (current, value)
        return found

    def skipped_lines(self, m: re.Match[str]) -> list[str]:
        """The lines a match consumed through its <SKIPLINES> tags."""
        text = ""
        for n in range(self.skiplines):
            part = m.group(f"skiplines{n}")
            if part is not None:
                text += part
        return text.splitlines()


def _where(line: RegexLine) -> dict[str, Any]:
    return {"path": line.path, "lineno": line.lineno}


def compile_regex(
    line: RegexLine,
    *,
    kind: str = "failregex",
    multiline: bool = False,
    use_dns: str = "yes",
) -> CompiledRegex:
    """Translate and compile one regex; a bad one raises FilterError naming its file/line."""
    if not line.pattern.strip():
        raise FilterError(f"empty {kind}", **_where(line))
    translation = translate(line.pattern, use_dns=use_dns)
    try:
        compiled = re.compile(translation.source, re.MULTILINE if multiline else 0)
    except re.error as exc:
        pos = f" at position {exc.pos}" if exc.pos is not None else ""
        raise FilterError(f"{kind} does not compile: {exc.msg}{pos}: {line.pattern!r}", **_where(line)) from None
    alt: list[tuple[str, str]] = []
    tup: list[tuple[str, str]] = []
    for name in compiled.groupindex:
        complex_name = _COMPLEX_NAME_RE.match(name)
        if complex_name is None or len(name) <= len("alt_"):
            continue
        target = group_name_for(complex_name.group(2))
        (alt if complex_name.group(1) == "alt_" else tup).append((name, target))
    return CompiledRegex(
        original=line,
        source=translation.source,
        regex=compiled,
        skiplines=translation.skiplines,
        alt_groups=tuple(sorted(alt)),
        tuple_groups=tuple(sorted(tup)),
        group_names=frozenset(compiled.groupindex),
    )


def has_role(regex: CompiledRegex) -> bool:
    """True when a match can say who failed (or is a session/no-failure helper)."""
    return any(g in regex.group_names for g in ROLE_GROUPS)


def compile_failregex(
    line: RegexLine,
    *,
    prefregex: CompiledRegex | None = None,
    multiline: bool = False,
    use_dns: str = "yes",
) -> CompiledRegex:
    """Compile a failregex and check it can name a culprit (itself or via prefregex)."""
    compiled = compile_regex(line, kind="failregex", multiline=multiline, use_dns=use_dns)
    if not has_role(compiled) and (prefregex is None or not has_role(prefregex)):
        raise FilterError(
            "failregex has no host tag (<HOST>, <ADDR>, <IP4>, <IP6>, <DNS>, <SUBNET>) "
            f"and no <F-ID>/<F-MLFID>/<F-NOFAIL>: {line.pattern!r}",
            **_where(line),
        )
    return compiled


def has_host_tag(pattern: str) -> bool:
    """Quick check for a raw regex given on the command line."""
    try:
        source = translate(pattern).source
        names = re.compile(source).groupindex
    except re.error:
        return False
    return any(g in names for g in ROLE_GROUPS)


# --- first-character dispatch ---------------------------------------------------------

_MAX_CLASS_CHARS = 64


def first_chars(source: str, flags: int = 0) -> frozenset[str] | None:
    """The characters a match of `source` must start with, when it is anchored at the
    start of the text (`^` without MULTILINE) and that set is small and known.

    None means "could start with anything" (or not anchored): always run the regex.
    The set over-approximates (lookarounds and other zero-width items are skipped),
    so a text whose first character is not in it can never match: that is what lets
    the matcher skip most failregexes of a line without calling them."""
    try:
        parsed = sre_parse.parse(source, flags)
    except re.error:
        return None
    if parsed.state.flags & (re.IGNORECASE | re.MULTILINE):
        return None
    items = list(parsed.data)
    if not items or (items[0] != (sre_c.AT, sre_c.AT_BEGINNING) and items[0] != (sre_c.AT, sre_c.AT_BEGINNING_STRING)):
        return None
    found, nullable = _first_of_sequence(items[1:])
    if found is None or nullable:
        return None
    return frozenset(found)


def _first_of_sequence(items: list[tuple[Any, Any]]) -> tuple[set[str] | None, bool]:
    acc: set[str] = set()
    for op, arg in items:
        found, nullable = _first_of_node(op, arg)
        if found is None:
            return None, False
        acc |= found
        if not nullable:
            return acc, False
    return acc, True


def _first_of_node(op: Any, arg: Any) -> tuple[set[str] | None, bool]:  # a dispatch
    if op is sre_c.LITERAL:
        return {chr(arg)}, False
    if op is sre_c.IN:
        chars = _class_chars(arg)
        return (None, False) if chars is None else (chars, False)
    if op in (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT):
        return set(), True  # zero-width: does not consume the first character
    if op is sre_c.SUBPATTERN:
        _group, add_flags, _del_flags, body = arg
        if add_flags & re.IGNORECASE:
            return None, False
        return _first_of_sequence(list(body))
    if op is sre_c.ATOMIC_GROUP:
        return _first_of_sequence(list(arg))
    if op is sre_c.BRANCH:
        acc: set[str] = set()
        any_nullable = False
        for branch in arg[1]:
            found, nullable = _first_of_sequence(list(branch))
            if found is None:
                return None, False
            acc |= found
            any_nullable = any_nullable or nullable
        return acc, any_nullable
    if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
        low, _high, body = arg
        found, nullable = _first_of_sequence(list(body))
        if found is None:
            return None, False
        return found, low == 0 or nullable
    return None, False  # ANY, NOT_LITERAL, CATEGORY, GROUPREF...: anything


def _class_chars(items: Any) -> set[str] | None:
    chars: set[str] = set()
    for op, arg in items:
        if op is sre_c.LITERAL:
            chars.add(chr(arg))
        elif op is sre_c.RANGE:
            low, high = arg
            if high - low >= _MAX_CLASS_CHARS:
                return None
            chars.update(chr(c) for c in range(low, high + 1))
        else:
            return None  # NEGATE, CATEGORY (\w, \d, \s)...: too many to list
        if len(chars) > _MAX_CLASS_CHARS:
            return None
    return chars
