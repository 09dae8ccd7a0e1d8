"""Where the tests find the repository and the shared test data beside it.

`../shared` sits next to the repository checkout (locally and in CI). Its fail2ban
corpus is read in place: never copied into the project.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "fail2ban"
SEED_CONFIGS = SHARED / "seed-configs"
F2B_CORPUS_TOOL = SHARED / "tools" / "f2b_corpus.py"


@functools.cache
def corpus_tool() -> ModuleType:
    """fail2ban's corpus scorer (`../shared/tools/f2b_corpus.py`), imported in process.

    Missing shared data fails the test instead of skipping it: a skip would let the compatibility
    score fall without anyone seeing it.
    """
    if not F2B_CORPUS_TOOL.is_file():
        pytest.fail(f"{F2B_CORPUS_TOOL} is missing: the shared test data must sit beside the checkout")
    spec = importlib.util.spec_from_file_location("f2b_corpus", F2B_CORPUS_TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
