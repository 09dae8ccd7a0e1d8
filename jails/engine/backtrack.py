"""Finding regexes that can backtrack catastrophically (exponential time on a crafted line).

CPython's `re` is a backtracking matcher: when a match fails it tries every other way the regex
could have matched the text read so far. A regex has exponential worst cases exactly when some
loop of it can read the same text in two different ways and come back to where it started: a
line of n such pieces then has 2^n ways to be read, and a line that ends in a way the regex
refuses makes the matcher try them all. `(a+)+`, `(a|aa)+`, `(x+x+)+y` and `(([a-z])+.)+` are
that shape; `(?:\\w+\\.)+` is not (each copy ends at a dot the words cannot contain).

That is decided, not guessed (Weideman et al., "Analyzing matching time behavior of backtracking
regular expression matchers by using ambiguity of NFA", 2016; Allauzen, Mohri and Rastogi's
test for exponential ambiguity), on Python's own parse tree (`re._parser`) of the regex as the
engine compiles it (fail2ban's tags expanded by `regex.translate`):

1. The tree becomes a position automaton (Glushkov's construction: one state per character a
   path can read) that keeps count of the distinct ways the backtracking matcher can get from one
   position to the next: `(a+)+` has one position but two ways from it to itself (the inner loop,
   or leaving it and starting the outer loop again). An iteration that reads nothing ends the
   repeat, as in `re`. Bounded repeats up to `EXPAND_UP_TO` copies are written out; longer ones
   count as loops.
2. Within each loop of that automaton (a strongly connected component), the pairs of positions
   reading the same character form a second graph. Exponential ambiguity exists if and only if one
   of its components holds a pair (p, p) together with a pair (p', q') with p' != q', or two
   distinct ways between two of its pairs (p, p) and (q, q): then position p has two different
   cycles that read the same text.

Everything is polynomial in the size of the loops (pairs of positions of one loop), so a pasted
regex of any length is checked quickly. Atomic groups and possessive repeats never backtrack into
themselves: they count as one position in the regex around them, and their inside is checked on
its own. Lookarounds, anchors and backreferences read nothing (a backreference counts as any one
character).
"""

from __future__ import annotations

import re
import re._constants as sre_c
import re._parser as sre_p
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Backtracking", "find_backtracking"]

# A bounded repeat of at most this many copies is written out; a longer one is checked as a loop.
EXPAND_UP_TO = 10
# Past this many positions in one regex, or in one loop, the exact check gives way to a simpler,
# still conservative one (regex_shape_heuristic): bounds the time a huge pasted regex can cost.
MAX_POSITIONS = 20_000
MAX_LOOP_POSITIONS = 400
MAX_PAIR_STEPS = 400_000  # pairs of transitions looked at in one loop
# Ways are counted up to this many: two are enough to be ambiguous.
MANY_WAYS = 2

_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT)
_ALL_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT)
_ZERO_WIDTH = (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT)
_CHARACTER = (sre_c.LITERAL, sre_c.NOT_LITERAL, sre_c.ANY, sre_c.IN, sre_c.GROUPREF)

# The characters classes are compared on: ASCII, Latin-1, and one of each kind of other character
# \w, \d and \s treat specially in Python's Unicode regexes.
_ALPHABET = [chr(code) for code in range(256)] + ["\u0100", "\u0663", "\u2028", "\u3000", "\u4e2d", "\uffff"]
_INDEX = {char: index for index, char in enumerate(_ALPHABET)}
_EVERYTHING = (1 << len(_ALPHABET)) - 1
_NEWLINE = 1 << _INDEX["\n"]
_CATEGORIES = {
    sre_c.CATEGORY_DIGIT: r"\d", sre_c.CATEGORY_NOT_DIGIT: r"\D",
    sre_c.CATEGORY_SPACE: r"\s", sre_c.CATEGORY_NOT_SPACE: r"\S",
    sre_c.CATEGORY_WORD: r"\w", sre_c.CATEGORY_NOT_WORD: r"\W",
}

