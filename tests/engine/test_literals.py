"""The literal prefilter must be sound: a line a regex can match is never skipped.

Three kinds of evidence: small hand-written cases for each regex construct, random
regexes against random texts (hypothesis), and fail2ban's stock filters against every
annotated sample line of its corpus.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from jails.engine.literals import (
    ANYWHERE,
    LINE_BEGIN,
    NO_CUT,
    DateCut,
    Prefilter,
    analyse,
    analyse_all,
    cut_safe_pieces,
    date_cut_for,
    fold_text,
    required_literals,
    required_prefixes,
    required_string,
)
from tests.paths import CORPUS, corpus_tool

# --- each construct ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("Failed password", {"Failed password"}),
        (r"^Failed \S+ for", {"Failed "}),
        ("(GET|POST) /x", {"GET /x", "POST /x"}),
        (r"[aA]uthentication failure", {"Authentication failure", "authentication failure"}),
        ("(?:ab){2}", {"abab"}),
        ("(?:abc)+x", {"abcx"}),
        (r"x(?:from )?host", {"xfrom host", "xhost"}),
        (r"(?P<g>word)\d+(?P=g)", {"word"}),
        (r"^refused(?= connect)", {"refused"}),
        (r"(?<=user )root", {"root"}),
        (r"abc|defg", {"abc", "defg"}),
        (r"(?P<a>x)?(?(a)yes|nope)", {"yes", "nope"}),
        (r"(?>atomic)", {"atomic"}),
        ("(?:abc)++", {"abc"}),
    ],
)
def test_it_extracts_the_strings_every_match_contains(pattern: str, expected: set[str]) -> None:
    assert required_literals(pattern) == frozenset(expected)


@pytest.mark.parametrize(
    "pattern",
    [
        ".*",
        r"\S+",
        "a?bcdef?",  # only "bcde" is certain, but a? and f? make it... still fine below
        "x*",
        "(?:abc)?",
        "a|.*",
        r"\d+\.\d+",  # a lone "." is in most lines
        "(",  # does not parse
    ],
)
def test_it_gives_no_set_when_no_useful_one_exists(pattern: str) -> None:
    found = required_literals(pattern)
    if pattern == "a?bcdef?":
        assert found == frozenset({"bcde"})
    else:
        assert found is None


def test_it_folds_case_insensitive_patterns() -> None:
    found = analyse("(?i)Failed Password")
    assert found is not None and found.folded
    assert found.strings == frozenset({"failed password"})
    scoped = analyse("(?i:user) Root")
    assert scoped is not None and scoped.folded and scoped.strings == frozenset({"user root"})
    assert required_literals("Failed", re.IGNORECASE) == frozenset({"failed"})


def test_it_gives_up_non_ascii_characters_under_ignorecase() -> None:
    # 'é' has case partners that lower() alone does not describe: the piece is dropped.
    assert required_literals("(?i)caf\u00e9 latte") == frozenset({" latte"})


def test_it_keeps_folded_text_aligned_with_the_original() -> None:
    text = "\u0130stanbul \u017fsh K\u212a d\u0131r"
    folded = fold_text(text)
    assert folded is not None and len(folded) == len(text)
    assert folded == "istanbul ssh kk dir"


def test_it_folds_every_character_that_ignorecase_matches_to_an_ascii_letter() -> None:
    # All code points: what `re` calls equal to a letter under IGNORECASE must fold to it.
    letters = {letter: re.compile("(?i)" + letter) for letter in "abcdefghijklmnopqrstuvwxyz"}
    any_letter = re.compile("(?i)[a-z]")
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if not any_letter.fullmatch(char):
            continue
        folded = fold_text(char)
        for letter, pattern in letters.items():
            if pattern.fullmatch(char):
                assert folded == letter, (hex(code), folded, letter)


# --- the prefilter ---------------------------------------------------------------------


def test_it_finds_candidate_lines_by_offset() -> None:
    prefilter = Prefilter.build([r"Failed password for \S+", r"(?i)invalid user"], date_cut=NO_CUT)
    assert prefilter is not None
    buffer = "cron ok\nFailed password for root\nsshd: INVALID USER x\nFailed password twice\n"
    assert prefilter.candidate_offsets(buffer) == [8, 33]


def test_it_reports_each_line_once_and_in_order() -> None:
    prefilter = Prefilter.build(["foo", "bar"], date_cut=NO_CUT)
    assert prefilter is not None
    buffer = "bar foo foo\nnone\nfoo bar\nlast foo"
    assert prefilter.candidate_offsets(buffer) == [0, 17, 25]
    assert prefilter.candidate_offsets("") == []


def test_it_tells_which_patterns_may_match_each_line() -> None:
    prefilter = Prefilter.build(["Failed password", "Invalid user", "(?i)connection closed"], date_cut=NO_CUT)
    assert prefilter is not None
    buffer = "Failed password x\nnoise\nInvalid user Failed password\nConnection CLOSED\n"
    assert prefilter.candidate_masks(buffer) == [(0, 0b001), (24, 0b011), (53, 0b100)]


def test_it_shares_one_search_between_patterns_with_a_common_substring() -> None:
    prefilter = Prefilter.build(["Connection closed by", "Connection reset by"], date_cut=NO_CUT)
    assert prefilter is not None
    assert prefilter.exact == {"Connection ": 0b11}
    assert prefilter.candidate_masks("Connection closed by\n") == [(0, 0b11)]


def test_it_refuses_when_one_pattern_has_no_set() -> None:
    assert Prefilter.build(["Failed password", r".*\d"]) is None
    assert Prefilter.build([]) is None


def test_it_survives_a_date_cut_through_a_literal() -> None:
    # The matcher cuts the date out: "[" + date + "] sshd" becomes "[] sshd".
    prefilter = Prefilter.build([r"\[\] sshd"])
    assert prefilter is not None
    raw = "noise\n[2024-01-02 03:04:05] sshd: hello\n"
    assert prefilter.candidate_offsets(raw) == [6]


@pytest.mark.parametrize(
    ("literal", "cut", "pieces"),
    [
        ("Failed ", NO_CUT, {"Failed "}),
        ("Failed ", LINE_BEGIN, {"Failed "}),  # a word char cannot end the text before the date
        ("[] sshd", LINE_BEGIN, {" sshd"}),  # "[" or "[]" may precede the date
        ("abcd", DateCut(max_before=1), {"bcd"}),
    ],
)
def test_it_splits_only_literals_that_can_straddle_the_cut(literal: str, cut: DateCut, pieces: set[str]) -> None:
    assert set(cut_safe_pieces(literal, cut)) == pieces


def test_it_splits_anywhere_cuts_into_two_overlapping_pieces() -> None:
    head, tail = cut_safe_pieces("Authentication failure", ANYWHERE)
    assert "Authentication failure".startswith(head) and "Authentication failure".endswith(tail)
    assert len(head) + len(tail) == len("Authentication failure") + 1


def test_it_reads_the_cut_from_the_datepattern() -> None:
    assert date_cut_for("{^LN-BEG}") == LINE_BEGIN
    assert date_cut_for("{^LN-BEG}host (%%ExY-%%m-%%d)") == ANYWHERE  # custom: any text before
    assert date_cut_for(None) == ANYWHERE
    assert date_cut_for("%%d/%%b/%%Y") == ANYWHERE
    assert date_cut_for("{NONE}") == NO_CUT
    assert date_cut_for(None, journal=True) == NO_CUT


@pytest.mark.parametrize(
    "line",
    [
        "Jan  2 03:04:05 host sshd[1]: x",
        "[Jan  2 03:04:05 2024] x",
        "<09/16/08@05:03:30> x",
        "2024-01-02T03:04:05.123+01:00 x",
        "[1704164645.123] x",
        "@4000000063b2c1d51e8d2c3c x",
        "03:04:05 x",
        " (2024/01/02 03:04:05) x",
        "Apr-27-13 02:33:06 x",
    ],
)
def test_it_relies_only_on_what_line_begin_dates_allow(line: str) -> None:
    # LINE_BEGIN promises that at most two non-word characters precede a cut date.
    from jails.engine.dates import DateDetector

    hit = DateDetector("{^LN-BEG}").match(line, 1704164645.0)
    assert hit is not None
    before = line[: hit.start]
    assert len(before) <= (LINE_BEGIN.max_before or 0)
    assert re.fullmatch(r"\W*", before)


def test_it_keeps_lines_of_multi_line_patterns() -> None:
    prefilter = Prefilter.build([r"first line\nsecond line"], date_cut=NO_CUT)
    assert prefilter is not None
    offsets = prefilter.candidate_offsets("x\nfirst line\nsecond line\n")
    assert offsets and set(offsets) <= {2, 13}


def test_it_treats_all_lines_as_candidates_when_folding_cannot_keep_offsets() -> None:
    prefilter = Prefilter.build(["(?i)fail"], date_cut=NO_CUT)
    assert prefilter is not None
    original = fold_text  # a buffer whose lower() changes length is handled by fallback
    assert original("x") == "x"
    # No real character lowers to two characters except U+0130, which is pre-mapped,
    # so the folded scan still works on non-ASCII text:
    assert prefilter.candidate_offsets("\u00e9t\u00e9\nFAIL\u0130\n") == [4]


# --- random regexes against random texts -----------------------------------------------

ALPHABET = "abcAB .-\u017f\u0131\u0130\u212a"


def _atoms() -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            "a",
            "b",
            "c",
            "A",
            "B",
            " ",
            r"\.",
            "-",
            "[ab]",
            "[a-c]",
            "[^a]",
            r"\s",
            r"\w",
            ".",
            "^",
            "$",
            r"\b",
            "[Ab-]",
            "\u017f",
            "\u0131",
            "ab",
            "ba",
            "abc",
            "a b",
        ]
    )


def _regexes() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        quantifiers = ["*", "+", "?", "{2}", "{0,2}", "{1,3}", "{2,}", "*?", "+?", "??", "{3,5}"]
        return st.one_of(
            st.lists(inner, min_size=2, max_size=4).map("".join),
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(?:" + "|".join(xs) + ")"),
            st.tuples(inner, st.sampled_from(quantifiers)).map(lambda t: f"(?:{t[0]}){t[1]}"),
            inner.map(lambda x: f"({x})"),
            inner.map(lambda x: f"(?=({x}))"),
            inner.map(lambda x: f"(?!{x})"),
            inner.map(lambda x: f"(?i:{x})"),
            inner.map(lambda x: f"(?>{x})"),
            inner.map(lambda x: f"(?P<g>{x})(?P=g)"),
            inner.map(lambda x: f"(?P<c>a)?(?(c){x}|b)"),
            st.sampled_from(["(?<=a)", "(?<!b)"]),
        )

    return st.recursive(_atoms(), extend, max_leaves=8)


def _match_texts(pattern: re.Pattern[str], text: str) -> Iterator[str]:
    """Every substring that the pattern matches whole (with its context cut at the end)."""
    for start in range(len(text) + 1):
        for end in range(start, len(text) + 1):
            if pattern.fullmatch(text, start, end) is not None:
                yield text[start:end]


def _compiled(source: str, flags: int = 0) -> re.Pattern[str]:
    try:
        return re.compile(source, flags)
    except re.error:
        assume(False)
        raise  # unreachable: assume() raised


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_regexes(), st.text(ALPHABET, max_size=9), st.booleans())
@example("(?:ab)+", "abab", False)
@example("(?i:a)B", "\u0130b", False)
@example("(?i:s)", "\u017f", True)
def test_it_never_misses_a_text_the_regex_matches(source: str, text: str, ignorecase: bool) -> None:
    flags = re.IGNORECASE if ignorecase else 0
    pattern = _compiled(source, flags)
    found = analyse(source, flags)
    if found is None:
        return
    for matched in _match_texts(pattern, text):
        searched = fold_text(matched) if found.folded else matched
        assert searched is not None
        assert any(literal in searched for literal in found.strings), (matched, found)


_DATES = st.text("0123456789:[]", min_size=1, max_size=4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_regexes(), min_size=1, max_size=3),
    st.lists(st.tuples(st.text(ALPHABET, max_size=6), _DATES, st.text(ALPHABET, max_size=6)), min_size=1, max_size=5),
)
def test_it_never_skips_a_line_whose_cut_text_matches(sources: list[str], parts: list[tuple[str, str, str]]) -> None:
    _check_cut_lines(sources, parts, ANYWHERE)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_regexes(), min_size=1, max_size=3),
    st.lists(st.tuples(st.text(" .-[", max_size=2), _DATES, st.text(ALPHABET, max_size=8)), min_size=1, max_size=5),
)
def test_it_never_skips_a_line_whose_date_at_line_begin_was_cut(
    sources: list[str], parts: list[tuple[str, str, str]]
) -> None:
    _check_cut_lines(sources, parts, LINE_BEGIN)


def _check_cut_lines(sources: list[str], parts: list[tuple[str, str, str]], cut: DateCut) -> None:
    # Each raw line is before + date + after; the matcher sees before + after.
    patterns = [_compiled(source) for source in sources]
    prefilter = Prefilter.build(sources, date_cut=cut)
    if prefilter is None:
        return
    raw_lines = [before + date + after for before, date, after in parts]
    buffer = "\n".join(raw_lines) + "\n"
    candidates = set(prefilter.candidate_offsets(buffer))
    masks = dict(prefilter.candidate_masks(buffer))
    assert set(masks) == candidates
    offset = 0
    for (before, _date, after), raw in zip(parts, raw_lines, strict=True):
        for index, pattern in enumerate(patterns):
            if pattern.search(before + after):
                assert offset in candidates, (raw, prefilter)
                assert masks[offset] & (1 << index), (raw, index, prefilter)
        offset += len(raw) + 1


# --- fail2ban's stock filters against its sample logs ---------------------------------

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="fail2ban corpus not present")


def _runs() -> list[dict[str, Any]]:
    if not CORPUS.is_dir():
        return []
    runs: list[dict[str, Any]] = corpus_tool().all_runs(str(CORPUS))
    return runs


def _failregex_sources(run: dict[str, Any]) -> tuple[list[str], int]:
    definition = _definition(run)
    return [_translated(line.pattern) for line in definition.failregex], definition.maxlines


def _definition(run: dict[str, Any]) -> Any:
    return _load_definition(run["conf"], tuple(sorted(run["options"].items())), run["journal"])


@cache
def _load_definition(conf: str, options: tuple[tuple[str, str], ...], journal: bool) -> Any:
    from jails.engine.ini import load_filter_file

    return load_filter_file(conf, dict(options), backend="systemd" if journal else "auto")


@cache
def _date_detector(datepattern: str | None) -> Any:
    from jails.engine.dates import DateDetector

    return DateDetector(datepattern)


def _translated(pattern: str) -> str:
    from jails.engine.regex import translate

    return translate(pattern).source


def _texts_the_regexes_see(run: dict[str, Any], line: str) -> list[str]:
    """The raw line, the line with its date cut out, and the prefregex's content."""
    definition = _definition(run)
    texts = [line]
    if not run["journal"]:
        hit = _date_detector(definition.datepattern).match(line, 1124013600.0)
        if hit is not None:
            line = line[: hit.start] + line[hit.end :]
            texts.append(line)
    if definition.prefregex is not None:
        found = re.search(_translated(definition.prefregex.pattern), line)
        if found is not None and "content" in found.groupdict() and found.group("content"):
            texts.append(found.group("content"))
    return texts


