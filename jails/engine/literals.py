"""Which log lines can possibly match a filter: the literal prefilter.

Most lines of a real log match none of a filter's regexes. Running every regex on
every line from Python is what makes fail2ban slow, so before any regex runs we ask a
cheaper question of the whole buffer at C speed (`str.find`): which lines contain at
least one string that every match must contain?

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

Case-insensitive patterns are handled by folding: the pattern's literals and the
buffer are both lower-cased (plus the three characters that Python's `re` matches to
an ASCII letter under IGNORECASE although `str.lower` does not map them there), and
the folded literals are searched in the folded buffer.
"""

from __future__ import annotations

import functools
import re
import re._constants as sre_c
import re._parser as sre_p
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from . import litscan

__all__ = [
    "ANYWHERE",
    "LINE_BEGIN",
    "NO_CUT",
    "DateCut",
    "Prefilter",
    "analyse_all",
    "cut_safe_pieces",
    "date_cut_for",
    "fold_text",
    "required_literals",
]

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


# --- case folding -----------------------------------------------------------------

# Characters that `re` under IGNORECASE matches to an ASCII letter although their
# lower-case form is not that letter (checked over all code points by the tests).
# 'İ' (U+0130) lowers to two characters, so it is mapped before lowering to keep
# buffer offsets aligned; the others are mapped after lowering.
_FOLD_BEFORE_LOWER = {"\u0130": "i"}
_FOLD_AFTER_LOWER = {"\u0131": "i", "\u017f": "s"}


def fold_text(text: str) -> str | None:
    """Lower-case `text` the way the folded literals were, keeping every offset.

    Returns None when the folding would change the length (some exotic character
    lowers to several): the caller must then treat every line as a candidate.
    """
    if text.isascii():
        return text.lower()
    for char, repl in _FOLD_BEFORE_LOWER.items():
        if char in text:
            text = text.replace(char, repl)
    folded = text.lower()
    if len(folded) != len(text):
        return None
    for char, repl in _FOLD_AFTER_LOWER.items():
        if char in folded:
            folded = folded.replace(char, repl)
    return folded


def _fold_char(char: str) -> str | None:
    folded = fold_text(char)
    return folded if folded is not None and len(folded) == 1 else None


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
            assert isinstance(arg, int)
            char = self.char(chr(arg), flags)
            return _UNKNOWN_CHAR if char is None else _from_exact(frozenset({char}))
        if op is sre_c.IN:
            assert isinstance(arg, list)
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
                assert isinstance(arg, int)
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


# --- the prefilter ------------------------------------------------------------------


# Two literals sharing a substring at least this long are searched as that substring.
MIN_MERGE = 8


def _fewer_passes(strings: set[str]) -> frozenset[str]:
    """The literals, with groups sharing a long substring replaced by that substring.

    Each literal costs a pass over the buffer; "Connection closed" and "Connection
    reset" cost one pass as "Connection ". A substring of a literal is present
    wherever the literal is, so this stays sound; only selectivity can drop, which a
    long shared substring barely does.
    """
    if not strings:
        return frozenset()
    current = set(_contains_min(strings))
    while True:
        best = ""
        ordered = sorted(current)
        for index, first in enumerate(ordered):
            for second in ordered[index + 1 :]:
                shared = _longest_common_substring(first, second)
                if len(shared) > len(best):
                    best = shared
        if len(best) < MIN_MERGE:
            return frozenset(current)
        current = set(_contains_min(current | {best}))


def _longest_common_substring(first: str, second: str) -> str:
    found = SequenceMatcher(None, first, second, autojunk=False).find_longest_match()
    return first[found.a : found.a + found.size]


@dataclass(frozen=True, slots=True)
class DateCut:
    """Where the matcher may cut a date out of a line, as far as literals care.

    The matcher removes the date D from a raw line P+D+S and matches P+S, so a
    literal can straddle the seam: found in P+S but absent from the raw line.
    `max_before`: the longest P possible (None: any length, 0: no cut or the date
    always starts the line). `nonword_before`: P holds only non-word characters.
    """

    max_before: int | None = None
    nonword_before: bool = False