# What each shape is called, for the admin reading the refusal.
NESTED = "nested quantifier"
OVERLAPPING_ALTERNATION = "alternation with overlapping branches under a repeat"
OVERLAPPING_ADJACENT = "overlapping adjacent quantifiers inside a repeat"
AMBIGUOUS_BODY = "repeated group whose body can match the same text in several ways"

EXPLANATIONS = {
    NESTED: "the inner repeat and the outer one can share the same characters in exponentially many ways",
    OVERLAPPING_ALTERNATION: "two branches can read the same text, so each copy can be read two ways",
    OVERLAPPING_ADJACENT: "the same characters can be split between the two quantifiers in many ways, "
                          "again in every copy",
    AMBIGUOUS_BODY: "the same text can be cut into copies in exponentially many ways",
}


@dataclass(frozen=True)
class Backtracking:
    """One loop of a regex that can take exponential time: what it is and what it looks like."""

    kind: str  # one of NESTED, OVERLAPPING_ALTERNATION, OVERLAPPING_ADJACENT, AMBIGUOUS_BODY
    shape: str  # the repeat, written back as a regex (tags expanded)

    @property
    def explanation(self) -> str:
        return EXPLANATIONS[self.kind]


class _TooLarge(Exception):
    pass


def find_backtracking(source: str, flags: int = 0) -> list[Backtracking]:
    """The loops of a Python regex (tags already expanded) that can backtrack exponentially.

    Raises re.error when the regex does not parse.
    """
    tree = sre_p.parse(source, flags)
    found: list[Backtracking] = []
    seen: set[str] = set()
    for items, item_flags in _independent_parts(list(tree.data), tree.state.flags):
        for finding in _check(items, item_flags):
            if finding.shape not in seen:
                seen.add(finding.shape)
                found.append(finding)
    return found


def _independent_parts(items: list[tuple[Any, Any]], flags: int) -> Iterator[tuple[list[Any], int]]:
    """The regex itself, then the inside of each atomic group and possessive repeat (checked on
    their own: the matcher backtracks inside them until they first match)."""
    yield items, flags
    yield from _atomic_bodies(items, flags)


def _atomic_bodies(items: list[tuple[Any, Any]], flags: int) -> Iterator[tuple[list[Any], int]]:
    for op, arg in items:
        if op is sre_c.ATOMIC_GROUP or op is sre_c.POSSESSIVE_REPEAT:
            body = list(arg) if op is sre_c.ATOMIC_GROUP else list(arg[2])
            yield body, flags
            yield from _atomic_bodies(body, flags)
            continue
        for child, child_flags in _children(op, arg, flags):
            yield from _atomic_bodies(child, child_flags)


def _children(op: Any, arg: Any, flags: int) -> list[tuple[list[Any], int]]:
    if op in _ALL_REPEATS:
        return [(list(arg[2]), flags)]
    if op is sre_c.SUBPATTERN:
        return [(list(arg[3]), (flags | arg[1]) & ~arg[2])]
    if op is sre_c.BRANCH:
        return [(list(branch), flags) for branch in arg[1]]
    if op is sre_c.GROUPREF_EXISTS:
        return [(list(arg[1]), flags)] + ([(list(arg[2]), flags)] if arg[2] is not None else [])
    if op is sre_c.ATOMIC_GROUP:
        return [(list(arg), flags)]
    return []


def _check(items: list[Any], flags: int) -> list[Backtracking]:
    automaton = _Automaton()
    try:
        automaton.build(items, flags)
    except _TooLarge:
        return _heuristic(items, flags)
    found: list[Backtracking] = []
    for component in automaton.loops():
        if len(component) > MAX_LOOP_POSITIONS:
            loop = automaton.enclosing_loop(component)
            if loop is not None and _variable_repeat_covers(list(loop[1][2])):
                found.append(_describe(loop[0], loop[1], loop[2]))
            continue
        try:
            ambiguous = automaton.exponentially_ambiguous(component)
        except _TooLarge:
            loop = automaton.enclosing_loop(component)
            ambiguous = loop is not None and _variable_repeat_covers(list(loop[1][2]))
        if ambiguous:
            loop = automaton.enclosing_loop(component)
            if loop is not None:
                found.append(_describe(loop[0], loop[1], loop[2]))
    return found


