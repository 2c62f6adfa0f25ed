#!/usr/bin/env bash
# The one command that passes every test on a fresh Debian 12 machine:
# installs what the tests need, then format, lints, the rust-version check, the
# Yocto layer's checks with the image's one release build, the QEMU guest, and
# every test of the workspace in one debug build with all features (the QEMU
# scenarios included: tests/qemu, docs/qemu.md).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# A full run writes ~10 GB under target/ (the debug build 3.5 GB, the release
# build, the QEMU guest and its run folders); a disk that fills mid-link fails
# with a linker bus error that names nothing. Say it up front instead.
need_gb=${CART_TEST_FREE_GB:-12}
mkdir -p target
free_gb=$(( $(df -Pk target | awk 'NR==2 {print $4}') / 1024 / 1024 ))
if [ "$free_gb" -lt "$need_gb" ]; then
  echo "test.sh: only ${free_gb} GB free under target/, a full run needs about ${need_gb} GB:" >&2
  echo "  free some (cargo clean; rm -rf target/qemu/runs) or set CART_TEST_FREE_GB" >&2
  exit 1
fi
# One clean build: incremental caches would only cost time and disk here.
export CARGO_INCREMENTAL=0
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
python3 scripts/check-rust-versions.py
scripts/check-layer.sh
# The QEMU suite's guest, from the release build check-layer.sh just made
# (cached under target/qemu; rebuilt when an input changes).
tests/qemu/build-guest.sh
cargo test --workspace --all-features --locked
scripts/check-systemd.sh