def _line_starts(texts: list[str]) -> list[int]:
    starts, offset = [], 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + 1
    return starts


@needs_corpus
def test_it_keeps_every_sample_line_a_stock_filter_must_match() -> None:
    checked = skipped_filters = 0
    problems: list[str] = []
    for run in _runs():
        sources, maxlines = _failregex_sources(run)
        cut = date_cut_for(_definition(run).datepattern, run["journal"])
        prefilter = Prefilter.build(sources, date_cut=cut)
        if prefilter is None:
            skipped_filters += 1
            continue
        texts = [line["text"] for line in run["lines"]]
        starts = _line_starts(texts)
        candidates = set(prefilter.candidate_offsets("\n".join(texts) + "\n"))
        for index, line in enumerate(run["lines"]):
            if not line["expect"].get("match"):
                continue
            window = starts[max(0, index - maxlines + 1) : index + 1]
            checked += 1
            if not candidates.intersection(window):
                problems.append(f"{run['key']} {line['src']}: {line['text']!r} not a candidate")
    assert not problems, "\n".join(problems[:20])
    assert checked > 500  # the corpus really was exercised
    assert skipped_filters < len(_runs()) // 2  # and most filters do get a prefilter


@needs_corpus
def test_it_finds_a_literal_in_every_sample_line_each_stock_regex_matches() -> None:
    checked = 0
    problems: list[str] = []
    for run in _runs():
        sources, _maxlines = _failregex_sources(run)
        cut = date_cut_for(_definition(run).datepattern, run["journal"])
        prefilter = Prefilter.build(sources, date_cut=cut)
        texts = [line["text"] for line in run["lines"]]
        masks = prefilter.candidate_masks("\n".join(texts) + "\n") if prefilter else []
        mask_of_line = dict(zip(_line_starts(texts), [0] * len(texts), strict=True))
        mask_of_line.update(masks)
        for index, source in enumerate(sources):
            found = analyse(source)
            if found is None:
                continue
            pattern = re.compile(source)
            for line, start in zip(run["lines"], mask_of_line, strict=True):
                for seen in _texts_the_regexes_see(run, line["text"]):
                    match = pattern.search(seen)
                    if match is None:
                        continue
                    checked += 1
                    if prefilter is not None and not mask_of_line[start] & (1 << index):
                        problems.append(f"{line['src']}: regex {index} not in the line's mask")
                    text = match.group(0)
                    searched = fold_text(text) if found.folded else text
                    if searched is None or not any(lit in searched for lit in found.strings):
                        problems.append(f"{line['src']}: {source[:80]!r} {sorted(found.strings)}")
    assert not problems, "\n".join(problems[:20])
    assert checked > 100


