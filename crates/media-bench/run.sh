#!/usr/bin/env bash
# Builds the release carillon server and the media load generator, then runs media load
# scenarios against the release server (each run starts its own server on ephemeral ports).
#
#   bash crates/media-bench/run.sh                 # audio, video, replication (1000, 2000)
#   bash crates/media-bench/run.sh audio --attendees 100
#   bash crates/media-bench/run.sh replication --listeners 500,1000 --json /tmp/r.json
#
# Exit status: 0 when the scenarios ran (missed targets included), 1 on a setup error.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/carillon-target}"
cargo build --release -p carillon-server -p carillon-media-bench
# A UDP socket and a WebSocket per simulated client, on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$#" -eq 0 ]; then
    set -- all
fi
exec "$CARGO_TARGET_DIR/release/carillon-media-load" \
    --server-bin "$CARGO_TARGET_DIR/release/carillon" "$@"