# --- the position automaton ------------------------------------------------------------------------

Ways = dict[int, int]  # position -> how many distinct ways (capped at MANY_WAYS)


def _add(target: Ways, source: Ways, times: int = 1) -> None:
    if times <= 0:
        return
    for position, ways in source.items():
        target[position] = min(MANY_WAYS, target.get(position, 0) + ways * times)


@dataclass
class _Part:
    first: Ways
    last: Ways
    empty: int  # ways to match the empty string (capped)


class _Automaton:
    def __init__(self) -> None:
        self.charsets: list[int] = []  # per position: the characters it reads, as a bit set
        self.follow: list[Ways] = []  # per position: the positions that can come next, with ways
        # loops made by repeats: (op, arg, flags, first position, end position)
        self.repeats: list[tuple[Any, Any, int, int, int]] = []

    # building

    def build(self, items: Sequence[Any], flags: int) -> _Part:
        return self._sequence(items, flags)

    def _position(self, charset: int) -> _Part:
        if len(self.charsets) >= MAX_POSITIONS:
            raise _TooLarge
        self.charsets.append(charset)
        self.follow.append({})
        index = len(self.charsets) - 1
        return _Part({index: 1}, {index: 1}, 0)

    def _link(self, last: Ways, first: Ways) -> None:
        for position, ways in last.items():
            _add(self.follow[position], first, ways)

    def _sequence(self, items: Sequence[Any], flags: int) -> _Part:
        result = _Part({}, {}, 1)
        for op, arg in items:
            part = self._node(op, arg, flags)
            self._link(result.last, part.first)
            first = dict(result.first)
            _add(first, part.first, result.empty)
            last = dict(part.last)
            _add(last, result.last, part.empty)
            result = _Part(first, last, min(MANY_WAYS, result.empty * part.empty))
        return result

    def _node(self, op: Any, arg: Any, flags: int) -> _Part:
        if op in _CHARACTER:
            return self._position(_charset(op, arg, flags))
        if op in _ZERO_WIDTH:
            return _Part({}, {}, 1)
        if op is sre_c.SUBPATTERN:
            return self._sequence(arg[3], (flags | arg[1]) & ~arg[2])
        if op is sre_c.BRANCH:
            return self._alternatives([list(branch) for branch in arg[1]], flags)
        if op is sre_c.GROUPREF_EXISTS:
            return self._alternatives([list(arg[1]), list(arg[2]) if arg[2] is not None else []], flags)
        if op in (sre_c.ATOMIC_GROUP, sre_c.POSSESSIVE_REPEAT):
            # never re-entered once matched: one step for the regex around it
            body = list(arg) if op is sre_c.ATOMIC_GROUP else list(arg[2])
            part = self._position(_first_charset(body, flags))
            can_be_empty = _can_be_empty(body) or (op is sre_c.POSSESSIVE_REPEAT and arg[0] == 0)
            return _Part(part.first, part.last, 1 if can_be_empty else 0)
        if op in _REPEATS:
            return self._repeat(op, arg, flags)
        raise _TooLarge  # an operator this check does not know: the simpler check decides

    def _alternatives(self, branches: list[list[Any]], flags: int) -> _Part:
        result = _Part({}, {}, 0)
        for branch in branches:
            part = self._sequence(branch, flags)
            _add(result.first, part.first)
            _add(result.last, part.last)
            result.empty = min(MANY_WAYS, result.empty + part.empty)
        return result

    def _repeat(self, op: Any, arg: Any, flags: int) -> _Part:
        low, high, body = arg[0], arg[1], list(arg[2])
        if high == 0:
            return _Part({}, {}, 1)
        if high <= EXPAND_UP_TO:
            return self._bounded(low, high, body, flags)
        # A loop. An iteration that reads nothing ends the repeat (as in re), so with no mandatory
        # copy the only empty way is to stop.
        start = len(self.charsets)
        looped = self._sequence(body, flags)
        self._link(looped.last, looped.first)
        self.repeats.append((op, arg, flags, start, len(self.charsets)))
        return _Part(looped.first, looped.last, 1 if low == 0 else looped.empty)

    def _bounded(self, low: int, high: int, body: list[Any], flags: int) -> _Part:
        """`low` copies, then up to high-low optional ones nested as (B(B(B)?)?)?: each optional
        copy exists only after the previous one read something (re counts iterations, it does not
        choose which copies to skip)."""
        copies = [self._sequence(body, flags) for _ in range(high)]
        # optional tail, innermost first
        tail: _Part | None = None
        for copy in reversed(copies[low:]):
            first = dict(copy.first)
            last = dict(copy.last)
            if tail is not None:
                self._link(copy.last, tail.first)
                last = dict(tail.last)
                _add(last, copy.last)
            tail = _Part(first, last, 1)
        result = _Part({}, {}, 1)
        for copy in copies[:low]:
            self._link(result.last, copy.first)
            first = dict(result.first)
            _add(first, copy.first, result.empty)
            last = dict(copy.last)
            _add(last, result.last, copy.empty)
            result = _Part(first, last, min(MANY_WAYS, result.empty * copy.empty))
        if tail is not None:
            self._link(result.last, tail.first)
            first = dict(result.first)
            _add(first, tail.first, result.empty)
            last = dict(tail.last)
            _add(last, result.last, tail.empty)
            result = _Part(first, last, result.empty)
        return result

    # analysing

    def loops(self) -> list[list[int]]:
        """The strongly connected components of the automaton that hold a cycle."""
        edges = [list(ways) for ways in self.follow]
        return [c for c in _components(len(self.charsets), edges)
                if len(c) > 1 or c[0] in self.follow[c[0]]]

    def exponentially_ambiguous(self, component: list[int]) -> bool:
        members = set(component)
        index = {position: n for n, position in enumerate(component)}
        size = len(component)
        # pair (p, q) -> number p * size + q
        edges: list[list[int]] = [[] for _ in range(size * size)]
        doubled: list[tuple[int, int]] = []  # two ways between diagonal pairs
        steps = 0
        for p in component:
            p_next = [(q, w) for q, w in self.follow[p].items() if q in members]
            for r in component:
                r_next = p_next if r == p else [(q, w) for q, w in self.follow[r].items() if q in members]
                source = index[p] * size + index[r]
                steps += len(p_next) * len(r_next)
                if steps > MAX_PAIR_STEPS:
                    raise _TooLarge
                for q, ways_q in p_next:
                    for s, _ways_s in r_next:
                        if self.charsets[q] & self.charsets[s]:
                            target = index[q] * size + index[s]
                            edges[source].append(target)
                            if p == r and q == s and ways_q >= MANY_WAYS:
                                doubled.append((source, target))
        component_of: dict[int, int] = {}
        for number, pair_component in enumerate(_components(size * size, edges)):
            for node in pair_component:
                component_of[node] = number
        diagonal = {component_of[n * size + n] for n in range(size)}
        for node, number in component_of.items():
            if number in diagonal and node // size != node % size:
                return True
        return any(component_of[a] == component_of[b] for a, b in doubled)

    def enclosing_loop(self, component: list[int]) -> tuple[Any, Any, int] | None:
        """The repeat that makes the loop: the outermost one whose positions all lie in it
        (`(a+)+` for the loop of `(a+)+`, not `a+`): (op, arg, flags)."""
        members = set(component)
        best: tuple[Any, Any, int, int, int] | None = None
        for repeat in self.repeats:
            inside = all(position in members for position in range(repeat[3], repeat[4]))
            # on a tie the later one is the outer one (a repeat is recorded after the ones inside it)
            if inside and repeat[4] > repeat[3] and (best is None or repeat[4] - repeat[3] >= best[4] - best[3]):
                best = repeat
        return (best[0], best[1], best[2]) if best is not None else None