# --- several clauses per pattern: analyse_all, and the prefilter that uses them -------


def test_it_finds_several_literal_sets_every_match_contains() -> None:
    found = analyse_all(r'^\S+ .* "(GET|POST) /(?:\.env|\.git).*" (?:403|404) ', 0)
    sets = [found_set.strings for found_set in found]
    assert any(all("GET" in s or "POST" in s for s in x) for x in sets)  # the method
    assert any(all(".env" in s or ".git" in s for s in x) for x in sets)  # the path
    assert any(all("40" in s for s in x) for x in sets)  # the status


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_regexes(), st.text(ALPHABET, max_size=9), st.booleans())
@example("(?:ab)+c(d|e)", "ababcd", False)
def test_every_set_of_analyse_all_is_in_every_match(source: str, text: str, ignorecase: bool) -> None:
    flags = re.IGNORECASE if ignorecase else 0
    pattern = _compiled(source, flags)
    for found in analyse_all(source, flags):
        for matched in _match_texts(pattern, text):
            searched = fold_text(matched) if found.folded else matched
            assert searched is not None
            assert any(literal in searched for literal in found.strings), (matched, found)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_regexes(), min_size=1, max_size=3),
    st.lists(st.tuples(st.text(ALPHABET, max_size=6), _DATES, st.text(ALPHABET, max_size=6)), min_size=1, max_size=5),
    st.booleans(),
)
def test_clauses_never_skip_a_single_line_that_matches(
    sources: list[str], parts: list[tuple[str, str, str]], with_sample: bool
) -> None:
    patterns = [_compiled(source) for source in sources]
    raw_lines = [before + date + after for before, date, after in parts]
    buffer = "\n".join(raw_lines) + "\n"
    sample = buffer if with_sample else None
    prefilter = Prefilter.build(sources, date_cut=ANYWHERE, sample=sample, single_line=True)
    if prefilter is None:
        return
    candidates = set(prefilter.candidate_offsets(buffer))
    masks = dict(prefilter.candidate_masks(buffer))
    assert set(masks) == candidates
    offset = 0
    for (before, _date, after), raw in zip(parts, raw_lines, strict=True):
        for index, pattern in enumerate(patterns):
            if pattern.search(before + after + "\n"):
                assert offset in candidates, (raw, prefilter)
                assert masks[offset] & (1 << index), (raw, index, prefilter)
        offset += len(raw) + 1


