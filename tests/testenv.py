"""Loaded with `-p tests.testenv` (pyproject addopts) before pytest-django sets Django up, so the
test-only environment is in place before settings.py reads it."""

import os

# Tests never run with a real secret; production refuses to start without one.
os.environ.setdefault("IPS_SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("IPS_SSL_REDIRECT", "false")
