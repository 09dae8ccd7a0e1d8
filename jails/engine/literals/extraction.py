"""Literal extraction: the strings that every match of a regex must contain.

This is analysis done when a filter compiles (for the prefilter and the matcher's
dispatch); nothing here runs per line.

`required_literals(pattern)` answers "which strings" by walking Python's own parse
tree of the regex (`re._parser`), so every construct Python understands is understood
here too. The result must be SOUND: a line that the regex can match always contains
one of the strings. When in doubt we lose information (fewer, shorter, or no
literals), never a match.

The analysis keeps, for every node of the tree, four facts about the texts it can
match (after Russ Cox's "Regular Expression Matching with a Trigram Index"):

* exact:    a small finite superset of all of them (None when too many or infinite);
* prefix:   every one of them starts with one of these strings;
* suffix:   every one of them ends with one of these strings;
* required: every one of them contains one of these strings.

For prefix/suffix/required the set {""} means "nothing known": every text starts
with, ends with and contains "". A set holding "" is therefore collapsed to {""}.

Case-insensitive patterns give folded literals (`folding.py`), to be searched in a
folded text. Also here: `analyse_all` (several sets a match needs together),
`required_prefixes`/`required_string` (the matcher's dispatch guards) and
`literal_cost` (what searching a set costs). The prefilter (`prefilter.py`) is built
on this module; this module does not know it.
"""

from __future__ import annotations

import functools
import re
import re._constants as sre_c
import re._parser as sre_p
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from .folding import _fold_char

# A literal set never holds more strings than this: each string costs one pass of
# str.find over the buffer, and cross products of alternations grow fast.
MAX_SET = 32
# A character class is enumerated as single-character strings only up to this size.
MAX_CLASS = 8
# Repeats are unrolled (for cross products) only up to this many copies of the body.
MAX_UNROLL = 3

# A parse tree sequence: (opcode, argument) pairs whose argument type depends on the opcode.
_Items = Sequence[tuple[Any, Any]]

NOTHING_KNOWN: frozenset[str] = frozenset({""})
ONLY_EMPTY: frozenset[str] = frozenset({""})


# --- literal sets -------------------------------------------------------------------


def _contains_min(strings: Iterable[str]) -> frozenset[str]:
    """Drop strings containing another member: "has a or ab" is just "has a"."""
    if isinstance(strings, frozenset):
        return _contains_min_of(strings)
    return _contains_min_of(frozenset(strings))


@functools.lru_cache(maxsize=1 << 16)
def _contains_min_of(strings: frozenset[str]) -> frozenset[str]:
    # (memoised: the analysis meets the same sets again and again, such as the
    # address part every failregex has)
    ordered = sorted(strings, key=len)
    if not ordered or ordered[0] == "":
        return NOTHING_KNOWN
    kept: list[str] = []
    for candidate in ordered:
        if not any(shorter in candidate for shorter in kept):
            kept.append(candidate)
    return frozenset(kept)


def _prefix_min(strings: Iterable[str]) -> frozenset[str]:
    """Drop strings extending another member: "starts with a or ab" is "starts with a"."""
    ordered = sorted(set(strings), key=len)
    if not ordered or ordered[0] == "":
        return NOTHING_KNOWN
    kept: list[str] = []
    for candidate in ordered:
        if not any(candidate.startswith(shorter) for shorter in kept):
            kept.append(candidate)
    return frozenset(kept)


def _suffix_min(strings: Iterable[str]) -> frozenset[str]:
    ordered = sorted(set(strings), key=len)
    if not ordered or ordered[0] == "":
        return NOTHING_KNOWN
    kept: list[str] = []
    for candidate in ordered:
        if not any(candidate.endswith(shorter) for shorter in kept):
            kept.append(candidate)
    return frozenset(kept)


def _cross(left: frozenset[str], right: frozenset[str]) -> frozenset[str] | None:
    """All concatenations, or None when there would be too many."""
    if len(left) * len(right) > MAX_SET:
        return None
    return frozenset(a + b for a in left for b in right)


def _char_probability(char: str) -> float:
    # Rough odds that a given position of a log line holds this character: log text
    # is mostly lower-case words, spaces and digits; punctuation and capitals rarer.
    if char == " ":
        return 0.15
    if char.islower():
        return 0.05
    if char.isdigit():
        return 0.05
    if char.isupper():
        return 0.02
    return 0.03