# No date is cut (journal lines), or it always starts the line.
NO_CUT = DateCut(max_before=0)
# fail2ban's {^LN-BEG}: the date follows at most two non-word characters.
LINE_BEGIN = DateCut(max_before=2, nonword_before=True)
# A date may be found anywhere in the line (default templates, custom patterns).
ANYWHERE = DateCut()

_NONWORD = re.compile(r"\W+")


def date_cut_for(datepattern: str | None, journal: bool = False) -> DateCut:
    """The DateCut a filter's datepattern allows (ANYWHERE when unsure)."""
    if journal:
        return NO_CUT
    lines = [line.strip() for line in (datepattern or "").splitlines() if line.strip()]
    if lines and all(line.upper() == "{NONE}" for line in lines):
        return NO_CUT
    if [line.upper() for line in lines] == ["{^LN-BEG}"]:
        # Only the built-in templates anchored at the line start: dates/ lets at most
        # two non-word characters precede them. A custom `{^LN-BEG}...` pattern may
        # put any text before its date group, so it gets no such promise.
        return LINE_BEGIN
    return ANYWHERE


def _seams(literal: str, cut: DateCut) -> list[int]:
    """Split points k at which the literal could straddle a cut: P ends with literal[:k]."""
    last = len(literal) - 1
    if cut.max_before is not None:
        last = min(last, cut.max_before)
    return [k for k in range(1, last + 1) if not cut.nonword_before or _NONWORD.fullmatch(literal, 0, k) is not None]


def cut_safe_pieces(literal: str, cut: DateCut) -> tuple[str, ...]:
    """Pieces of the literal, one of which a raw line holds whenever its cut text holds it.

    Why this is sound: the literal either lies inside P or inside S (then the raw line
    holds it whole) or straddles the seam as L[:k] | L[k:] with k a seam. Searching
    L[:a] and L[b:] covers every seam k with k >= a (the raw P ends with L[:k], which
    starts with L[:a]) or k <= b (the raw S starts with L[k:], which ends with L[b:]).
    So any a, b with no seam strictly between b and a will do; we take the most
    selective. A literal that cannot straddle (no seam) stays whole.
    """
    seams = _seams(literal, cut)
    if not seams:
        return (literal,)
    choices: list[tuple[str, ...]] = [(literal[: seams[0]],), (literal[seams[-1] :],)]
    for low, high in zip(seams, seams[1:], strict=False):
        choices.append((literal[:high], literal[low:]))
    return min(choices, key=literal_cost)


def _line_piece(literal: str) -> str:
    """The most selective newline-free piece of a literal.

    A multi-line buffer is searched line by line; a literal holding "\\n" shows up
    piecewise on consecutive lines, each piece inside one line.
    """
    pieces = [p for p in literal.split("\n") if p]
    if not pieces:
        return ""
    return min(pieces, key=lambda piece: literal_cost((piece,)))


