#!/usr/bin/env bash
# The update issue's scenarios 1-3 in QEMU (docs/updates.md, "Testing
# updates"): two real builds of the cart, the cart booting as it does in the
# field (OVMF, GRUB from the EFI partition, the slot GRUB's environment
# chooses). Not in the README's test command: two release builds, three
# bundles of a whole root file system and a dozen firmware boots under TCG
# take about an hour here.
#
#   scripts/qemu-updates.sh [--build-only] [OLD_REF]
#     OLD_REF        the older build's git ref (default: the tag update-base)
#     --build-only   steps 1-3 only (the scenarios another time)
#   QEMU_SCENARIOS   default 13,14,15 (the first boot always runs)
#
# 1. The older build: OLD_REF checked out in a worktree and built the way
#    the recipe builds (scripts/build-recipe-offline.sh's flags), sharing
#    target/ (only the workspace's crates build again when the lock is the
#    same); its cart-app and cartctl go to target/qemu/old-bin.
# 2. The newer build: this tree, scripts/build-recipe-offline.sh.
# 3. Two guests (tests/qemu/build-guest.sh): update-old, the disk whose slot
#    A runs the older build as IMAGE_VERSION 1.0.0; update-new, the newer
#    build's root file system as an image (rootfs.ext4), which the scenarios
#    turn into bundles 1.1.0, 1.2.0 (its daemon broken) and 1.3.0.
# 4. The suite's scenarios 13-15 on update-old through OVMF.
# Needs what scripts/setup.sh installs (ovmf, grub-efi-amd64-bin, mtools,
# rauc, squashfs-tools besides the suite's), as root.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

build_only=0
if [ "${1:-}" = --build-only ]; then build_only=1; shift; fi
old_ref=${1:-update-base}
[ "$(id -u)" -eq 0 ] || { echo "qemu-updates: run as root (the guest's build needs it)" >&2; exit 1; }
git rev-parse --verify -q "$old_ref^{commit}" >/dev/null || {
  echo "qemu-updates: no git ref $old_ref: fetch the tags (git fetch --tags) or name the older build's commit" >&2
  exit 1
}
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || { echo "qemu-updates: OVMF missing: run scripts/setup.sh (Debian package ovmf)" >&2; exit 1; }

t0=$(date +%s)
say() { echo "qemu-updates: +$(( $(date +%s) - t0 )) s $*"; }

# 1. The older build (kept in target/qemu/old-bin with its commit: built
# again only for another ref).
old_commit=$(git rev-parse "$old_ref^{commit}")
scripts/build-recipe-offline.sh >/dev/null # the vendor folder of this tree's lock
if [ "$(cat target/qemu/old-bin/.commit 2>/dev/null)" != "$old_commit" ]; then
  wt=$top/target/qemu/old-src
  mkdir -p target/qemu
  git worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"
  git worktree prune
  git worktree add --detach "$wt" "$old_commit" >/dev/null
  say "building $old_ref (${old_commit:0:7}) in $wt"
  export LIBSQLITE3_SYS_USE_PKG_CONFIG=1 ZSTD_SYS_USE_PKG_CONFIG=1
  old_out=$top/target/release
  if cmp -s Cargo.lock "$wt/Cargo.lock"; then
    (cd "$wt" && CARGO_TARGET_DIR=$top/target cargo build --offline --frozen -p cart-app --release --features linuxkms \
      --config 'source.crates-io.replace-with="recipe-vendor"' \
      --config "source.recipe-vendor.directory=\"$top/target/recipe-vendor\"")
  else
    # Another lock: its own vendor folder, its own dependencies (slower).
    (cd "$wt" && CARGO_TARGET_DIR=$top/target/qemu/old-target scripts/build-recipe-offline.sh)
    old_out=$top/target/qemu/old-target/release
  fi
  rm -rf target/qemu/old-bin
  mkdir -p target/qemu/old-bin
  cp "$old_out/cart-app" "$old_out/cartctl" target/qemu/old-bin/
  echo "$old_commit" > target/qemu/old-bin/.commit
  git worktree remove --force "$wt"
  # cargo copies this tree's binaries back over the older ones it left in
  # target/release when it builds this tree next.
  rm -f target/release/cart-app target/release/cartctl
fi

# 2. The newer build.
say "building this tree"
scripts/build-recipe-offline.sh
if cmp -s target/release/cart-app target/qemu/old-bin/cart-app; then
  echo "qemu-updates: $old_ref and this tree build the same cart-app: nothing to update to" >&2
  exit 1
fi

# 3. The guests.
say "guest update-old (slot A: $old_ref as 1.0.0)"
CART_BIN_DIR=$top/target/qemu/old-bin CART_GUEST_NAME=update-old CART_GUEST_VERSION=1.0.0 \
  CART_GUEST_DATA_MB=1536 tests/qemu/build-guest.sh
say "guest update-new (the bundles' root file system)"
CART_GUEST_NAME=update-new CART_GUEST_VERSION=1.1.0 CART_GUEST_ROOTFS=1 \
  tests/qemu/build-guest.sh
ls -l target/qemu/update-new/rootfs.ext4
[ "$build_only" = 0 ] || { say "built"; exit 0; }

# 4. The scenarios.
say "scenarios ${QEMU_SCENARIOS:-13,14,15}"
CART_QEMU_GUEST=update-old CART_QEMU_BOOT=firmware \
  CART_QEMU_UPDATE_ROOTFS=$top/target/qemu/update-new/rootfs.ext4 \
  QEMU_SCENARIOS=${QEMU_SCENARIOS:-13,14,15} \
  cargo test -p qemu-suite --all-features --locked --test scenarios -- --nocapture a_cart_in_qemu
say "done"