def literal_cost(literals: Iterable[str]) -> float:
    """Estimated cost per line of searching these strings: scans + false candidates.

    Each string costs one C-speed str.find pass over the buffer (the 1.0, about 60 ns
    per line), and each line it selects costs Python regex attempts (~15 us, some 250
    passes); a line offers ~90 positions. Lower is better; {""} is infinitely bad.
    """
    total = 0.0
    for literal in literals:
        total += _string_cost(literal)
    return total


@functools.lru_cache(maxsize=1 << 16)
def _string_cost(literal: str) -> float:
    if not literal:
        return float("inf")
    odds = 1.0
    for char in literal:
        odds *= _char_probability(char)
    return 1.0 + 2e4 * odds


def _best(*choices: frozenset[str] | None) -> frozenset[str]:
    best = NOTHING_KNOWN
    best_cost = float("inf")
    for choice in choices:
        if choice is None or len(choice) > MAX_SET:
            continue
        simplified = _contains_min(choice)
        cost = literal_cost(simplified)
        if cost < best_cost:
            best, best_cost = simplified, cost
    return best


# --- the analysis ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Facts:
    """What is known of the texts one node of the parse tree can match."""

    exact: frozenset[str] | None
    prefix: frozenset[str]
    suffix: frozenset[str]
    required: frozenset[str]


@functools.lru_cache(maxsize=1 << 14)
def _from_exact(exact: frozenset[str] | None) -> _Facts:
    if exact is None:
        return _UNKNOWN
    if len(exact) > MAX_SET:
        return _UNKNOWN
    return _Facts(exact, _prefix_min(exact), _suffix_min(exact), _best(exact))


# Matches something we cannot describe (any text, maybe empty).
_UNKNOWN = _Facts(None, NOTHING_KNOWN, NOTHING_KNOWN, NOTHING_KNOWN)
# Matches the empty text only (anchors, lookarounds, empty alternatives).
_EMPTY = _Facts(ONLY_EMPTY, NOTHING_KNOWN, NOTHING_KNOWN, NOTHING_KNOWN)


@functools.lru_cache(maxsize=1 << 14)
def _concat(left: _Facts, right: _Facts) -> _Facts:
    # (memoised: every failregex repeats the same parts, such as the address, whose
    # facts are equal from one parse tree to the next; _Facts hash their cached sets)
    exact = None
    if left.exact is not None and right.exact is not None:
        exact = _cross(left.exact, right.exact)
    prefix = left.prefix
    if left.exact is not None:
        # Every match starts with one of left's texts, followed by right's prefix.
        joined = _cross(left.exact, right.prefix)
        prefix = _prefix_min(joined if joined is not None else left.exact)
    suffix = right.suffix
    if right.exact is not None:
        joined = _cross(left.suffix, right.exact)
        suffix = _suffix_min(joined if joined is not None else right.exact)
    # A match is l + r: it contains left's last chars glued to right's first ones.
    seam = _cross(left.suffix, right.prefix)
    if exact is not None and len(exact) <= MAX_SET:
        return _Facts(exact, prefix, suffix, _best(exact, left.required, right.required, seam))
    required = _best(left.required, right.required, seam, prefix, suffix)
    return _Facts(exact, prefix, suffix, required)


def _merged(sets: Iterable[frozenset[str]]) -> frozenset[str]:
    union: set[str] = set()
    for one in sets:
        union |= one
    return frozenset(union)


def _union(branches: Sequence[_Facts]) -> _Facts:
    exact: set[str] | None = set()
    for branch in branches:
        if exact is None or branch.exact is None:
            exact = None
            break
        exact |= branch.exact
    if exact is not None and len(exact) <= MAX_SET:
        return _from_exact(frozenset(exact))

    prefix = _prefix_min(_merged(b.prefix for b in branches))
    suffix = _suffix_min(_merged(b.suffix for b in branches))
    required = _contains_min(_merged(b.required for b in branches))
    if len(prefix) > MAX_SET:
        prefix = NOTHING_KNOWN
    if len(suffix) > MAX_SET:
        suffix = NOTHING_KNOWN
    if len(required) > MAX_SET:
        required = NOTHING_KNOWN
    return _Facts(None, prefix, suffix, _best(required, prefix, suffix))


def _power(body: _Facts, count: int) -> _Facts:
    result = _EMPTY
    for _ in range(count):
        result = _concat(result, body)
    return result