class Prefilter:
    """Finds the lines of a buffer that contain at least one required literal.

    Each searched string also knows which patterns it stands for (a bit per pattern,
    in `build` order), so `candidate_masks` can tell the matcher which regexes are
    worth trying on a line: a pattern none of whose strings is in the line cannot
    match it.
    """

    __slots__ = ("exact", "folded", "pattern_count", "checks", "checked")

    def __init__(
        self,
        exact: Mapping[str, int],
        folded: Mapping[str, int],
        pattern_count: int,
        checks: Sequence[Sequence[tuple[tuple[str, ...], bool]]] | None = None,
    ) -> None:
        self.exact = dict(exact)  # string -> pattern bits, searched in the buffer as is
        self.folded = dict(folded)  # lower-cased, searched in fold_text(buffer)
        self.pattern_count = pattern_count
        # checks[i]: further clauses pattern i requires, each (pieces, folded): a
        # candidate line of pattern i must also hold one piece of every clause
        self.checks: list[tuple[tuple[tuple[str, ...], bool], ...]] = [
            tuple(c) for c in (checks or [()] * pattern_count)
        ]
        self.checked = sum(1 << i for i, c in enumerate(self.checks) if c)

    @classmethod
    def build(
        cls,
        patterns: Sequence[str],
        flags: int = 0,
        *,
        date_cut: DateCut = ANYWHERE,
        sample: str | None = None,
        single_line: bool = False,
    ) -> Prefilter | None:
        """A prefilter for a filter's regexes, or None if one pattern has no set.

        Give it the (translated) regexes that decide whether a line needs
        Python-level work: the failregexes (a line matching none of them cannot
        fail), plus the ignoreregexes when the caller must also see ignored lines.
        `date_cut` says where the matcher may cut a date out of the line before
        matching (see `date_cut_for`): literals that could straddle such a cut are
        searched as pieces (`cut_safe_pieces`). NO_CUT when the regexes see the raw
        line. Pass the same `flags` the patterns are compiled with.

        A pattern may require several literal sets at once (`analyse_all`, each a
        clause): the most selective one is searched in the buffer, the others are
        checked on the lines it selects (`in` on one line), so a line is a candidate
        for the pattern only when it holds a piece of every clause. Only with
        `single_line` (each regex runs on one line: maxlines 1), since the clauses of a
        multi-line match may lie on different lines. `sample` (some lines of the log)
        lets the selectivity of clauses be measured, not guessed.
        """
        if not patterns:
            return None
        exact: list[set[str]] = []  # per pattern: the pieces of its searched clause
        folded: list[set[str]] = []
        checks: list[list[tuple[tuple[str, ...], bool]]] = []
        all_clauses: list[list[tuple[set[str], bool]]] = []
        for pattern in patterns:
            clauses: list[tuple[set[str], bool]] = []
            sets = analyse_all(pattern, flags)
            if not single_line:
                sets = sets[:1]  # `analyse`'s own set, alone
            for found in sets:
                pieces: set[str] = set()
                for literal in found.strings:
                    pieces.update(cut_safe_pieces(_line_piece(literal), date_cut))
                if "" not in pieces and pieces:
                    clauses.append((pieces, found.folded))
            if not clauses:
                return None
            all_clauses.append(clauses)
        # a piece several patterns may search costs them one pass between them
        shared: dict[tuple[str, bool], int] = {}
        for clauses in all_clauses:
            for piece in {(piece, f) for pieces, f in clauses for piece in pieces}:
                shared[piece] = shared.get(piece, 0) + 1
        for clauses in all_clauses:
            clauses.sort(key=lambda c: (literal_cost(c[0]), sorted(c[0])))
            if sample is not None and len(clauses) > 1:
                # estimates can be far off (HTTP logs: "GET" on every line): the
                # clause that selects the fewest sample lines is the one to search
                # (a pass over the buffer costs about what 1/250 false candidate does)
                passes = (sample.count("\n") + 1) / 250
                clauses.sort(
                    key=lambda c: _sample_hits(sample, c[0], c[1]) + passes * sum(1 / shared[p, c[1]] for p in c[0])
                )
        probe = _SampleLines(sample) if sample is not None else None
        if probe is not None and single_line:
            _share_passes(probe, all_clauses)
        for clauses in all_clauses:
            extras = [c for c in clauses[1:] if literal_cost(c[0]) <= MAX_USEFUL_COST]
            if probe is not None and len(clauses) > 1:
                # a further clause is kept only if it rejects sample lines
                extras = _rejecting_clauses(probe, clauses[0], clauses[1:])
            pieces, is_folded = clauses[0]
            exact.append(set() if is_folded else pieces)
            folded.append(pieces if is_folded else set())
            checks.append([(tuple(sorted(c, key=lambda x: (-len(x), x))), f) for c, f in extras])
        prefilter = cls(_searched_strings(exact), _searched_strings(folded), len(patterns), checks)
        if sample is not None and prefilter.checked:
            prefilter = prefilter._without_idle_checks(sample)
        if literal_cost(prefilter.literals) > MAX_USEFUL_COST * 4:
            return None
        return prefilter

    @property
    def literals(self) -> frozenset[str]:
        return frozenset(self.exact) | frozenset(self.folded)

    def candidate_offsets(self, buffer: str) -> list[int]:
        """Sorted start offsets of the lines ("\n"-terminated) holding a literal
        (of every clause of some pattern)."""
        if self.checked or (not self.folded and litscan.usable(self.exact)):
            return [start for start, _ in self.candidate_masks(buffer)]
        starts: set[int] = set()
        _scan(buffer, self.exact, starts)
        if self.folded:
            folded = fold_text(buffer)
            if folded is None:
                return _all_line_starts(buffer)
            _scan(folded, self.folded, starts)
        return sorted(starts)

    def candidate_masks(self, buffer: str) -> list[tuple[int, int]]:
        """(line start, bits of the patterns that may match that line), by offset.

        Bit i stands for patterns[i] of `build`: only those regexes need trying.
        """
        if not self.folded:
            native = litscan.scan_masks(buffer, self.exact)  # one pass in C, when built
            if native is not None:
                return self._checked_masks(buffer, dict(native)) if self.checked else native
        masks: dict[int, int] = {}
        _scan_masks(buffer, self.exact, masks)
        if self.folded:
            folded = fold_text(buffer)
            if folded is None:
                every = (1 << self.pattern_count) - 1
                return [(start, every) for start in _all_line_starts(buffer)]
            _scan_masks(folded, self.folded, masks)
        if not self.checked:
            return sorted(masks.items())
        return self._checked_masks(buffer, masks)

    def _checked_masks(self, buffer: str, masks: dict[int, int]) -> list[tuple[int, int]]:
        """Drop the pattern bits whose further clauses a line does not satisfy."""
        checked, checks, find = self.checked, self.checks, buffer.find
        kept: list[tuple[int, int]] = []
        for start, bits in sorted(masks.items()):
            todo = bits & checked
            if todo:
                line = buffer[start : find("\n", start)]
                low: str | None = None
                while todo:
                    bit = todo & -todo
                    todo ^= bit
                    for pieces, is_folded in checks[bit.bit_length() - 1]:
                        text = line
                        if is_folded:
                            if low is None:
                                low = fold_text(line) or ""
                            if not low and line:
                                continue  # cannot fold with offsets kept: assume present
                            text = low
                        if not any(piece in text for piece in pieces):
                            bits ^= bit
                            break
                if not bits:
                    continue
            kept.append((start, bits))
        return kept

    def _without_idle_checks(self, sample: str) -> Prefilter:
        """This prefilter without the checks that rarely take a line out of the
        candidates (on the sample: for fewer than a tenth of the lines they look at).

        A check clears a pattern's bit; the line stays a candidate while another bit
        is left (sshd: "Received disconnect" lines are candidates of two patterns, a
        check of "Auth fail" only clears one). Clearing a bit saves one regex call at
        most, which the matcher's own dispatch mostly avoids anyway; looking at the
        line costs about a microsecond. Dropping a check never loses a line: the
        candidates only grow."""
        folded_sample = fold_text(sample) or sample.lower()
        lines, low = sample.split("\n"), folded_sample.split("\n")
        if len(lines) != len(low):
            return self
        masks: dict[int, int] = {}
        _scan_masks(sample, self.exact, masks)
        if self.folded:
            _scan_masks(folded_sample, self.folded, masks)
        starts = sorted(masks)
        kept = dict(self._checked_masks(sample, masks))
        looked = [0] * self.pattern_count
        removed = [0] * self.pattern_count
        for start in starts:
            bits, left = masks[start], kept.get(start, 0)
            for index in range(self.pattern_count):
                bit = 1 << index
                if bits & bit & self.checked:
                    looked[index] += 1
                    if not left:
                        removed[index] += 1
        checks = [c if removed[i] * 10 >= looked[i] else () for i, c in enumerate(self.checks)]
        return Prefilter(self.exact, self.folded, self.pattern_count, checks)

    def __repr__(self) -> str:
        return f"Prefilter(exact={sorted(self.exact)!r}, folded={sorted(self.folded)!r})"


