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

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "bench: $1 is missing and installing it needs root; run as root (e.g. sudo $0)" >&2
    exit 2
  fi
}

POLICY=/usr/sbin/policy-rc.d

ensure_fail2ban() {
  local missing=()
  command -v fail2ban-server >/dev/null 2>&1 || missing+=(fail2ban)
  # fail2ban only recommends pyinotify; without it the live server polls its logs, which is
  # not how a Debian admin's fail2ban runs
  /usr/bin/python3 -c "import pyinotify" >/dev/null 2>&1 || missing+=(python3-pyinotify)
  [ "${#missing[@]}" = 0 ] && return 0
  need_root "${missing[*]}"
  echo "bench: installing ${missing[*]} (the fail2ban service is not started)"
  # policy-rc.d answering 101 forbids package scripts to start services: we run our own
  # fail2ban-server with a private configuration, never the packaged daemon with its
  # banning actions on this machine's firewall.
  local created=0
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"
    chmod +x "$POLICY"
    created=1
    trap 'rm -f "$POLICY"' EXIT  # removed even if apt-get fails
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ "$created" = 1 ]; then  # an admin's own policy-rc.d is left alone
    rm -f "$POLICY"
    trap - EXIT
  fi
  # belt and braces: should a service manager have started the packaged daemon anyway, stop it
  # (it would ban with the packaged jail.conf's actions); never on a host where it ran before
  if [ "$created" = 1 ] && command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet fail2ban 2>/dev/null; then
    systemctl stop fail2ban || true
  fi
}

ensure_venv() {
  # Our stack runs from the project's virtualenv; only set it up when it is not usable,
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
# as bench/run.sh: our modules byte-compiled as Debian byte-compiles fail2ban's, and the
# engine's C scan built as setup builds it (a no-op when up to date)
"$PYTHON" -m compileall -q config jails bans watchers manage.py >/dev/null || true
scripts/build-native.sh
exec "$PYTHON" bench/pipeline.py "$@"
