"""`manage.py check --deploy` is clean with production settings, and production refuses to run
without a secret key."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from tests.paths import REPO

# What the test run itself sets and production never has (the browser tests allow Django's ORM
# next to Playwright's event loop, which check --deploy rightly refuses).
PRODUCTION_ENV_DROPPED = ("IPS_DEBUG", "IPS_SSL_REDIRECT", "IPS_SECURE_COOKIES", "IPS_HSTS_SECONDS",
                          "DJANGO_ALLOW_ASYNC_UNSAFE")


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV_DROPPED and k != "IPS_SECRET_KEY"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_it_passes_the_deploy_check_with_production_settings() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", IPS_SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_it_refuses_to_start_without_a_secret_key() -> None:
    result = manage("check", IPS_SECRET_KEY_FILE="/nonexistent/secret")
    assert result.returncode != 0
    assert "IPS_SECRET_KEY is not set" in result.stderr


def test_it_names_a_bad_setting() -> None:
    result = manage("check", IPS_SECRET_KEY=secrets.token_urlsafe(50), IPS_HSTS_SECONDS="soon")
    assert result.returncode != 0
    assert "IPS_HSTS_SECONDS='soon'" in result.stderr