def _repeat(low: int, high: int, body: _Facts) -> _Facts:
    if high == 0:
        return _EMPTY
    if low == 0:
        # The body may be skipped: only a finite enumeration survives (`(?:from )?`).
        if high <= MAX_UNROLL and body.exact is not None:
            return _union([_power(body, n) for n in range(high + 1)])
        return _UNKNOWN
    if low == high and low <= MAX_UNROLL:
        return _power(body, low)
    if high <= MAX_UNROLL and body.exact is not None:
        return _union([_power(body, n) for n in range(low, high + 1)])
    # At least min(low, MAX_UNROLL) copies come first, then more of them or not: the
    # head tells the prefix and required strings; the last copy tells the suffix.
    head = _power(body, min(low, MAX_UNROLL))
    joined = _concat(head, _UNKNOWN)
    required = _best(head.required, joined.prefix, body.suffix)
    return _Facts(None, joined.prefix, body.suffix, required)


class _Analyser:
    """Walks a parse tree, knowing whether literals must be case-folded."""

    def __init__(self, fold: bool) -> None:
        self.fold = fold

    def sequence(self, items: _Items, flags: int) -> _Facts:
        result = _EMPTY
        for op, arg in items:
            result = _concat(result, self.node(op, arg, flags))
        return result

    def node(self, op: Any, arg: Any, flags: int) -> _Facts:
        if op is sre_c.LITERAL:
            assert isinstance(arg, int)  # noqa: S101 - narrows the type: sre's LITERAL argument
            char = self.char(chr(arg), flags)
            return _UNKNOWN_CHAR if char is None else _from_exact(frozenset({char}))
        if op is sre_c.IN:
            assert isinstance(arg, list)  # noqa: S101 - narrows the type: sre's IN argument
            return self.char_class(arg, flags)
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
            low, high, body = arg
            return _repeat(low, high, self.sequence(body, flags))
        if op is sre_c.SUBPATTERN:
            _group, add_flags, del_flags, body = arg
            return self.sequence(body, (flags | add_flags) & ~del_flags)
        if op is sre_c.ATOMIC_GROUP:
            return self.sequence(arg, flags)
        if op is sre_c.BRANCH:
            _, branches = arg
            return _union([self.sequence(b, flags) for b in branches])
        if op is sre_c.GROUPREF_EXISTS:
            _group, yes, no = arg
            no_facts = _EMPTY if no is None else self.sequence(no, flags)
            return _union([self.sequence(yes, flags), no_facts])
        if op in (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT):
            # Anchors and lookarounds consume nothing: the text matched is "".
            return _EMPTY
        # ANY, NOT_LITERAL, GROUPREF and anything a later Python may add: unknown text.
        return _UNKNOWN

    def char(self, char: str, flags: int) -> str | None:
        """The character as it will appear in the searched text, None if unsure."""
        if not self.fold:
            return char
        if flags & re.IGNORECASE and not char.isascii():
            # Non-ASCII case equivalences are many; give up this position.
            return None
        return _fold_char(char)

    def char_class(self, items: _Items, flags: int) -> _Facts:
        chars: set[str] = set()
        for op, arg in items:
            if op is sre_c.LITERAL:
                assert isinstance(arg, int)  # noqa: S101 - narrows the type: sre's LITERAL argument
                chars.add(chr(arg))
            elif op is sre_c.RANGE:
                low, high = arg
                if high - low >= MAX_CLASS:
                    return _UNKNOWN_CHAR
                chars.update(chr(code) for code in range(low, high + 1))
            else:  # NEGATE, CATEGORY...: too many characters
                return _UNKNOWN_CHAR
        folded: set[str] = set()
        for char in chars:
            mapped = self.char(char, flags)
            if mapped is None:
                return _UNKNOWN_CHAR
            folded.add(mapped)
        if len(folded) > MAX_CLASS:
            return _UNKNOWN_CHAR
        return _from_exact(frozenset(folded))


# One character we cannot name: nothing known, but not the empty text either.
_UNKNOWN_CHAR = _UNKNOWN


