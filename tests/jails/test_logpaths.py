"""jails.logpaths: the files a jail's logpath names now."""

from __future__ import annotations

import os
from pathlib import Path

from jails.logpaths import expand_logpaths


def test_it_expands_globs_into_sorted_files_only(tmp_path: Path) -> None:
    for name in ["b.log", "a.log", "c.log.1.gz", "d.log.2.xz"]:
        (tmp_path / name).write_text("x\n")
    (tmp_path / "dir.log").mkdir()
    os.mkfifo(tmp_path / "fifo.log")
    plain = tmp_path / "plain"
    plain.write_text("x\n")
    patterns = [str(tmp_path / "*.log*"), str(plain), str(tmp_path / "absent.log")]
    assert expand_logpaths(patterns) == [str(tmp_path / "a.log"), str(tmp_path / "b.log"), str(plain)]

    (tmp_path / "0-new.log").write_text("x\n")  # appears later: the next expansion sees it
    assert expand_logpaths(patterns)[0] == str(tmp_path / "0-new.log")


def test_it_lists_a_file_reached_by_two_paths_once(tmp_path: Path) -> None:
    (tmp_path / "secure").write_text("x\n")
    (tmp_path / "auth.log").symlink_to(tmp_path / "secure")
    assert expand_logpaths([str(tmp_path / "secure"), str(tmp_path / "auth.log")]) == [str(tmp_path / "auth.log")]
