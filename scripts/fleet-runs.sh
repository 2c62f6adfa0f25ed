#!/usr/bin/env bash
# The fleet simulator's full runs (docs/fleet.md): every scenario at
# CARTS carts (default 1,000), the bill at the shipped settings and the
# alternatives, and the quota projection; reports as JSON in OUT
# (default target/fleet). About 25 minutes on 2 cores at 1,000 carts.
#
#   scripts/fleet-runs.sh [OUT]          CARTS=2000 scripts/fleet-runs.sh
#
# Needs what scripts/setup.sh installs (mosquitto) and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/fleet}"
carts="${CARTS:-1000}"
mkdir -p "$out"
cargo build --release --locked -p fleet-sim
sim=target/release/fleet-sim

# 1. Steady, real time: broker load, CPU and memory.
"$sim" --out "$out/full" steady --carts "$carts" --secs 180 --warmup 20 --checkout-every 3600
# The bill: 100 carts per run, simulated time 60 times faster (4 hours
# represented), the shipped settings beside the alternatives; then the
# shipped settings alone for the projection.
"$sim" --out "$out/bill" steady --carts 100 --secs 240 --warmup 10 --time-scale 60 \
  --checkout-every 3600 --setting before:60:300 --setting l300-s900:300:900 \
  --setting l600-s900:600:900 --setting shipped:600:3600 --setting l1200-s3600:1200:3600
"$sim" --out "$out" steady --carts 100 --secs 240 --warmup 10 --time-scale 60 --checkout-every 3600
# 2. Broker restart, with and without the jittered backoff.
"$sim" --out "$out" restart --carts "$carts" --down-secs 5
"$sim" --out "$out" restart --carts "$carts" --down-secs 5 --no-jitter
# 3. A one-hour outage for every cart.
"$sim" --out "$out" outage --carts "$carts" --outage-secs 3600 --checkout-every 300
# 4. A rollout at 100 a minute; a quarter of the carts fail; abort at 20 %.
"$sim" --out "$out" rollout --carts "$carts" --per-minute 100 --fail-every 4 \
  --abort-percent 20 --abort-min-executed 100
# The quota projection from the steady and restart reports.
"$sim" --out "$out" project --reports "$out"
echo "reports in $out"
