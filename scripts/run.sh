#!/usr/bin/env bash
# Runs the product on a Debian machine as root, installing what it needs first: the web panel
# (gunicorn), the Celery workers and Celery beat, in the foreground. Ctrl-C stops everything,
# including the Redis it started (a Redis that was already running is left alone).
# Settings come from the environment (see README); a secret key is generated on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
mkdir -p var && chmod 700 var

# The Redis started here has its files in var/redis/ and is stopped when the stack stops.
REDIS_PID=var/redis/redis.pid
stop_our_redis() {
  local pid
  pid=$(cat "$REDIS_PID" 2>/dev/null) || return 0
  # only a live redis-server (Redis deletes its pid file when it stops; a pid may be reused)
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = redis-server ]; then
    echo "run: stopping the Redis it started (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$REDIS_PID"
}
trap stop_our_redis EXIT
scripts/services.sh --redis-dir var/redis
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
.venv/bin/python manage.py installschedules
.venv/bin/python manage.py installfilters
.venv/bin/python manage.py ensureadmin
.venv/bin/python manage.py collectstatic --noinput -v 0
# Not exec'd: this shell stays to stop Redis afterwards. Ctrl-C reaches runstack itself; a SIGTERM or
# SIGHUP sent to this script is passed on.
.venv/bin/python manage.py runstack --bind "$IPS_BIND" &
stack=$!
trap 'kill -TERM "$stack" 2>/dev/null || true' INT TERM HUP
status=0
while :; do
  wait "$stack" && status=0 || status=$?
  kill -0 "$stack" 2>/dev/null || break  # wait was interrupted by a signal: runstack is still stopping
done
exit "$status"
