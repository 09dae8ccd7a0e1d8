#!/usr/bin/env bash
# Installs what the panel needs on a Debian machine, as root: Debian packages, then a
# virtualenv in .venv from the pinned requirements. Safe to run again: it only does what is
# missing. Usage: scripts/setup.sh [--dev]   (--dev adds the test, lint and browser tools)
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

RUNTIME_PKGS=(python3 python3-venv python3-dev gcc libnftables1 nftables redis-server iproute2 ca-certificates)
DEV_PKGS=(postgresql chromium fonts-dejavu-core)

missing_packages() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

install_packages() {
  local want=("${RUNTIME_PKGS[@]}")
  [ "$DEV" = 1 ] && want+=("${DEV_PKGS[@]}")
  # shellcheck disable=SC2207
  want+=($(need_npm))
  local missing
  missing=$(missing_packages "${want[@]}")
  [ -z "$missing" ] && return 0
  echo "setup: installing Debian packages: $missing"
  # Never let a package's install script start a service behind our back (containers, CI).
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
  local log; log=$(mktemp /tmp/ips-apt.XXXXXX.log)
  # shellcheck disable=SC2086
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } \
      >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: installing Debian packages failed (log above, kept in $log)" >&2
    [ "$created" = 1 ] && rm -f "$policy"
    return 1
  fi
  rm -f "$log"
  [ "$created" = 1 ] && rm -f "$policy"
  return 0
}

# Front-end libraries (the dashboard's charts) come pinned from the npm registry: package.json and
# package-lock.json say which, `npm ci` installs exactly those into node_modules, and Django serves
# them from there as static files (config/settings.py). Never a CDN, never a committed copy.
need_npm() {
  command -v npm >/dev/null 2>&1 || echo "nodejs npm"
}

install_npm_packages() {
  local stamp=node_modules/.ips-installed want
  want=$(sha256sum package-lock.json | cut -c1-16)
  if [ -f "$stamp" ] && grep -qxF "$want" "$stamp"; then return 0; fi
  echo "setup: installing front-end packages from package-lock.json (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
}

install_python() {
  local reqs=requirements.txt stamp=.venv/.installed
  [ "$DEV" = 1 ] && reqs=requirements-dev.txt
  [ -x .venv/bin/python ] || python3 -m venv .venv
  local want
  want="$reqs $(cat requirements.txt "$reqs" | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ] && grep -qxF "$want" "$stamp"; then return 0; fi
  echo "setup: installing Python packages from $reqs into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r "$reqs"
  echo "$want" >> "$stamp"
}

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (it installs Debian packages), e.g. sudo $0" >&2
  exit 1
fi
install_packages
install_python
scripts/build-native.sh  # the filter engine's one-pass literal scan (C, optional)
install_npm_packages