def test_a_further_clause_rejects_lines_holding_only_the_first() -> None:
    lines = ['1.2.3.4 - - "GET /.env HTTP/1.1" 404 1', '1.2.3.4 - - "GET /index HTTP/1.1" 404 1'] * 50
    buffer = "\n".join(lines) + "\n"
    prefilter = Prefilter.build([r'"GET /\.env.*" 404 '], date_cut=NO_CUT, sample=buffer, single_line=True)
    assert prefilter is not None
    starts = prefilter.candidate_offsets(buffer)
    assert len(starts) == 50
    assert all(buffer.startswith(lines[0], start) for start in starts)


def test_multi_line_patterns_keep_a_single_clause() -> None:
    prefilter = Prefilter.build([r"^first line\nsecond (?:one|two) here"], re.MULTILINE)
    assert prefilter is not None
    assert not prefilter.checked


# --- the matcher's dispatch guards: required prefixes and strings ---------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"^Failed \S+ for", ("Failed ",)),
        (r"^[iI](?:llegal|nvalid) user ", ("Illegal user ", "Invalid user ", "illegal user ", "invalid user ")),
        (r"^(?:error: )?Bad", ("Bad", "error: Bad")),
        (r"Failed \S+", None),  # not anchored: a match may start anywhere
        (r"^\S+ failed", None),  # nothing known about the first characters
        (r"^a\d", None),  # one character: first-character dispatch does that much
        (r"(?i)^Failed", None),  # folded
    ],
)
def test_it_finds_the_prefixes_an_anchored_pattern_starts_with(pattern: str, expected: tuple[str, ...] | None) -> None:
    assert required_prefixes(pattern) == expected