def _components(count: int, edges: list[list[int]]) -> list[list[int]]:
    """Tarjan's strongly connected components, without recursion."""
    index = [-1] * count
    low = [0] * count
    on_stack = [False] * count
    stack: list[int] = []
    found: list[list[int]] = []
    counter = 0
    for root in range(count):
        if index[root] != -1:
            continue
        work = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            node, next_edge = work[-1]
            if next_edge < len(edges[node]):
                work[-1] = (node, next_edge + 1)
                target = edges[node][next_edge]
                if index[target] == -1:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack[target] = True
                    work.append((target, 0))
                elif on_stack[target]:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found


# --- character sets ------------------------------------------------------------------------------

_CHARSET_CACHE: dict[tuple[Any, str, int], int] = {}


def _charset(op: Any, arg: Any, flags: int) -> int:
    flags &= sre_c.SRE_FLAG_IGNORECASE | sre_c.SRE_FLAG_DOTALL
    if op is sre_c.ANY:
        return _EVERYTHING if flags & sre_c.SRE_FLAG_DOTALL else _EVERYTHING & ~_NEWLINE
    if op is sre_c.GROUPREF:
        return _EVERYTHING
    key = (op, repr(arg), flags)
    cached = _CHARSET_CACHE.get(key)
    if cached is None:
        folding = bool(flags & sre_c.SRE_FLAG_IGNORECASE)
        cached = 0
        for bit, char in enumerate(_ALPHABET):
            variants = {char, char.lower(), char.upper()} if folding else {char}
            if any(_reads(op, arg, variant) for variant in variants if len(variant) == 1):
                cached |= 1 << bit
        if len(_CHARSET_CACHE) < 10_000:
            _CHARSET_CACHE[key] = cached
    return cached


