#!/usr/bin/env bash
# Installs the Debian packages the cart's tests and demo need. Works as root
# (CI has no sudo) and through sudo otherwise; quiet when all is installed.
set -euo pipefail

PACKAGES=(
  pkg-config         # -sys crates find their C libraries
  mosquitto          # the MQTT broker the uplink tests and the demo start
  swtpm swtpm-tools  # the TPM simulator
  tpm2-tools         # inspecting keys and NV indices in tests
  libtss2-dev        # tss-esapi links against tpm2-tss
  strace             # fsync counting in the ledger benchmark
  bubblewrap         # host stand-in for the unit's sandbox (cart-app/tests/sandbox.rs): read-only root, another uid
  systemd            # systemd-analyze verify/security on the unit (scripts/check-systemd.sh)
  python3            # scripts/check-rust-versions.py
  fontconfig         # the UI finds its font through fontconfig (fc-list checks it)
  fonts-dejavu-core  # the UI's font: tests and screenshots need one
  libinput-dev       # ui's linuxkms feature (device image): input
  libudev-dev        # ui's linuxkms feature: device discovery
  libxkbcommon-dev   # ui's linuxkms and winit features: keymaps
  libseat-dev        # ui's linuxkms feature: seat and DRM access
)

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
