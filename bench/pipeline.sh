#!/usr/bin/env bash
# The live pipeline against a live fail2ban-server, in one command (Debian, as root):
#   bench/pipeline.sh            200,000 and 1,000,000 lines per scenario, SQLite (see --help for the time)
#   bench/pipeline.sh --quick    100,000 lines, SQLite, a short steady-rate search (under ~10 minutes)
# Every option goes to bench/pipeline.py (bench/pipeline.sh --help lists them).
# It installs what is missing first: Debian's fail2ban (fail2ban-server, fail2ban-client) and
# python3-pyinotify (the backend Debian's fail2ban uses when it is there), without starting the
# fail2ban service, and the project's virtualenv (scripts/setup.sh) for our side.
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/install.sh

ensure_fail2ban() {
  local missing=()
  command -v fail2ban-server >/dev/null 2>&1 || missing+=(fail2ban)
  # fail2ban only recommends pyinotify; without it the live server polls its logs, which is
  # not how a Debian admin's fail2ban runs
  /usr/bin/python3 -c "import pyinotify" >/dev/null 2>&1 || missing+=(python3-pyinotify)
  [ "${#missing[@]}" = 0 ] || install_without_services "${missing[@]}"
}

case " $* " in
  *" --help "*|*" -h "*) ;;  # help needs neither fail2ban nor the venv to be installed
  *) ensure_fail2ban; ensure_venv ;;
esac

PYTHON=.venv/bin/python
[ -x "$PYTHON" ] || PYTHON=python3
# as bench/run.sh: our modules byte-compiled as Debian byte-compiles fail2ban's, and the
# engine's C scan built as setup builds it (a no-op when up to date)
"$PYTHON" -m compileall -q config jails bans watchers manage.py >/dev/null || true
scripts/build-native.sh
exec "$PYTHON" bench/pipeline.py "$@"
