#!/usr/bin/env bash
# Builds carillon and the load generator in release mode, then runs the load generator
# against the release server. Extra arguments go to carillon-loadgen, e.g.:
#   bash crates/bench/run.sh --connections 64 --duration 20s
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/carillon-target}"
cargo build --release -p carillon-server -p carillon-bench
exec "$CARGO_TARGET_DIR/release/carillon-loadgen" \
    --server-bin "$CARGO_TARGET_DIR/release/carillon" "$@"
