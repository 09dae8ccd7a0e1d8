#!/usr/bin/env bash
# Builds the engine's optional C part: the literal prefilter's one-pass scan
# (jails/engine/litscan.c -> jails/engine/_litscan.so, loaded through ctypes).
# scripts/setup.sh and bench/run.sh run it. Without gcc nothing is built and the engine
# scans in Python: slower, the same results. Rebuilds only when the source is newer.
set -euo pipefail
cd "$(dirname "$0")/.."
src=jails/engine/litscan.c
out=jails/engine/_litscan.so
if [ -f "$out" ] && [ "$out" -nt "$src" ]; then
  exit 0
fi
if ! command -v gcc >/dev/null 2>&1; then
  echo "build-native: gcc is missing; the filter engine scans in Python (slower, same results)" >&2
  exit 0
fi
gcc -O2 -Wall -Wextra -shared -fPIC -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
