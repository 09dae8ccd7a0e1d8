#!/usr/bin/env bash
# Runs this server as a fleet agent, on Debian as root, installing what it needs first: its log
# watchers and its firewall worker, under the credentials `manage.py hostctl add NAME` printed on
# the central server (docs/fleet.md). In the foreground by default (Ctrl-C stops it); with
# --install-units, as the systemd units deploy/ips-agent-*.service instead (the project in /opt/ips).
#
#   scripts/agent.sh --env-file web1.env [--install-units]
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/agent.sh --env-file FILE [--install-units]" >&2
  echo "  FILE: the environment \`manage.py hostctl add NAME --env-file FILE\` wrote on the central server" >&2
  exit 2
}
env_file="" units=false
while [ $# -gt 0 ]; do
  case "$1" in
    --env-file) [ $# -ge 2 ] || usage; env_file="$2"; shift 2 ;;
    --install-units) units=true; shift ;;
    -h|--help) usage ;;
    *) echo "agent: unknown option $1" >&2; usage ;;
  esac
done
[ -n "$env_file" ] || usage
[ -r "$env_file" ] || { echo "agent: cannot read $env_file" >&2; exit 2; }
grep -q '^IPS_FLEET_ROLE=agent$' "$env_file" || {
  echo "agent: $env_file is not an agent's environment (no IPS_FLEET_ROLE=agent): use the file hostctl add wrote" >&2
  exit 2
}

scripts/setup.sh
mkdir -p var && chmod 700 var
# the agent's own secret key (Django needs one); never the panel's, which signs the panel's sessions
if [ ! -s var/secret_key ]; then
  (umask 077; .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(50))" > var/secret_key)
fi

if $units; then
  if [ "$(pwd -P)" != /opt/ips ]; then
    echo "agent: --install-units runs the project from /opt/ips (the units' WorkingDirectory); it is in $(pwd -P)." >&2
    echo "       Put it there (and run this from there), or run without --install-units (in the foreground)." >&2
    exit 2
  fi
  install -d -m 755 /etc/ips
  getent group ips >/dev/null || groupadd --system ips
  getent passwd ips >/dev/null || useradd --system --gid ips --home-dir /var/lib/ips --create-home ips
  { cat "$env_file"; echo "IPS_SECRET_KEY=$(cat var/secret_key)"; } > /etc/ips/agent.env.new
  chown root:ips /etc/ips/agent.env.new && chmod 640 /etc/ips/agent.env.new && mv /etc/ips/agent.env.new /etc/ips/agent.env
  set -a; . /etc/ips/agent.env; set +a
  .venv/bin/python manage.py agentcheck
  cp deploy/ips-agent-watchers.service deploy/ips-agent-firewall.service /etc/systemd/system/
  systemctl daemon-reload
  systemctl enable --now ips-agent-watchers ips-agent-firewall
  echo "agent: $IPS_HOST_NAME runs as ips-agent-watchers and ips-agent-firewall (journalctl -u 'ips-agent-*')"
  exit 0
fi

set -a; . "$env_file"; set +a
export IPS_SECRET_KEY="${IPS_SECRET_KEY:-$(cat var/secret_key)}"
.venv/bin/python manage.py agentcheck
exec .venv/bin/python manage.py runstack
