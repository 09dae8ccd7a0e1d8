"""The literal prefilter's scan in C (litscan.c), when it is built; None otherwise.

`scan_masks(buffer, literals)` gives what literals._scan_masks gives (sorted): the
start of each line holding one of the literals and the OR of their pattern bits, in
one pass over the buffer instead of one str.find pass per literal (sshd: 10 passes).
It takes only what it can do exactly: an ASCII buffer, literals of 2 or more ASCII
characters without a newline, bits that fit 64. For anything else it returns None and
the caller scans in Python, with the same result. tests/engine/test_litscan.py
compares the two.

Built by scripts/build-native.sh (setup runs it): plain C through ctypes, no Python
headers, so a machine without a compiler only loses speed.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from pathlib import Path

LIBRARY = Path(__file__).with_name("_litscan.so")


class _Compiled:
    """The literals laid out for the C function, once per set of literals."""

    __slots__ = ("data", "offsets", "bits", "count")

    def __init__(self, literals: Mapping[str, int]) -> None:
        encoded = [text.encode("ascii") for text in literals]
        offsets = [0]
        for text in encoded:
            offsets.append(offsets[-1] + len(text))
        self.count = len(encoded)
        self.data = b"".join(encoded)
        self.offsets = (ctypes.c_int32 * len(offsets))(*offsets)
        self.bits = (ctypes.c_uint64 * max(1, self.count))(*literals.values())


def _load() -> ctypes.CDLL | None:
    try:
        library = ctypes.CDLL(str(LIBRARY))
    except OSError:
        return None
    function = library.ips_scan_masks
    function.restype = ctypes.c_long
    function.argtypes = [
        ctypes.c_char_p,
        ctypes.c_long,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int32),
        ctypes.POINTER(ctypes.c_uint64),
        ctypes.c_int32,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_uint64),
        ctypes.c_long,
    ]
    return library


_LIBRARY = _load()
_COMPILED: dict[tuple[tuple[str, int], ...], _Compiled | None] = {}


def available() -> bool:
    return _LIBRARY is not None


def usable(literals: Mapping[str, int]) -> bool:
    """Whether the C scan takes these literals (else the caller scans in Python)."""
    return _compiled(literals) is not None


def _compiled(literals: Mapping[str, int]) -> _Compiled | None:
    key = tuple(literals.items())
    if key not in _COMPILED:
        fits = all(len(t) >= 2 and t.isascii() and "\n" not in t for t in literals) and all(
            0 <= bits < 1 << 64 for bits in literals.values()
        )
        _COMPILED[key] = _Compiled(literals) if fits and _LIBRARY is not None else None
    return _COMPILED[key]


def scan_masks(buffer: str, literals: Mapping[str, int]) -> list[tuple[int, int]] | None:
    """(line start, bits) of the lines holding a literal, by offset; None: not taken."""
    compiled = _compiled(literals)
    if compiled is None or _LIBRARY is None or not buffer.isascii():
        return None
    data = buffer.encode("ascii")
    capacity = buffer.count("\n") + 1
    starts = (ctypes.c_int64 * capacity)()
    masks = (ctypes.c_uint64 * capacity)()
    found = _LIBRARY.ips_scan_masks(
        data, len(data), compiled.data, compiled.offsets, compiled.bits, compiled.count, starts, masks, capacity
    )
    if found < 0:
        return None
    return list(zip(starts[:found], masks[:found], strict=True))
