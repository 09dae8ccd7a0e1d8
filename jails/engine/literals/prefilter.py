"""Which log lines can possibly match a filter: the literal prefilter.

Most lines of a real log match none of a filter's regexes. Running every regex on
every line from Python is what makes fail2ban slow, so before any regex runs we ask a
cheaper question of the whole buffer at C speed (`str.find`, or one pass of `litscan`
in C): which lines contain at least one string that every match must contain?

This module owns the prefilter: where the matcher's date cut may split a literal
(`DateCut`, `date_cut_for`, `cut_safe_pieces`); `Prefilter.build`, which chooses the
strings to search from the literal sets that `extraction.py` finds (measuring them on
a sample of the log, with the scan's cost model); and the runtime,
`Prefilter.candidate_offsets` and `candidate_masks`, which scan a buffer per block of
lines. The runtime needs only `folding.py` and `litscan`: the extraction is asked
when a prefilter is built, never at line time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from .. import litscan
from .extraction import MAX_USEFUL_COST, _contains_min, _longest_common_substring, analyse_all, literal_cost
from .folding import fold_text

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
    for low, high in pairwise(seams):
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
            trial[index] = min(others, key=lambda c: cost([*trial[:index], c, *trial[index + 1 :]]))
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
                trial = [*choice[:index], other, *choice[index + 1 :]]
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