def _reads(op: Any, arg: Any, char: str) -> bool:
    code = ord(char)
    if op is sre_c.LITERAL:
        return bool(code == arg)
    if op is sre_c.NOT_LITERAL:
        return bool(code != arg)
    negate = False
    hit = False
    for item_op, item_arg in arg:
        if item_op is sre_c.NEGATE:
            negate = True
        elif item_op is sre_c.LITERAL:
            hit = hit or code == item_arg
        elif item_op is sre_c.RANGE:
            hit = hit or item_arg[0] <= code <= item_arg[1]
        elif item_op is sre_c.CATEGORY:
            pattern = _CATEGORIES.get(item_arg)
            hit = hit or (pattern is not None and re.match(pattern, char) is not None)
        else:  # anything else in a class: assume it can read the character (the careful answer)
            hit = True
    return hit != negate


def _first_charset(items: list[Any], flags: int) -> int:
    """The characters the first step of `items` can read (everything, when unsure)."""
    for op, arg in items:
        if op in _CHARACTER:
            return _charset(op, arg, flags)
        if op in _ZERO_WIDTH:
            continue
        return _EVERYTHING
    return _EVERYTHING


# --- naming what was found -----------------------------------------------------------------------


def _describe(op: Any, arg: Any, flags: int) -> Backtracking:
    body = list(arg[2])
    return Backtracking(_kind(body, flags), unparse([(op, arg)]))


def _kind(body: list[Any], flags: int) -> str:
    if _variable_repeat_covers(body):
        return NESTED
    if _has_overlapping_branches(body, flags):
        return OVERLAPPING_ALTERNATION
    if _has_overlapping_neighbours(body, flags):
        return OVERLAPPING_ADJACENT
    return AMBIGUOUS_BODY


def _has_overlapping_branches(items: list[Any], flags: int) -> bool:
    for op, arg in items:
        if op is sre_c.BRANCH:
            firsts = []
            for branch in arg[1]:
                scratch = _Automaton()
                try:
                    part = scratch.build(list(branch), flags)
                except _TooLarge:
                    return True
                charset = 0
                for position in part.first:
                    charset |= scratch.charsets[position]
                firsts.append((charset, part.empty > 0))
            for n, (charset, empty) in enumerate(firsts):
                for other, other_empty in firsts[n + 1:]:
                    # a branch that can read nothing lets the next copy start where another would read
                    if charset & other or empty or other_empty:
                        return True
        for child, child_flags in _children(op, arg, flags):
            if op not in _ALL_REPEATS and _has_overlapping_branches(child, child_flags):
                return True
    return False


