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
#
# The run's folder (ledger, catalog, config, certificates, screenshots) is
# printed first. The interactive run removes it on exit unless asked
# (`--keep`, or CART_DEMO_DIR names a folder to use); the scripted run keeps
# it, since its screenshots are its output. Closing the window ends the
# interactive demo, as `quit` does.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
args=()
if [ -n "${CART_DEMO_DIR:-}" ]; then
  args+=(--dir "$CART_DEMO_DIR")
fi
if [ "${1:-}" = "--keep" ]; then
  args+=(--keep)
  shift
fi
if [ "${1:-}" != "--scripted" ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; } && [ -t 0 ]; then
  features=demo,winit
  mode=(--interactive)
else
  features=demo
  mode=()
  [ -n "${CART_DEMO_DIR:-}" ] || args+=(--keep)
fi
# The first build takes minutes: its progress shows (later runs are quiet).
if [ ! -x target/debug/cart-app ] || [ ! -f "target/debug/.demo-$features" ]; then
  echo "Building the cart (the first time takes a few minutes)..."
  cargo build -p cart-app --features "$features"
  touch "target/debug/.demo-$features"
fi
exec cargo run -q -p cart-app --features "$features" -- demo "${args[@]}" "${mode[@]}"
