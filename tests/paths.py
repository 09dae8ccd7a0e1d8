"""Where the tests find the repository and the shared test data beside it.

`../shared` sits next to the repository checkout (locally and in CI). Its fail2ban
corpus is read in place: never copied into the project.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "fail2ban"
SEED_CONFIGS = SHARED / "seed-configs"
F2B_CORPUS_TOOL = SHARED / "tools" / "f2b_corpus.py"
