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
  qemu-system-x86    # the QEMU suite's machine (tests/qemu)
  debootstrap        # the QEMU guest's Debian root (tests/qemu/build-guest.sh)
  fdisk              # sfdisk: the guest's GPT disk
  e2fsprogs          # mkfs.ext4 -d and debugfs: the guest's partitions
  dosfstools         # mkfs.fat: the guest's boot partition
  mtools             # mcopy: GRUB and its files into the guest's boot partition
  grub-common        # grub-mkimage, grub-editenv: the guest's GRUB on EFI
  grub-efi-amd64-bin # GRUB's x86_64-efi modules (only the files: nothing is installed to boot)
  ovmf               # UEFI firmware: the update scenarios boot through GRUB (scripts/qemu-updates.sh)
  libsqlite3-dev     # the recipe-style release build links the system's SQLite, as the image does
  libzstd-dev        # ... and the system's zstd (scripts/build-recipe-offline.sh)
  python3-venv       # the layer's lint tools live in a venv (below)
  rauc               # rauc bundle: the update scenarios' signed bundles (tests/qemu)
  squashfs-tools     # mksquashfs, which rauc bundle runs
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

# The Yocto layer's checks (scripts/check-layer.sh): oelint-adv and kas from
# PyPI, in a venv under target/ (no system Python packages touched).
YOCTO_TOOLS="$(cd "$(dirname "$0")/.." && pwd)/target/yocto-tools"
if ! "$YOCTO_TOOLS/bin/python" -c 'import kas, oelint_adv' 2>/dev/null; then
  echo "setup: installing oelint-adv and kas into $YOCTO_TOOLS"
  rm -rf "$YOCTO_TOOLS"
  python3 -m venv "$YOCTO_TOOLS"
  "$YOCTO_TOOLS/bin/pip" install --quiet --disable-pip-version-check 'oelint-adv==9.11.2' 'kas==5.5'
fi