# What the scan of a buffer costs, in units of one candidate line (a line that goes
# through the matcher, ~8 us): a str.find pass costs about 10 ns per line plus 250 ns
# divided by the string's length (longer strings let the search skip further), and
# each line a searched string hits about 0.6 us (finding its start and end, its mask).
_PASS_NS_PER_LINE = 10.0
_PASS_NS_PER_LINE_CHAR = 250.0
_CANDIDATE_NS = 8000.0
_HIT_COST = 0.075


def _share_passes(probe: _SampleLines, all_clauses: list[list[tuple[set[str], bool]]]) -> None:
    """Choose which clause of each pattern is searched (moved to the front of its
    list) so that patterns share passes over the buffer.

    Which lines end up as candidates hardly depends on that choice: the clauses not
    searched are checked on the lines found (when they reject lines), so a line stays
    a candidate of a pattern only if it holds a piece of each clause either way. What
    the choice changes is the scan: one str.find pass per distinct string, and the
    lines those strings hit. Four patterns of sshd that all need "not allowed
    because" cost one pass for it, not a pass each for "Den", "Gro", "Aut"...
    Greedy: starting from each pattern's own best clause, switch a pattern to another
    clause while that lowers the estimated cost of the whole scan.
    """
    if probe.low is None or len(all_clauses) < 2:
        return
    lines_of = probe.lines_of
    per_pass = len(probe.lines) / _CANDIDATE_NS

    def cost(choice: list[int]) -> float:
        total = 0.0
        seen = 0
        for is_folded in (False, True):
            pieces = {
                p
                for clauses, c in zip(all_clauses, choice, strict=True)
                if clauses[c][1] == is_folded
                for p in clauses[c][0]
            }
            for piece in _contains_min(pieces) if pieces else ():  # (a piece holding another: no pass of its own)
                total += per_pass * (_PASS_NS_PER_LINE + _PASS_NS_PER_LINE_CHAR / len(piece))
                seen |= lines_of(piece, is_folded)
        return total + _HIT_COST * seen.bit_count()

    def best_without(choice: list[int], piece: tuple[str, bool]) -> list[int] | None:
        """Every pattern searching `piece` switched to its best clause without it."""
        trial = list(choice)
        for index, clauses in enumerate(all_clauses):
            pieces, is_folded = clauses[trial[index]]
            if (piece[0] in pieces and is_folded == piece[1]) is False:
                continue
            others = [c for c, (ps, f) in enumerate(clauses) if not (piece[0] in ps and f == piece[1])]
            if not others:
                return None
            trial[index] = min(others, key=lambda c: cost(trial[:index] + [c] + trial[index + 1 :]))
        return trial

    choice = [0] * len(all_clauses)
    best = cost(choice)
    for _round in range(3):
        improved = False
        # one pattern at a time onto another clause...
        for index, clauses in enumerate(all_clauses):
            for other in range(len(clauses)):
                if other == choice[index]:
                    continue
                trial = choice[:index] + [other] + choice[index + 1 :]
                trial_cost = cost(trial)
                if trial_cost < best - 1e-9:
                    choice, best, improved = trial, trial_cost, True
        # ...and every pattern searching a string off it at once (a pass saved only then)
        searched = {(p, clauses[c][1]) for clauses, c in zip(all_clauses, choice, strict=True) for p in clauses[c][0]}
        for piece in sorted(searched):
            moved = best_without(choice, piece)
            if moved is not None and cost(moved) < best - 1e-9:
                choice, best, improved = moved, cost(moved), True
        if not improved:
            break
    for clauses, c in zip(all_clauses, choice, strict=True):
        if c:
            clauses.insert(0, clauses.pop(c))


