#!/usr/bin/env bash
# The speed benchmark against fail2ban, in one command (Debian, as root):
#   bench/run.sh            1,000,000-line logs (fail2ban needs several minutes on apache-envscan)
#   bench/run.sh --quick    100,000-line logs, a fast check
# Every other option goes to bench/filter_speed.py (see bench/run.sh --help).
# It installs what is missing first: Debian's fail2ban (for fail2ban-regex) without
# starting its service, and the project's virtualenv (scripts/setup.sh) for our side.
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/install.sh

ensure_fail2ban() {
  command -v fail2ban-regex >/dev/null 2>&1 || install_without_services fail2ban
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