def _uses_ignorecase(items: _Items) -> bool:
    for op, arg in items:
        if op is sre_c.SUBPATTERN:
            _group, add_flags, _del, body = arg
            if add_flags & re.IGNORECASE or _uses_ignorecase(body):
                return True
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
            if _uses_ignorecase(arg[2]):
                return True
        elif op is sre_c.ATOMIC_GROUP:
            if _uses_ignorecase(arg):
                return True
        elif op is sre_c.BRANCH:
            if any(_uses_ignorecase(b) for b in arg[1]):
                return True
        elif op is sre_c.GROUPREF_EXISTS:
            _group, yes, no = arg
            if _uses_ignorecase(yes) or (no is not None and _uses_ignorecase(no)):
                return True
    return False


# A set expected to select more lines than this is not worth the scans: any single
# character costs more (a lone "." or "a" is in most lines), two letters cost ~50.
MAX_USEFUL_COST = 400.0


@dataclass(frozen=True, slots=True)
class LiteralSet:
    """`required_literals` with its folding: `folded` strings are lower-cased."""

    strings: frozenset[str]
    folded: bool


def analyse(pattern: str, flags: int = 0) -> LiteralSet | None:
    """Like `required_literals`, and says whether the strings are case-folded."""
    try:
        tree = sre_p.parse(pattern, flags)
    except re.error:
        return None
    items = list(tree.data)
    all_flags = tree.state.flags | flags
    fold = bool(all_flags & re.IGNORECASE) or _uses_ignorecase(items)
    facts = _Analyser(fold).sequence(items, all_flags)
    if facts.required == NOTHING_KNOWN or literal_cost(facts.required) > MAX_USEFUL_COST:
        return None
    return LiteralSet(facts.required, fold)


# At most this many literal sets are required together (see `analyse_all`).
MAX_CLAUSES = 4


def analyse_all(pattern: str, flags: int = 0) -> list[LiteralSet]:
    """Several literal sets, ALL of which every match contains (see _analyse_all).
    Memoised: the prefilter and the matcher's dispatch ask about the same regexes."""
    return list(_analyse_all(pattern, flags))


@functools.lru_cache(maxsize=1024)
def _analyse_all(pattern: str, flags: int) -> tuple[LiteralSet, ...]:
    """Several literal sets, ALL of which every match contains (one string of each).

    The first is `analyse`'s set; the others come from the parts the pattern is a
    sequence of. Why this is sound: a match of a sequence is the concatenation of a
    match of each item, so it contains whatever each item's match must contain; a
    group's text is a match of its body, and a repeat of at least one copy contains a
    match of its body. Sets no better than MAX_USEFUL_COST, or implied by a kept
    one (each of its strings contains a string of the kept set... the other way:
    every string of the kept set contains one of its strings), are dropped.
    Empty when the pattern has no useful set at all.
    """
    try:
        tree = sre_p.parse(pattern, flags)
    except re.error:
        return ()
    items = list(tree.data)
    all_flags = tree.state.flags | flags
    fold = bool(all_flags & re.IGNORECASE) or _uses_ignorecase(items)
    analyser = _MemoAnalyser(fold)
    found: list[frozenset[str]] = []
    _collect_required(analyser, items, all_flags, found, 0)
    useful = [s for s in found if s != NOTHING_KNOWN and len(s) <= MAX_SET and literal_cost(s) <= MAX_USEFUL_COST]
    if not useful:
        return ()
    first, rest = useful[0], sorted(set(useful[1:]), key=lambda s: (literal_cost(s), sorted(s)))
    kept: list[frozenset[str]] = [first]
    for candidate in rest:
        if len(kept) >= MAX_CLAUSES:
            break
        # candidate is implied by a kept set K when every string of K contains one of
        # candidate's strings: a line holding K's string holds candidate's too.
        if any(all(any(c in k for c in candidate) for k in known) for known in kept):
            continue
        # nor when it is the same text seen through another window (' "GET', '"GET ')
        if any(all(_overlapping(c, known) for c in candidate) for known in kept):
            continue
        kept.append(candidate)
    return tuple(LiteralSet(strings, fold) for strings in kept)


class _MemoAnalyser(_Analyser):
    """An analyser that remembers the facts of each node of one parse tree: the
    sets of `analyse_all` look at the same sub-trees many times."""

    def __init__(self, fold: bool) -> None:
        super().__init__(fold)
        self._memo: dict[tuple[int, int], tuple[Any, _Facts]] = {}

    def node(self, op: Any, arg: Any, flags: int) -> _Facts:
        key = (id(arg), flags)
        known = self._memo.get(key)
        if known is not None and known[0] is arg:
            return known[1]
        facts = super().node(op, arg, flags)
        if isinstance(arg, (list, tuple)) or hasattr(arg, "data"):
            self._memo[key] = (arg, facts)  # (arg kept: its id stays unique while memoised)
        return facts


