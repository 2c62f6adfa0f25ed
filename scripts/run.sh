#!/usr/bin/env bash
# The main job. Until the daemon and its demo mode exist, this runs the
# closest runnable thing: a scripted checkout session against a real ledger
# file (online approval, offline approval within limits, over-limit decline,
# the outbox draining when the link returns).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo run -q -p cart-app -- demo-ledger --dir "$dir"