def _rejecting_clauses(
    probe: _SampleLines, primary: tuple[set[str], bool], others: list[tuple[set[str], bool]]
) -> list[tuple[set[str], bool]]:
    """The clauses worth checking on the lines the primary one selects: each must
    reject at least a tenth of the sample lines still selected before it."""
    selected = probe.lines_with(primary)
    if not selected:
        return []  # no evidence: a check would only cost
    kept: list[tuple[set[str], bool]] = []
    for clause in sorted(others, key=lambda c: (selected & probe.lines_with(c)).bit_count()):
        remaining = selected & probe.lines_with(clause)
        if selected.bit_count() - remaining.bit_count() >= max(1, selected.bit_count() // 10):
            kept.append(clause)
            selected = remaining
            if not selected:
                break
    return kept


class _SampleLines:
    """Some lines of the log, to measure which lines a clause selects (bit n: line n)."""

    def __init__(self, sample: str) -> None:
        self.lines = sample.split("\n")
        low = (fold_text(sample) or sample.lower()).split("\n")
        self.low = low if len(low) == len(self.lines) else None
        self._found: dict[tuple[str, bool], int] = {}

    def lines_of(self, piece: str, is_folded: bool) -> int:
        """The lines holding `piece` (searched in the folded lines if `is_folded`)."""
        key = (piece, is_folded)
        found = self._found.get(key)
        if found is None:
            texts = self.low if is_folded and self.low is not None else self.lines
            found = sum(1 << n for n, text in enumerate(texts) if piece in text)
            self._found[key] = found
        return found

    def lines_with(self, clause: tuple[set[str], bool]) -> int:
        """The lines holding a piece of the clause."""
        found = 0
        for piece in clause[0]:
            found |= self.lines_of(piece, clause[1])
        return found


def _sample_hits(sample: str, pieces: set[str], is_folded: bool) -> int:
    """Lines of the sample holding a piece (a piece hitting twice in a line counts twice)."""
    text = (fold_text(sample) or sample.lower()) if is_folded else sample
    return sum(text.count(piece) for piece in pieces)


def _searched_strings(pieces_by_pattern: list[set[str]]) -> dict[str, int]:
    """The strings to search, each with the bits of the patterns it stands for.

    `_fewer_passes` only ever replaces a piece by a substring of it, so every piece
    of a pattern contains at least one searched string: a line holding the piece
    holds that string, whose bits include the pattern.
    """
    every_piece: set[str] = set().union(*pieces_by_pattern)
    searched = _fewer_passes(every_piece)
    bits: dict[str, int] = {}
    for string in searched:
        mask = 0
        for index, pieces in enumerate(pieces_by_pattern):
            if any(string in piece for piece in pieces):
                mask |= 1 << index
        bits[string] = mask
    return bits


def _scan(buffer: str, literals: Iterable[str], starts: set[int]) -> None:
    # One str.find pass per literal: C speed over lines that hold none of them.
    # After a hit we jump to the next line: one Python iteration per matching line.
    find, rfind, add = buffer.find, buffer.rfind, starts.add
    for literal in literals:
        position = find(literal)
        while position >= 0:
            line_start = rfind("\n", 0, position) + 1
            add(line_start)
            line_end = find("\n", position)
            if line_end < 0:
                break
            position = find(literal, line_end + 1)


def _scan_masks(buffer: str, literals: Mapping[str, int], masks: dict[int, int]) -> None:
    # Same walk as _scan, OR-ing the literal's pattern bits into its line's mask.
    find, rfind, get = buffer.find, buffer.rfind, masks.get
    for literal, bits in literals.items():
        position = find(literal)
        while position >= 0:
            line_start = rfind("\n", 0, position) + 1
            masks[line_start] = get(line_start, 0) | bits
            line_end = find("\n", position)
            if line_end < 0:
                break
            position = find(literal, line_end + 1)


def _all_line_starts(buffer: str) -> list[int]:
    if not buffer:
        return []
    starts = [0]
    starts.extend(m.end() for m in re.finditer("\n", buffer))
    if starts[-1] == len(buffer):
        starts.pop()  # the buffer ends with "\n": no line starts after it
    return starts
