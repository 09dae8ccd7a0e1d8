#!/usr/bin/env bash
# Runs the whole test suite on a Debian machine as root, installing what it needs first:
# lint, then every test on SQLite, then the database-backed tests again on PostgreSQL.
# Extra arguments go to both pytest runs (e.g. scripts/test.sh -k importconf).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --dev
scripts/services.sh --postgres

export IPS_SECRET_KEY="test-only-secret-key-not-for-production-use-0123456789"
export IPS_SSL_REDIRECT=false
export PYTHONDONTWRITEBYTECODE=1

echo "== lint (ruff) and types (mypy)"
.venv/bin/ruff check .
.venv/bin/mypy config jails bans watchers tests bench scripts

echo "== tests on PostgreSQL (database-backed tests)"
# (the engine and the namespace tests use no database: they run once, in the SQLite pass)
# (the fleet's namespace test needs PostgreSQL: it runs here, and skips itself on SQLite)
DATABASE_URL="postgres:///ips" .venv/bin/pytest -q -p no:cacheprovider --ignore=tests/engine -m "(not netns and not slow) or fleet" "$@"

echo "== all tests on SQLite"
DATABASE_URL="sqlite:///var/test.sqlite3" .venv/bin/pytest -p no:cacheprovider "$@"
