"""Small builders for jails tests: fail2ban trees laid out as an admin has them."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.paths import CORPUS, SEED_CONFIGS


def stock_tree_with_seed(tmp_path: Path) -> Path:
    """The stock fail2ban config with the seed jail.local and custom filters laid over it."""
    root = tmp_path / "fail2ban"
    shutil.copytree(CORPUS / "config", root)
    shutil.copy(SEED_CONFIGS / "jail.local", root / "jail.local")
    for conf in (SEED_CONFIGS / "filter.d").glob("*.conf"):
        shutil.copy(conf, root / "filter.d" / conf.name)
    return root


def minimal_tree(tmp_path: Path, jail_local: str, filters: dict[str, str]) -> Path:
    """A small fail2ban tree: one jail.local and the given filter.d files."""
    root = tmp_path / "f2b"
    (root / "filter.d").mkdir(parents=True)
    (root / "jail.local").write_text(jail_local)
    for name, text in filters.items():
        (root / "filter.d" / name).write_text(text)
    return root
