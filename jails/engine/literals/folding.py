"""Case folding for the literal prefilter: one folding for literals and for buffers.

Case-insensitive patterns are handled by folding: the pattern's literals and the
buffer are both lower-cased (plus the three characters that Python's `re` matches to
an ASCII letter under IGNORECASE although `str.lower` does not map them there), and
the folded literals are searched in the folded buffer. `fold_text` keeps every
offset, so a line found in the folded buffer is the same line of the raw one.

The extraction (`extraction.py`) folds a pattern's characters with it when a filter
compiles; the prefilter's scan (`prefilter.py`) and the date detector's guards fold
lines with it at line time. It imports nothing.
"""

from __future__ import annotations

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
