#!/usr/bin/env bash
# End-to-end browser suite: the unmodified npm amazon-chime-sdk-js in Debian's headless Chromium
# (driven by playwright-core) against the real carillon binary.
#
#   CARILLON_BIN=/path/to/carillon bash tests/browser/run.sh [test files...]
#
# Without CARILLON_BIN the binary is ${CARGO_TARGET_DIR:-/var/tmp/carillon-target}/debug/carillon
# (a relative path is taken from the repository root). Needs node/npm and /usr/bin/chromium
# (Debian: apt-get install nodejs npm chromium). Installs web/node_modules from the lockfile when
# it is missing or older than the lockfile, builds web/dist, then runs node's test runner.
# Logs and screenshots go to artifacts/browser/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
web="$repo/web"

if [[ -z "${CARILLON_BIN:-}" ]]; then
  CARILLON_BIN="${CARGO_TARGET_DIR:-/var/tmp/carillon-target}/debug/carillon"
fi
[[ "$CARILLON_BIN" == /* ]] || CARILLON_BIN="$repo/$CARILLON_BIN"
if [[ ! -x "$CARILLON_BIN" ]]; then
  echo "run.sh: carillon binary not found or not executable: $CARILLON_BIN" >&2
  echo "run.sh: build it first (cargo build -p carillon-server) or set CARILLON_BIN" >&2
  exit 2
fi
export CARILLON_BIN

chromium="${CHROMIUM_BIN:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
  echo "run.sh: $chromium not found: apt-get install chromium (or set CHROMIUM_BIN)" >&2
  exit 2
fi

if [[ ! -f "$web/node_modules/.package-lock.json" || "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]]; then
  echo "run.sh: installing web/node_modules (npm ci)"
  (cd "$web" && npm ci --no-audit --no-fund)
fi
(cd "$web" && npm run --silent build)

mkdir -p "$repo/artifacts/browser"
cd "$repo"
if [[ $# -eq 0 ]]; then
  set -- tests/browser/
fi
# One file at a time: each starts its own server and Chromium processes on a 2-core machine.
exec node --test --test-concurrency=1 "$@"