def _overlapping(string: str, known: frozenset[str]) -> bool:
    """Whether the string shares all but one of its characters with one of `known`."""
    need = max(1, min(len(string) - 1, 3))
    return any(len(_longest_common_substring(string, other)) >= need for other in known)


def _longest_common_substring(first: str, second: str) -> str:
    found = SequenceMatcher(None, first, second, autojunk=False).find_longest_match()
    return first[found.a : found.a + found.size]


def _collect_required(analyser: _Analyser, items: _Items, flags: int, out: list[frozenset[str]], depth: int) -> None:
    out.append(analyser.sequence(items, flags).required)
    if depth > 20:
        return
    # contiguous runs of two and three items: their text is a substring of the match
    # too, and a run knows more than its items (a month name followed by a space)
    for width in (2, 3):
        for start in range(len(items) - width + 1):
            out.append(analyser.sequence(items[start : start + width], flags).required)
    for op, arg in items:
        if op is sre_c.SUBPATTERN:
            _group, add_flags, del_flags, body = arg
            _collect_required(analyser, body, (flags | add_flags) & ~del_flags, out, depth + 1)
        elif op is sre_c.ATOMIC_GROUP:
            _collect_required(analyser, arg, flags, out, depth + 1)
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT) and arg[0] >= 1:
            _collect_required(analyser, arg[2], flags, out, depth + 1)
        else:
            out.append(analyser.node(op, arg, flags).required)


def required_prefixes(pattern: str, flags: int = 0) -> tuple[str, ...] | None:
    """Strings one of which every text the pattern matches starts with, for a pattern
    anchored at the start of the text (`^` without MULTILINE, or `\\A`).

    `search` can then only match at position 0, so a text that starts with none of
    them cannot match: `text.startswith(prefixes)` (a few tens of nanoseconds) rules
    out a regex call. None when the pattern is not anchored, folds case, or no prefix
    longer than one character is known (first-character dispatch does that much).
    """
    try:
        tree = sre_p.parse(pattern, flags)
    except re.error:
        return None
    items = list(tree.data)
    all_flags = tree.state.flags | flags
    if all_flags & (re.IGNORECASE | re.MULTILINE) or _uses_ignorecase(items):
        return None
    if not items or items[0] not in ((sre_c.AT, sre_c.AT_BEGINNING), (sre_c.AT, sre_c.AT_BEGINNING_STRING)):
        return None
    # the prefix stops growing once the text matched so far is no longer a known
    # finite set: the rest of the pattern (the costly address part...) is not walked
    analyser = _Analyser(False)
    facts = _EMPTY
    for op, arg in items[1:]:
        facts = _concat(facts, analyser.node(op, arg, all_flags))
        if facts.exact is None:
            break
    prefix = facts.prefix
    if prefix == NOTHING_KNOWN or len(prefix) > MAX_SET or min(len(p) for p in prefix) < 2:
        return None
    return tuple(sorted(prefix))


def required_string(pattern: str, flags: int = 0, prefixes: tuple[str, ...] | None = None) -> str | None:
    """One string that every match of the pattern contains and that `prefixes` (see
    `required_prefixes`) do not already promise, or None.

    A text without it cannot match: `string in text` (a few tens of nanoseconds)
    rules out a regex call. Only single-string sets of `analyse_all` qualify, the
    most selective first; case-folded ones do not (the text would need folding).
    """
    for found in analyse_all(pattern, flags):
        if found.folded or len(found.strings) != 1:
            continue
        (string,) = found.strings
        if prefixes is not None and all(string in prefix for prefix in prefixes):
            continue  # a text starting with a prefix holds it already
        return string
    return None


def required_literals(pattern: str, flags: int = 0) -> frozenset[str] | None:
    """Strings such that every text `pattern` can match contains one of them.

    None when no useful set exists (`.*`, single characters, too many alternatives)
    or the pattern does not parse. For a case-insensitive pattern the strings are
    lower-cased (`fold_text`) and must be searched in a folded text.
    """
    found = analyse(pattern, flags)
    return None if found is None else found.strings
