#!/usr/bin/env bash
# Makes sure the local services the panel (and its tests) talk to are up: Redis on loopback,
# and with --postgres, PostgreSQL with a role for root. Starts them without systemd if needed.
# With --redis-dir DIR (scripts/run.sh), a Redis it has to start keeps its files in DIR, with its
# pid in DIR/redis.pid for whoever stops it; a Redis that already answers is left alone.
set -euo pipefail

ensure_redis() {
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0
  local dir=/var/lib/redis log=/var/log/redis/ips.log pid=()
  if [ -n "$redis_dir" ]; then
    dir=$redis_dir log=$redis_dir/redis.log pid=(--pidfile "$redis_dir/redis.pid")
  fi
  echo "services: starting Redis on 127.0.0.1:6379 (files in $dir)"
  mkdir -p "$dir" "$(dirname "$log")"
  # hz 1: Redis's own housekeeping once a second instead of ten times (an idle Redis 0.13% -> 0.03%
  # of a core here); a BRPOP's timeout may then end up to a second late, which nothing here minds.
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --hz 1 \
    --dir "$dir" --logfile "$log" "${pid[@]}"
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "services: Redis did not start; see $log" >&2
  return 1
}

ensure_postgres() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && ! pg_isready -q 2>/dev/null; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
    for _ in $(seq 100); do pg_isready -q && break; sleep 0.1; done
  fi
  # A superuser role named like the OS user lets the tests connect over the local socket (peer auth).
  local me; me=$(id -un)
  if ! psql -d postgres -tAc "select 1" >/dev/null 2>&1; then
    runuser -u postgres -- psql -q -c "CREATE ROLE \"$me\" SUPERUSER LOGIN" >/dev/null
  fi
}

postgres=false redis_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) postgres=true ;;
    --redis-dir) redis_dir=$(realpath -m "${2:?--redis-dir needs a directory}"); shift ;;
    *) echo "services: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
ensure_redis
if $postgres; then ensure_postgres; fi
exit 0
