# Sourced by bench/run.sh and bench/pipeline.sh (Debian, as root): install what a benchmark needs,
# never starting the fail2ban service it installs.

POLICY=/usr/sbin/policy-rc.d

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "bench: $1 is missing and installing it needs root; run as root (e.g. sudo $0)" >&2
    exit 2
  fi
}

# install_without_services PACKAGE...: apt-get install with a policy-rc.d answering 101, which
# forbids package scripts to start services: we run fail2ban-regex, or our own fail2ban-server
# with a private configuration, never the packaged daemon banning with its actions on this
# machine's firewall. An admin's own policy-rc.d is left alone.
install_without_services() {
  need_root "$*"
  echo "bench: installing $* (the fail2ban service is not started)"
  local created=0
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"
    chmod +x "$POLICY"
    created=1
    trap 'rm -f "$POLICY"' EXIT  # removed even if apt-get fails
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
  if [ "$created" = 1 ]; then
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
  # Our side runs from the project's virtualenv; only set it up when it is not usable,
  # so that a working venv is never reinstalled under other people's feet.
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import django" >/dev/null 2>&1; then
    return 0
  fi
  need_root "the project's virtualenv (.venv)"
  scripts/setup.sh
}
