"""Shared fixtures. (Test-only environment variables are set in tests/testenv.py.)"""

from __future__ import annotations

import os

import pytest
from django.db import connection


@pytest.fixture
def settings_db_env(db: None) -> dict[str, str]:
    """Environment for a child `manage.py` process that must see this test's database.

    Use it from tests marked django_db(transaction=True): their rows are committed, so the child,
    opening the same test database, sees them.
    """
    env = dict(os.environ)
    name = connection.settings_dict["NAME"]
    env["DATABASE_URL"] = f"sqlite:///{name}" if connection.vendor == "sqlite" else f"postgres:///{name}"
    return env
