#!/usr/bin/env bash
# Parses yocto-layer/ with bitbake against the layers kas/common.yml pins,
# offline (BB_NO_NETWORK), and resolves the images' whole dependency graph:
#   bitbake -p                        parse every recipe of every layer
#   bitbake -g cart-image cart-image-dev [cart-bundle]
#                                     every provider the images (and, on the
#                                     machines with updates, the bundle) need
# It fails on a parse error, a missing provider, or any WARNING or ERROR line
# bitbake prints (QA warnings at parse time included). Not in the test
# command: it needs the layers checked out (~1.5 GB) and takes minutes.
#
#   scripts/check-yocto.sh [MACHINE]        (default qemux86-64)
#
# Where it expects the layers: YOCTO_SOURCES (default target/yocto-sources)
# holding git checkouts (clones) named
#   bitbake              (openembedded/bitbake, branch 2.18)
#   openembedded-core    (branch wrynose)
#   meta-openembedded    (branch wrynose)
#   meta-security        (branch wrynose)
#   meta-rauc            (rauc/meta-rauc, branch wrynose)
# Each is put at the commit kas/common.yml pins (`git checkout --detach`);
# the commit must be in the clone. The build folder is YOCTO_BUILD (default
# ${TMPDIR:-/tmp}/cart-yocto-check-MACHINE), outside the checkout: bitbake
# parses a snapshot of this checkout's files (tracked and untracked, not
# ignored) there, as cart-app's externalsrc. (externalsrc hashes a source
# tree through git unless the build folder is in the same repository; then
# it reads every file under it, target/ included.) Host tools bitbake's
# sanity check wants:
# chrpath cpio diffstat gawk lz4 zstd file, and an en_US.UTF-8 locale.
# bitbake refuses to run as root: as root the script runs it as the user
# YOCTO_USER (default cart-yocto, created if missing).
#
# A full image build needs the upstream source mirrors (every recipe's
# SRC_URI); this script checks everything short of fetching and compiling.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
machine=${1:-qemux86-64}
sources=$(realpath -m "${YOCTO_SOURCES:-target/yocto-sources}")
build=$(realpath -m "${YOCTO_BUILD:-${TMPDIR:-/tmp}/cart-yocto-check-$machine}")

for tool in chrpath cpio diffstat gawk lz4 zstd file git python3; do
  command -v "$tool" >/dev/null || { echo "check-yocto: $tool missing (apt-get install $tool)" >&2; exit 1; }
done
locale -a | grep -qi '^en_US.utf-\?8$' || {
  echo "check-yocto: no en_US.UTF-8 locale (uncomment it in /etc/locale.gen, run locale-gen)" >&2; exit 1; }

# The pins, from the kas file itself.
pins=$(python3 - yocto-layer/kas/common.yml <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
for m in re.finditer(r"^  ([\w-]+):\n((?:    .*\n|\s*\n)*)", text, re.M):
    name, body = m.group(1), m.group(2)
    c = re.search(r"commit: ([0-9a-f]{40})", body)
    if c:
        print(name, c.group(1))
EOF
)
while read -r name commit; do
  dir=$sources/$name
  [ -d "$dir/.git" ] || { echo "check-yocto: $dir is not a git checkout of $name" >&2; exit 1; }
  git -C "$dir" cat-file -e "$commit^{commit}" 2>/dev/null ||
    { echo "check-yocto: $name has no commit $commit (fetch its branch)" >&2; exit 1; }
  if [ "$(git -C "$dir" rev-parse HEAD 2>/dev/null)" != "$commit" ]; then
    git -C "$dir" checkout -q --detach "$commit"
  fi
  echo "check-yocto: $name at $commit"
done <<< "$pins"

mkdir -p "$build/conf"
# The checkout as it is now (the layer and cart-app's source).
snapshot=$build/cart-src
rm -rf "$snapshot"
mkdir -p "$snapshot"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' _ |
  tar --null -T - -cf - | tar -xf - -C "$snapshot"
cat > "$build/conf/bblayers.conf" <<EOF
BBPATH = "\${TOPDIR}"
BBFILES ?= ""
BBLAYERS = " \\
  $sources/openembedded-core/meta \\
  $sources/meta-openembedded/meta-oe \\
  $sources/meta-openembedded/meta-python \\
  $sources/meta-openembedded/meta-networking \\
  $sources/meta-security/meta-tpm \\
  $sources/meta-rauc \\
  $snapshot/yocto-layer \\
"
EOF
# What kas/cart-$machine.yml and kas/dev.yml put in local.conf, offline.
# qemux86-64 boots GRUB (RAUC's grub backend picks the root slot), with a
# bundle to resolve too; the other machines systemd-boot.
efi_provider=systemd-boot
targets="cart-image cart-image-dev"
if [ "$machine" = qemux86-64 ]; then
  efi_provider=grub-efi
  targets="$targets cart-bundle"
fi
cat > "$build/conf/local.conf" <<EOF
MACHINE = "$machine"
DISTRO = "cart"
MACHINE_FEATURES:append = " efi"
EFI_PROVIDER = "$efi_provider"
INHERIT += "externalsrc"
EXTERNALSRC:pn-cart-app = "\${CART_LAYERDIR}/.."
BB_NO_NETWORK = "1"
CONF_VERSION = "2"
EOF

run() {
  local cmd="export LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8; cd '$build' && export BBPATH='$build' PATH='$sources/bitbake/bin:$sources/openembedded-core/scripts:/usr/sbin:/usr/bin:/sbin:/bin' && $*"
  if [ "$(id -u)" -eq 0 ]; then
    local user=${YOCTO_USER:-cart-yocto}
    id "$user" >/dev/null 2>&1 || useradd --system --create-home "$user"
    chown -R "$user" "$build"
    runuser -u "$user" -- bash -c "$cmd"
  else
    bash -c "$cmd"
  fi
}

log=$build/check.log
: > "$log"
[ "$(id -u)" -ne 0 ] || chown "${YOCTO_USER:-cart-yocto}" "$log" 2>/dev/null || true
status=0
run "bitbake -p" 2>&1 | tee -a "$log" || status=1
if [ $status -eq 0 ]; then
  run "bitbake -g $targets" 2>&1 | tee -a "$log" || status=1
fi
if grep -E '^(WARNING|ERROR)' "$log" >/dev/null; then
  echo "check-yocto: bitbake printed warnings or errors (above)" >&2
  status=1
fi
if [ $status -eq 0 ]; then
  n=$(wc -l < "$build/pn-buildlist")
  echo "check-yocto: $machine parsed; $targets resolve ($n recipes in pn-buildlist)"
fi
exit $status
