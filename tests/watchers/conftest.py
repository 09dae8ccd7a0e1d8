"""Fixtures shared by the watchers tests."""

from __future__ import annotations

import pytest

from jails.builtin import FILTER_DIR
from jails.models import Filter


@pytest.fixture
def sshd(db: None) -> Filter:
    """Our built-in sshd filter (and what it includes), as installfilters stores it."""
    for name in ("ips-common", "sshd"):
        Filter.objects.create(name=name, source=(FILTER_DIR / f"{name}.conf").read_text())
    return Filter.objects.get(name="sshd")