def _has_overlapping_neighbours(items: list[Any], flags: int) -> bool:
    """Two variable repeats in a row (anything between them able to match empty) reading a common character."""
    previous: int | None = None
    for op, arg in items:
        if op in _REPEATS and arg[1] > 1:
            charset = _body_charset(list(arg[2]), flags)
            if previous is not None and previous & charset:
                return True
            previous = charset if previous is None else previous | charset
            continue
        if op in _ZERO_WIDTH or (op in _REPEATS and arg[0] == 0):
            continue
        previous = None
        for child, child_flags in _children(op, arg, flags):
            if _has_overlapping_neighbours(child, child_flags):
                return True
    return False


def _body_charset(items: list[Any], flags: int) -> int:
    scratch = _Automaton()
    try:
        scratch.build(items, flags)
    except _TooLarge:
        return _EVERYTHING
    charset = 0
    for position_charset in scratch.charsets:
        charset |= position_charset
    return charset


def _can_be_empty(items: Sequence[Any]) -> bool:
    return all(_node_can_be_empty(op, arg) for op, arg in items)


def _node_can_be_empty(op: Any, arg: Any) -> bool:
    if op in _ZERO_WIDTH or op is sre_c.GROUPREF:
        return True
    if op in _ALL_REPEATS:
        return bool(arg[0] == 0 or _can_be_empty(arg[2]))
    if op in (sre_c.SUBPATTERN, sre_c.ATOMIC_GROUP, sre_c.BRANCH, sre_c.GROUPREF_EXISTS):
        return any(_can_be_empty(child) for child, _ in _children(op, arg, 0))
    return False


def _variable_repeat_covers(items: Sequence[Any]) -> bool:
    """Can the body's text be produced by one inner repeat, all the rest matching ""?

    The shape of `(a+)+`, `(.*)*` and `(\\w+\\s?)+`; also the simpler check used where the exact
    one would take too long (a very large regex).
    """
    for index, (op, arg) in enumerate(items):
        rest = list(items[:index]) + list(items[index + 1:])
        if not _can_be_empty(rest):
            continue
        if op in _ALL_REPEATS and arg[1] > 1:
            return True
        if op in (sre_c.SUBPATTERN, sre_c.ATOMIC_GROUP, sre_c.BRANCH) and any(
                _variable_repeat_covers(child) for child, _ in _children(op, arg, 0)):
            return True
    return False


def _heuristic(items: list[Any], flags: int) -> list[Backtracking]:
    """For a regex too large for the exact check: nested quantifiers only (`(a+)+`)."""
    found: list[Backtracking] = []
    for op, arg in items:
        if op in _REPEATS and arg[1] > EXPAND_UP_TO and _variable_repeat_covers(list(arg[2])):
            found.append(Backtracking(NESTED, unparse([(op, arg)])))
            continue
        for child, child_flags in _children(op, arg, flags):
            found.extend(_heuristic(child, child_flags))
    return found


# --- writing a parse tree back as a regex (for messages) -------------------------------------------

_AT_TEXT = {
    sre_c.AT_BEGINNING: "^", sre_c.AT_BEGINNING_STRING: r"\A", sre_c.AT_END: "$", sre_c.AT_END_STRING: r"\Z",
    sre_c.AT_BOUNDARY: r"\b", sre_c.AT_NON_BOUNDARY: r"\B",
}
_CATEGORY_TEXT = {category: text for category, text in _CATEGORIES.items()}
_MAX_SHAPE = 120


