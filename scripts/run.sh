#!/usr/bin/env bash
# Runs the product on a Debian machine as root, installing what it needs first: the web panel
# (gunicorn), the Celery workers and Celery beat, in the foreground. Ctrl-C stops everything.
# Settings come from the environment (see README); a secret key is generated on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/services.sh

mkdir -p var && chmod 700 var
if [ ! -s var/secret_key ]; then
  (umask 077; .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(50))" > var/secret_key)
fi
export IPS_SECRET_KEY="${IPS_SECRET_KEY:-$(cat var/secret_key)}"
export IPS_BIND="${IPS_BIND:-127.0.0.1:8000}"
case "$IPS_BIND" in
  127.*|localhost:*|\[::1\]:*)
    # Plain HTTP on loopback (reach it through an SSH tunnel or a TLS proxy); anything wider
    # keeps the secure defaults (HTTPS redirect, secure cookies, HSTS).
    export IPS_SSL_REDIRECT="${IPS_SSL_REDIRECT:-false}" IPS_SECURE_COOKIES="${IPS_SECURE_COOKIES:-false}"
    export IPS_HSTS_SECONDS="${IPS_HSTS_SECONDS:-0}" ;;
esac

.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py installfilters
.venv/bin/python manage.py ensureadmin
.venv/bin/python manage.py collectstatic --noinput -v 0
exec .venv/bin/python manage.py runstack --bind "$IPS_BIND"