def test_it_finds_a_string_beyond_the_prefixes() -> None:
    pattern = r"^Received disconnect from \S+:\s*3: .*: Auth fail"
    prefixes = required_prefixes(pattern)
    assert prefixes == ("Received disconnect from ",)
    found = required_string(pattern, 0, prefixes)
    assert found is not None and found in ": Auth fail" and not any(found in p for p in prefixes)
    assert required_string(r"^Failed \S+", 0, ("Failed ",)) is None  # nothing beyond the prefix


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_regexes(), st.text(ALPHABET, max_size=9))
@example("(?:ab)+c", "ababc")
@example("a(?:b|cd)?e", "ae")
def test_dispatch_guards_never_skip_a_text_the_regex_matches(source: str, text: str) -> None:
    pattern = _compiled("^" + source)
    prefixes = required_prefixes("^" + source)
    needed = required_string("^" + source, 0, prefixes)
    for end in range(len(text) + 1):
        if pattern.search(text[:end]) is not None:
            assert prefixes is None or text[:end].startswith(prefixes), (source, text[:end], prefixes)
            assert needed is None or needed in text[:end], (source, text[:end], needed)


def test_patterns_share_one_pass_for_a_string_they_all_need() -> None:
    # sshd's "User ... not allowed because ..." regexes: each could be searched by its own
    # rare word ("Den", "Gro"), but one pass for what they all hold costs less
    lines = [f"host sshd[{n}]: Accepted password for bob from 192.0.2.{n % 250} port 22" for n in range(300)]
    lines += ["host sshd[1]: User x from 192.0.2.1 not allowed because listed in DenyUsers"]
    lines += ["host sshd[2]: User y from 192.0.2.2 not allowed because a group is listed in DenyGroups"]
    lines += ["host sshd[3]: User z from 192.0.2.3 not allowed because not listed in AllowUsers"]
    buffer = "\n".join(lines) + "\n"
    patterns = [
        r"^User \S+ from \S+ not allowed because listed in DenyUsers",
        r"^User \S+ from \S+ not allowed because a group is listed in DenyGroups",
        r"^User \S+ from \S+ not allowed because not listed in AllowUsers",
    ]
    prefilter = Prefilter.build(patterns, date_cut=NO_CUT, sample=buffer, single_line=True)
    assert prefilter is not None
    assert len(prefilter.exact) == 1, prefilter
    masks = dict(prefilter.candidate_masks(buffer))
    assert [buffer[start : buffer.index("\n", start)] for start in masks] == lines[-3:]


def test_checks_that_never_take_a_line_out_are_dropped() -> None:
    # two patterns find the same lines; a check that clears one's bit leaves the other's:
    # the line is a candidate either way, and looking at it would only cost
    lines = [f"Received disconnect from 192.0.2.{n % 250} port {n}:11: Bye" for n in range(200)]
    lines += ["Received disconnect from 192.0.2.1 port 1:3: x: Auth fail"]
    buffer = "\n".join(lines) + "\n"
    patterns = [
        r"^Received disconnect from \S+ port \d+:\s*3: .*: Auth fail",
        r"^Received disconnect from \S+ port \d+:\s*11:",
    ]
    prefilter = Prefilter.build(patterns, date_cut=NO_CUT, sample=buffer, single_line=True)
    assert prefilter is not None and not prefilter.checked
    assert len(prefilter.candidate_masks(buffer)) == len(lines)
