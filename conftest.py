"""Root conftest: loaded before Django is set up, so test-only environment goes here."""

import os

# Tests never run with a real secret; production refuses to start without one.
os.environ.setdefault("IPS_SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("IPS_SSL_REDIRECT", "false")
