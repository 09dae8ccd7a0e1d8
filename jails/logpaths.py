"""The files a jail's `logpath` names now: its paths and globs expanded (plain Python, no Django).

Part of a jail's configuration, read by everything above it: the watchers (which files to follow),
replay and jailctl (which files a jail reads), and the jail pages.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Sequence

# Rotated files with these endings are compressed: never read, never taken for the old file.
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".lzo", ".br", ".z", ".zip")


def expand_logpaths(patterns: Sequence[str]) -> list[str]:
    """The regular files the patterns (paths or globs) name now: sorted, compressed files left out,
    and each file once even when two paths (a symlink and its target) lead to it: reading it twice
    would count every failure twice. Call it again from time to time: files appear later."""
    by_identity: dict[tuple[int, int], str] = {}
    for pattern in patterns:
        for path in glob.glob(pattern):
            if path.lower().endswith(COMPRESSED_SUFFIXES):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                identity = (st.st_dev, st.st_ino)
                by_identity[identity] = min(path, by_identity.get(identity, path))
    return sorted(by_identity.values())
