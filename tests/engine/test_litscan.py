"""The literal prefilter's one-pass scan in C (jails/engine/litscan.c through litscan.py)
against the Python scan it replaces: the same lines and the same pattern bits, on
fail2ban's corpus logs with every corpus filter's literals, on random text, and the
Python path whenever the C one cannot take a buffer."""

from __future__ import annotations

import random

import pytest

from jails.engine import litscan
from jails.engine.filter import CompiledFilter
from jails.engine.ini import load_filter_file
from jails.engine.literals import Prefilter, _scan_masks, date_cut_for
from tests.paths import CORPUS


def _python(buffer: str, literals: dict[str, int]) -> list[tuple[int, int]]:
    masks: dict[int, int] = {}
    _scan_masks(buffer, literals, masks)
    return sorted(masks.items())


def test_it_is_built() -> None:
    # setup (scripts/build-native.sh) builds it; CI must run the C path, not only the fallback
    assert litscan.available(), f"{litscan.LIBRARY} is missing: run scripts/build-native.sh"


def _corpus() -> list[tuple[str, str, Prefilter]]:
    """(filter, its log in ASCII, its prefilter built with the log as sample) for the
    corpus filters that load without options and have a prefilter."""
    found = []
    for conf in sorted((CORPUS / "config" / "filter.d").glob("*.conf")):
        log = CORPUS / "logs" / conf.stem
        if not log.is_file():
            continue
        try:
            cf = CompiledFilter.from_definition(load_filter_file(str(conf), {}), check_all=True)
        except Exception:  # noqa: S112  # some filters need options; their siblings cover the scan
            continue
        text = log.read_text(errors="surrogateescape")
        text = "".join(ch for ch in text if ch.isascii())  # the C scan takes ASCII buffers
        cut = date_cut_for(cf.datepattern, False)
        prefilter = Prefilter.build(
            list(cf.failregex_patterns), cf.regex_flags, date_cut=cut, sample=text, single_line=True
        )
        if prefilter is not None:
            found.append((conf.stem, text, prefilter))
    return found


def test_it_finds_what_the_python_scan_finds_in_every_corpus_log() -> None:
    checked = 0
    for name, text, prefilter in _corpus():
        if not litscan.usable(prefilter.exact):
            continue
        assert litscan.scan_masks(text, prefilter.exact) == _python(text, prefilter.exact), name
        checked += 1
    assert checked > 60


def test_prefilter_candidates_are_the_same_with_and_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = _corpus()
    with_c = [(p.candidate_masks(text), p.candidate_offsets(text)) for _, text, p in corpus]
    assert any(p.checked for _, _, p in corpus)  # the further clauses' checks run after the C scan too
    monkeypatch.setattr(litscan, "_LIBRARY", None)
    monkeypatch.setattr(litscan, "_COMPILED", {})
    without = [(p.candidate_masks(text), p.candidate_offsets(text)) for _, text, p in corpus]
    assert with_c == without


def test_it_finds_what_the_python_scan_finds_in_random_text() -> None:
    rng = random.Random(11)
    alphabet = "ab\n xy"
    for _ in range(3000):
        literals = {"".join(rng.choice("abxy ") for _ in range(rng.randint(2, 4))): 1 << rng.randint(0, 63)}
        for _ in range(rng.randint(0, 3)):
            literals["".join(rng.choice("abxy ") for _ in range(rng.randint(2, 5)))] = 1 << rng.randint(0, 63)
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert litscan.scan_masks(text, literals) == _python(text, literals), (text, literals)


@pytest.mark.parametrize(
    ("text", "literals"),
    [
        ("café Failed x\n", {"Failed": 1}),  # not ASCII: offsets are characters, not bytes
        ("Failed x\n", {"F": 1}),  # a one-character literal
        ("Failed x\n", {"Faïl": 1}),  # a literal that is not ASCII
        ("Failed x\n", {"Failed": 1 << 64}),  # bits past 64
    ],
)
def test_it_leaves_to_python_what_it_cannot_do_exactly(text: str, literals: dict[str, int]) -> None:
    assert litscan.scan_masks(text, literals) is None
