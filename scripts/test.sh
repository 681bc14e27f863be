#!/usr/bin/env bash
# The project's test command (README): formatting, lints, every Rust test, the Python suite that
# drives the real binary with boto3 and the AWS CLI, the event-delivery suite (moto), and the browser suite that joins meetings
# with the unmodified amazon-chime-sdk-js in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/carillon-target}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "python suite (boto3, aws-cli)"
CARILLON_BIN="$CARGO_TARGET_DIR/debug/carillon" bash tests/python/run.sh

step "events suite (SQS, SNS, EventBridge on moto; Lambda stub; webhooks; crash and restart)"
CARILLON_BIN="$CARGO_TARGET_DIR/debug/carillon" bash tests/events/run.sh

step "browser suite (amazon-chime-sdk-js in headless Chromium)"
CARILLON_BIN="$CARGO_TARGET_DIR/debug/carillon" bash tests/browser/run.sh

step "all tests passed"
