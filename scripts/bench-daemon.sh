#!/usr/bin/env bash
# The daemon's figures in a release build: start to READY=1, idle RSS and
# CPU, scan to item drawn (p50/p99), binary size (also stripped). Needs
# mosquitto (scripts/setup.sh installs it). Knobs: BENCH_STARTS,
# BENCH_IDLE_SECS, BENCH_SCANS.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo bench -p cart-app --features demo --bench daemon --locked
cargo build -p cart-app --release --locked --bin cart-app --features linuxkms
bin="${CARGO_TARGET_DIR:-target}/release/cart-app"
strip -o "$bin.stripped" "$bin"
echo "release binary (image features: linuxkms): $(stat -c %s "$bin") bytes, stripped $(stat -c %s "$bin.stripped") bytes"
