"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import Child, stop_children


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """The processes a test starts; all stopped at its end, whatever happened."""
    started: list[Child] = []
    try:
        yield started
    finally:
        stop_children(started)
