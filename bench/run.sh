#!/usr/bin/env bash
# The speed benchmark against fail2ban, in one command (Debian, as root):
#   bench/run.sh            1,000,000-line logs (fail2ban needs several minutes on apache-envscan)
#   bench/run.sh --quick    100,000-line logs, a fast check
# Every other option goes to bench/filter_speed.py (see bench/run.sh --help).
# It installs what is missing first: Debian's fail2ban (for fail2ban-regex) without
# starting its service, and the project's virtualenv (scripts/setup.sh) for our side.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "bench: $1 is missing and installing it needs root; run as root (e.g. sudo $0)" >&2
    exit 2
  fi
}

POLICY=/usr/sbin/policy-rc.d

ensure_fail2ban() {
  command -v fail2ban-regex >/dev/null 2>&1 && return 0
  need_root "fail2ban-regex"
  echo "bench: installing Debian's fail2ban (its service is not started)"
  # policy-rc.d answering 101 forbids package scripts to start services: we only want the
  # fail2ban-regex tool, not a fail2ban daemon banning addresses on this machine.
  local created=0
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"
    chmod +x "$POLICY"
    created=1
    trap 'rm -f "$POLICY"' EXIT  # removed even if apt-get fails
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fail2ban
  if [ "$created" = 1 ]; then  # an admin's own policy-rc.d is left alone
    rm -f "$POLICY"
    trap - EXIT
  fi
}

ensure_venv() {
  # Our filtertest runs from the project's virtualenv; only set it up when it is not usable,
  # so that a working venv is never reinstalled under other people's feet.
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import django" >/dev/null 2>&1; then
    return 0
  fi
  need_root "the project's virtualenv (.venv)"
  scripts/setup.sh
}

case " $* " in
  *" --help "*|*" -h "*) ;;  # help needs neither fail2ban nor the venv to be installed
  *) ensure_fail2ban; ensure_venv ;;
esac

PYTHON=.venv/bin/python
[ -x "$PYTHON" ] || PYTHON=python3
# Debian byte-compiles fail2ban's modules when it installs them; ours are byte-compiled
# here alike, so that neither side compiles source on each start (a machine may set
# PYTHONDONTWRITEBYTECODE, and then Python never writes the cache itself).
"$PYTHON" -m compileall -q jails manage.py >/dev/null || true
scripts/build-native.sh  # the engine's C scan, as setup builds it (a no-op when up to date)
exec "$PYTHON" bench/filter_speed.py "$@"