def unparse(items: Sequence[Any]) -> str:
    """A parse tree written back as a regex (equivalent, not always the text the admin wrote)."""
    pieces = [_unparse_node(op, arg) for op, arg in items]
    if len(items) > 1:  # an alternation inside a sequence needs its own group
        pieces = [f"(?:{piece})" if op is sre_c.BRANCH else piece for (op, _), piece in zip(items, pieces, strict=True)]
    text = "".join(pieces)
    return text if len(text) <= _MAX_SHAPE else text[: _MAX_SHAPE - 3] + "..."


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _literal(code: int, in_class: bool = False) -> str:
    char = chr(code)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if in_class:
        return "\\" + char if char in "\\]^-[" else (char if char.isprintable() else f"\\x{code:02x}")
    return re.escape(char) if char.isprintable() else f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"


def _unparse_node(op: Any, arg: Any) -> str:
    if op is sre_c.LITERAL:
        return _literal(arg)
    if op is sre_c.NOT_LITERAL:
        return f"[^{_literal(arg, True)}]"
    if op is sre_c.ANY:
        return "."
    if op is sre_c.IN:
        return _unparse_class(arg)
    if op is sre_c.AT:
        return _AT_TEXT.get(arg, "")
    if op is sre_c.GROUPREF:
        return f"\\{arg}"
    if op is sre_c.SUBPATTERN:
        group, add, _remove, body = arg
        inner = unparse(body)
        if group is None:
            return f"(?{_flag_letters(add)}:{inner})" if add & ~sre_c.SRE_FLAG_UNICODE else f"(?:{inner})"
        return f"({inner})"
    if op is sre_c.BRANCH:
        return "|".join(unparse(branch) for branch in arg[1])
    if op is sre_c.ATOMIC_GROUP:
        return f"(?>{unparse(arg)})"
    if op is sre_c.GROUPREF_EXISTS:
        no = f"|{unparse(arg[2])}" if arg[2] is not None else ""
        return f"(?({arg[0]}){unparse(arg[1])}{no})"
    if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
        direction, body = arg
        sign = "=" if op is sre_c.ASSERT else "!"
        return f"(?{'<' if direction < 0 else ''}{sign}{unparse(body)})"
    if op in _ALL_REPEATS:
        low, high, body = arg
        inner = unparse(body)
        needs_group = len(body) != 1 or body[0][0] not in (*_CHARACTER, sre_c.SUBPATTERN)
        if needs_group or (body[0][0] is sre_c.SUBPATTERN and not inner.startswith("(")):
            inner = f"(?:{inner})"
        suffix = {(0, sre_c.MAXREPEAT): "*", (1, sre_c.MAXREPEAT): "+", (0, 1): "?"}.get((low, high))
        if suffix is None:
            suffix = f"{{{low}}}" if low == high else f"{{{low},{'' if high == sre_c.MAXREPEAT else high}}}"
        return inner + suffix + ("?" if op is sre_c.MIN_REPEAT else "+" if op is sre_c.POSSESSIVE_REPEAT else "")
    return "?"


def _unparse_class(items: Sequence[Any]) -> str:
    if len(items) == 1 and items[0][0] is sre_c.CATEGORY:
        return _CATEGORY_TEXT.get(items[0][1], "[?]")
    parts = []
    for item_op, item_arg in items:
        if item_op is sre_c.NEGATE:
            parts.append("^")
        elif item_op is sre_c.LITERAL:
            parts.append(_literal(item_arg, True))
        elif item_op is sre_c.RANGE:
            parts.append(f"{_literal(item_arg[0], True)}-{_literal(item_arg[1], True)}")
        elif item_op is sre_c.CATEGORY:
            parts.append(_CATEGORY_TEXT.get(item_arg, "?"))
    return "[" + "".join(parts) + "]"


def _flag_letters(flags: int) -> str:
    letters = {sre_c.SRE_FLAG_IGNORECASE: "i", sre_c.SRE_FLAG_MULTILINE: "m", sre_c.SRE_FLAG_DOTALL: "s",
               sre_c.SRE_FLAG_VERBOSE: "x"}
    return "".join(letter for flag, letter in letters.items() if flags & flag)
