#!/usr/bin/env bash
# The main job: the cart in demo mode on one machine, with no hardware and
# no cloud. Installs what it needs (mosquitto, ...), then runs the daemon
# (`cart-app run`, as on a cart) against a local mosquitto over mutual TLS
# behind a fault proxy, the backend emulator, and the reader and scanner
# simulators on pseudo-terminals, with the real ledger and catalog files.
#
# With a display (DISPLAY or WAYLAND_DISPLAY) and a terminal, the window is
# the cart and the terminal drives it (scan sample products, cut and restore
# the link, pick test cards). Otherwise the session runs scripted: online
# payment, offline approval within limits, over-limit decline, age check,
# the queue draining when the link returns; a transcript, and a PNG of each
# step drawn by the daemon's own UI. `--scripted` forces the script.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
dir="${CART_DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/cart-demo.XXXXXX")}"
mkdir -p "$dir"
if [ "${1:-}" != "--scripted" ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; } && [ -t 0 ]; then
  cargo run -q -p cart-app --features demo,winit -- demo --dir "$dir" --interactive
else
  cargo run -q -p cart-app --features demo -- demo --dir "$dir"
  echo "Ledger, catalog, config and the step screenshots: $dir (steps/*.png)"
fi
