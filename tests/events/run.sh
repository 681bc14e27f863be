#!/usr/bin/env bash
# Runs the event-delivery suite (carillon -> SQS, SNS, Lambda, EventBridge on a local moto server, webhooks).
#
#   CARILLON_BIN=/path/to/carillon bash tests/events/run.sh [pytest args...]
#
# Without CARILLON_BIN the binary is ${CARGO_TARGET_DIR:-target}/debug/carillon, relative to the
# repository root when the path is relative. The virtualenv lives in tests/events/.venv and is
# (re)installed only when requirements.txt or the interpreter changes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [[ -z "${CARILLON_BIN:-}" ]]; then
  target="${CARGO_TARGET_DIR:-target}"
  [[ "$target" == /* ]] || target="$repo/$target"
  CARILLON_BIN="$target/debug/carillon"
fi
if [[ ! -f "$CARILLON_BIN" || ! -x "$CARILLON_BIN" ]]; then
  echo "run.sh: carillon binary not found or not executable: $CARILLON_BIN" >&2
  echo "run.sh: build it first (cargo build -p carillon-server) or set CARILLON_BIN" >&2
  exit 2
fi
# Absolute path, resolved against the caller's directory.
CARILLON_BIN="$(cd "$(dirname "$CARILLON_BIN")" && pwd)/$(basename "$CARILLON_BIN")"
export CARILLON_BIN

if [[ ! -x "$venv/bin/python" ]]; then
  echo "run.sh: creating virtualenv in $venv"
  "$python" -m venv "$venv"
fi

stamp="$venv/.requirements.sha256"
want="$( { cat "$here/requirements.txt"; "$venv/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "run.sh: installing requirements"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" >"$stamp"
fi

cd "$here"
exec "$venv/bin/python" -m pytest "$@"
