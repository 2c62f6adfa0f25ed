#!/usr/bin/env bash
# The main job: the cart in demo mode on one machine, with no hardware and
# no cloud. Installs what it needs (mosquitto, ...), then runs the whole
# cart scripted: a local mosquitto over mutual TLS, the backend emulator,
# the reader and scanner simulators on pseudo-terminals, the ledger, and a
# readable transcript (online payment, offline approval, over-limit decline,
# age check, the queue draining when the link returns).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo run -q -p cart-app --features demo -- demo --dir "$dir"
