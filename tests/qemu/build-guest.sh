#!/usr/bin/env bash
# Builds the QEMU suite's guest: a Debian bookworm root made by debootstrap
# (systemd, udev, the Debian kernel), with the cart installed from
# packaging/files.list by packaging/install.sh, exactly as the image's recipe
# installs it; then one GPT disk laid out as the image's (.wks): boot,
# root_a, root_b, data. docs/qemu.md explains the guest.
#
#   tests/qemu/build-guest.sh            build (or reuse) the guest
#   CART_BIN_DIR=DIR                     where cart-app and cartctl are
#                                        (default: target/release, the one
#                                        release build CI makes)
#   DEBIAN_MIRROR=URL                    default: the first deb.debian.org-style
#                                        URI in apt's sources on this machine
#   CART_GUEST_NAME=NAME                 the build's name under target/qemu
#                                        (default guest; the update scenarios
#                                        build update-old and update-new)
#   CART_GUEST_VERSION=V                 os-release's IMAGE_VERSION (default:
#                                        the workspace's version)
#   CART_GUEST_ROOTFS=1                  also keep the root file system as a
#                                        compact ext4 image, rootfs.ext4 (what
#                                        an update bundle carries)
#   CART_GUEST_DATA_MB=N                 the data partition (default 512, the
#                                        image's; a bundle of this Debian root
#                                        is bigger than the image's and is
#                                        downloaded there: the update
#                                        scenarios give it 1536)
#
# Output, cached under target/qemu and reused while the inputs are the same:
#   target/qemu/guest/disk.img   raw GPT disk (root_a has the cart; data empty)
#   target/qemu/guest/vmlinuz, initrd.img, cmdline, layout.json, files.txt
# The disk boots both ways: the suite's kernel given to QEMU (-kernel, slot
# A, fast), or OVMF -> GRUB from the EFI partition -> the slot GRUB's
# environment chooses (the update scenarios; docs/qemu.md).
# Needs (as root): debootstrap, sfdisk (fdisk), mkfs.ext4 (e2fsprogs),
# mkfs.fat (dosfstools), mcopy (mtools), grub-mkimage and the x86_64-efi
# modules (grub-common, grub-efi-amd64-bin); scripts/setup.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/../.."
top=$PWD

[ "$(id -u)" -eq 0 ] || { echo "build-guest: run as root (debootstrap needs it)" >&2; exit 1; }
for t in debootstrap sfdisk mkfs.ext4 mkfs.fat mcopy grub-mkimage grub-editenv; do
  command -v "$t" >/dev/null || { echo "build-guest: $t missing: run scripts/setup.sh (Debian packages debootstrap fdisk e2fsprogs dosfstools mtools grub-common grub-efi-amd64-bin)" >&2; exit 1; }
done
[ -d /usr/lib/grub/x86_64-efi ] || { echo "build-guest: GRUB's x86_64-efi modules missing: install grub-efi-amd64-bin (scripts/setup.sh does)" >&2; exit 1; }
name=${CART_GUEST_NAME:-guest}
keep_rootfs=${CART_GUEST_ROOTFS:-0}

bin_dir=${CART_BIN_DIR:-$top/target/release}
for b in cart-app cartctl; do
  [ -x "$bin_dir/$b" ] || { echo "build-guest: $bin_dir/$b missing: make the image's release build first (scripts/build-recipe-offline.sh)" >&2; exit 1; }
done

# What the guest has besides the cart: systemd and udev (as the image), the
# Debian kernel, the guest agent the suite asserts through, tpm2-tools (as
# the image, for field diagnosis), and the cart's run-time libraries (the
# image's RDEPENDS: TPM2 TSS, libinput, xkbcommon + xkb data, libseat,
# fontconfig and DejaVu), NetworkManager with wpa_supplicant and polkit (as
# the image: the cart adds its Wi-Fi over D-Bus); and, for the test rig
# only, a Wi-Fi network inside the guest: hostapd (WPA2) and dnsmasq (DHCP)
# on the second of two mac80211_hwsim radios. RAUC (Debian's 1.8 and its
# D-Bus service) with grub-editenv for its grub backend, as the image has
# RAUC 1.15 (the update scenarios).
packages=(
  systemd-sysv udev dbus iproute2 kmod procps util-linux
  linux-image-amd64 qemu-guest-agent tpm2-tools
  libtss2-esys-3.0.2-0 libtss2-tctildr0 libtss2-mu0 libtss2-tcti-device0
  libinput10 libxkbcommon0 xkb-data libudev1 libsqlite3-0 libzstd1
  libfontconfig1 fontconfig fonts-dejavu-core ca-certificates
  network-manager wpasupplicant polkitd libpam-systemd
  hostapd dnsmasq-base
  rauc rauc-service grub-common
)

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
    grep -v security | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' |
    awk 'NR == 1 {print $1}' || true)
fi
[ -n "$mirror" ] || { echo "build-guest: no Debian mirror in apt's sources; set DEBIAN_MIRROR" >&2; exit 1; }

cache=$top/target/qemu
mkdir -p "$cache"

# 1. The Debian base, cached by its package list.
base_key=$(printf '%s\n' bookworm "${packages[@]}" | sha256sum | cut -c1-16)
base=$cache/base-$base_key
if [ ! -f "$base/.done" ]; then
  echo "build-guest: debootstrap bookworm from $mirror (a few minutes, once)"
  rm -rf "$base"
  mkdir -p "$base"
  debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
    bookworm "$base/root" "$mirror" > "$base/debootstrap.log" 2>&1 ||
    { tail -20 "$base/debootstrap.log" >&2; echo "build-guest: debootstrap failed (log above)" >&2; exit 1; }
  rm -rf "$base/root/var/cache/apt/archives/"*.deb "$base/root/var/lib/apt/lists/"*
  touch "$base/.done"
fi

# 2. The guest, cached by everything that goes into it.
key=$( {
  echo "$base_key"
  sha256sum tests/qemu/build-guest.sh packaging/files.list Cargo.toml
  find yocto-layer/recipes-core/rauc/files yocto-layer/files/rauc-dev yocto-layer/recipes-bsp/cart-boot-grub/files -type f | sort | xargs sha256sum
  find packaging systemd -type f | sort | xargs sha256sum
  sha256sum "$bin_dir/cart-app" "$bin_dir/cartctl"
  echo "${CART_GUEST_VERSION:-} $keep_rootfs ${CART_GUEST_DATA_MB:-}"
} | sha256sum | cut -c1-16)
out=$cache/$name-$key
if [ -f "$out/.done" ]; then
  ln -sfn "$name-$key" "$cache/$name"
  echo "build-guest: up to date ($cache/$name)"
  exit 0
fi
echo "build-guest: building $name-$key"
rm -rf "$out"
mkdir -p "$out"
root=$out/root
cp -a "$base/root" "$root"

# The cart, as the image installs it: users first (the image creates them at
# build time: its root is read-only), then the one file list.
systemd-sysusers --root="$root" "$top/packaging/sysusers.d/cart.conf"
packaging/install.sh "$root" "$bin_dir" --owners
# No private key in the image: the cart's key lives in its TPM, the claim
# in the data area (the scenarios check the running cart's writable places).
if keys=$(grep -rlsI -e 'PRIVATE KEY-----' "$root" 2>/dev/null) && [ -n "$keys" ]; then
  echo "build-guest: private keys in the root file system:" >&2
  echo "$keys" | sed "s#^$root##" >&2
  exit 1
fi
# RAUC as the image configures it (yocto-layer/recipes-core/rauc): the
# layer's system.conf with the compatible filled in (Debian's RAUC reads
# /etc/rauc), the development keyring, the layer's D-Bus policy (root and
# cart only) over Debian's, the EFI partition at /efi for GRUB's
# environment (EFI/BOOT/grubenv, made below), and IMAGE_VERSION in
# os-release (the layer sets it to DISTRO_VERSION; here the workspace's or
# CART_GUEST_VERSION).
install -d "$root/etc/rauc"
sed 's/@CART_RAUC_COMPATIBLE@/cart-qemux86-64/' \
  yocto-layer/recipes-core/rauc/files/qemux86-64/system.conf > "$root/etc/rauc/system.conf"
install -m 0644 yocto-layer/files/rauc-dev/dev-ca.cert.pem "$root/etc/rauc/ca.cert.pem"
install -m 0644 yocto-layer/recipes-core/rauc/files/de.pengutronix.rauc.conf \
  "$root/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf"
install -m 0644 yocto-layer/recipes-bsp/cart-boot-grub/files/efi.mount "$root/etc/systemd/system/efi.mount"
install -d "$root/efi"
version=${CART_GUEST_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
os_release=$(readlink -f "$root/etc/os-release")
case $os_release in "$root"/*) ;; *) os_release="$root/usr/lib/os-release" ;; esac
grep -q '^IMAGE_VERSION=' "$os_release" || echo "IMAGE_VERSION=\"$version\"" >> "$os_release"

# The files the list installed, with modes and owners: the suite compares
# the booted guest against this.
# (ids named through the guest's own passwd and group, not the host's).
grep -v '^[[:space:]]*\(#\|$\)' packaging/files.list | awk '{print $2}' |
  while read -r p; do stat -c '%n %a %u %g' "$root$p" | sed "s#^$root##"; done |
  awk -v pw="$root/etc/passwd" -v gr="$root/etc/group" '
    BEGIN { FS = ":"; while ((getline l < pw) > 0) { split(l, f, ":"); u[f[3]] = f[1] }
            while ((getline l < gr) > 0) { split(l, f, ":"); g[f[3]] = f[1] }; FS = " " }
    { print $1, $2, u[$3], g[$4] }' > "$out/files.txt"

# Units: the cart, its data partition, its journal socket, the guest agent. Enabled the way
# `systemctl enable` would (no running systemd needed).
systemctl --root="$root" enable cart-app.service data.mount cart-data.service \
  var-lib-cart.mount var-log-journal.mount var-lib-systemd.mount cart-journal.socket cart-update-deadline.service efi.mount >/dev/null 2>&1
# The serial console carries the boot log for the suite; no login on it.
systemctl --root="$root" mask serial-getty@ttyS0.service getty@tty1.service >/dev/null 2>&1

# /tmp on tmpfs, as the image has it (the root is read-only).
cp "$root/usr/share/systemd/tmp.mount" "$root/etc/systemd/system/tmp.mount"
systemctl --root="$root" enable tmp.mount >/dev/null 2>&1
# The guest's own settings (what the image's distro config gives the image).
echo cart-guest > "$root/etc/hostname"
cat > "$root/etc/fstab" <<'FSTAB'
# Root read-only, as the image's, from whichever slot the command line
# names (root=PARTLABEL=root_a or root_b); /data and the bind mounts come
# from the cart's mount units (packaging/systemd).
/dev/root / ext4 ro,noatime 0 1
FSTAB
# The image's machine-id comes from the data area (docs/image.md); the guest
# keeps a fixed one so journalctl -b -1 works across its reboots.
echo 0123456789abcdef0123456789abcdef > "$root/etc/machine-id"
# User networking: DHCP on the virtio NIC through systemd-networkd.
mkdir -p "$root/etc/systemd/network"
cat > "$root/etc/systemd/network/20-wired.network" <<'NET'
[Match]
Name=en* eth*
[Network]
DHCP=ipv4
NET
systemctl --root="$root" enable systemd-networkd.service >/dev/null 2>&1
# NetworkManager (as the image) keeps to the Wi-Fi radio the cart uses;
# the wired NIC stays with networkd (the suite's link), the second radio
# with the test network. Its own state is on a tmpfs (the root is
# read-only; the image has /var/lib on its volatile binds).
cat > "$root/etc/NetworkManager/conf.d/90-qemu-guest.conf" <<'NM'
# QEMU guest only: NetworkManager manages wlan0, the cart's radio.
[keyfile]
unmanaged-devices=except:interface-name:wlan0
NM
cat > "$root/etc/systemd/system/var-lib-NetworkManager.mount" <<'MOUNT'
[Unit]
Description=NetworkManager's state (QEMU guest: tmpfs on the read-only root)
Before=NetworkManager.service
[Mount]
What=tmpfs
Where=/var/lib/NetworkManager
Type=tmpfs
Options=mode=0700
[Install]
WantedBy=local-fs.target
MOUNT
systemctl --root="$root" enable var-lib-NetworkManager.mount NetworkManager.service >/dev/null 2>&1
# The test network, started by the suite (scenario 2), not at boot: two
# simulated radios, a WPA2 access point on wlan1 and DHCP without a router
# or DNS (the broker stays on the wired link).
mkdir -p "$root/etc/cart-test"
cat > "$root/etc/cart-test/hostapd.conf" <<'AP'
interface=wlan1
driver=nl80211
ssid=shop-carts
hw_mode=g
channel=6
wpa=2
wpa_key_mgmt=WPA-PSK
rsn_pairwise=CCMP
wpa_passphrase=Corr3ct-Horse-Battery
AP
cat > "$root/etc/systemd/system/cart-test-wifi.service" <<'UNIT'
[Unit]
Description=QEMU guest: the store's Wi-Fi (mac80211_hwsim, hostapd, DHCP)
[Service]
ExecStartPre=/usr/sbin/modprobe mac80211_hwsim radios=2
ExecStartPre=/bin/sh -c 'for i in $(seq 50); do [ -e /sys/class/net/wlan1 ] && exit 0; sleep 0.2; done; exit 1'
ExecStartPre=/usr/sbin/ip addr add 192.168.77.1/24 dev wlan1
ExecStart=/usr/sbin/hostapd /etc/cart-test/hostapd.conf
UNIT
cat > "$root/etc/systemd/system/cart-test-dhcp.service" <<'UNIT'
[Unit]
Description=QEMU guest: DHCP on the store's Wi-Fi
After=cart-test-wifi.service
Requires=cart-test-wifi.service
[Service]
ExecStart=/usr/sbin/dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --interface=wlan1 --bind-interfaces --dhcp-range=192.168.77.10,192.168.77.50,1h --dhcp-option=3 --dhcp-option=6 --dhcp-leasefile=/run/cart-test-dhcp.leases --user=root --group=root
UNIT
# The guest agent starts when its virtio port appears (udev).
rm -f "$root/etc/resolv.conf"
echo "nameserver 10.0.2.3" > "$root/etc/resolv.conf"

cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"
# Each slot boots the kernel in its own /boot (GRUB reads it there), so an
# update replaces kernel and root together, as on the image.
ln -sfn "$(basename "$root"/boot/vmlinuz-*)" "$root/boot/vmlinuz"
ln -sfn "$(basename "$root"/boot/initrd.img-*)" "$root/boot/initrd.img"
# rauc.slot=A: the booted slot for RAUC, as GRUB passes it on the image.
echo "root=PARTLABEL=root_a ro rootwait console=ttyS0 systemd.show_status=1 rauc.slot=A" > "$out/cmdline"

# 3. The disk: GPT with the image's partition names (yocto-layer's .wks).
MiB=$((1024 * 1024))
boot_mb=32 root_mb=1536 data_mb=${CART_GUEST_DATA_MB:-512}
mkfs.ext4 -q -L root_a -d "$root" "$out/root_a.img" "${root_mb}M" >/dev/null
if [ "$keep_rootfs" = 1 ]; then
  # What a bundle carries: the same tree in an image just big enough (RAUC
  # writes it into the slot; the slot's partition is larger).
  used_mb=$(du -sm "$root" | cut -f1)
  mkfs.ext4 -q -L root -d "$root" "$out/rootfs.ext4" "$(( used_mb * 5 / 4 + 64 ))M" >/dev/null
fi
# The EFI partition, as wic lays it out for the image with cart-boot-grub:
# GRUB as EFI/BOOT/bootx64.efi (its prefix that folder), the layer's
# grub.cfg and an empty environment block. Two differences, for Debian's
# kernel: the kernel is /boot/vmlinuz, and it needs its initrd.
truncate -s "${boot_mb}M" "$out/boot.img"
mkfs.fat -s 8 -n BOOT "$out/boot.img" >/dev/null
grub-mkimage -O x86_64-efi -p /EFI/BOOT -o "$out/bootx64.efi" \
  part_gpt fat ext2 normal linux loadenv test echo configfile boot efi_gop efi_uga all_video serial terminal
sed -e 's|@CART_KERNEL_CONSOLE@|console=ttyS0 systemd.show_status=1|' \
    -e 's|^\(    linux (hd0,gpt\([23]\))/boot/\)bzImage\(.*\)$|\1vmlinuz\3\n    initrd (hd0,gpt\2)/boot/initrd.img|' \
  yocto-layer/recipes-bsp/cart-boot-grub/files/cart-grub.cfg.in > "$out/grub.cfg"
grep -q 'initrd (hd0,gpt3)/boot/initrd.img' "$out/grub.cfg" || { echo "build-guest: the layer's grub.cfg changed shape: adapt the guest's sed" >&2; exit 1; }
rm -f "$out/grubenv"
grub-editenv "$out/grubenv" create
mmd -i "$out/boot.img" ::/EFI ::/EFI/BOOT
mcopy -i "$out/boot.img" "$out/bootx64.efi" "$out/grub.cfg" "$out/grubenv" ::/EFI/BOOT/
rm -f "$out/bootx64.efi" "$out/grubenv"
truncate -s $(( (1 + boot_mb + 2 * root_mb + data_mb + 1) * MiB )) "$out/disk.img"
sfdisk -q "$out/disk.img" <<SFDISK
label: gpt
start=1MiB, size=${boot_mb}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=boot
size=${root_mb}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=root_a
size=${root_mb}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=root_b
size=${data_mb}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data
SFDISK
sfdisk --json "$out/disk.img" > "$out/layout.json"
put() { # image partition-number
  local start
  start=$(sfdisk --json "$out/disk.img" | python3 -c "import json,sys; print(json.load(sys.stdin)['partitiontable']['partitions'][$2-1]['start'])")
  dd if="$1" of="$out/disk.img" bs=512 seek="$start" conv=notrunc,sparse status=none
}
put "$out/boot.img" 1
put "$out/root_a.img" 2
# root_b stays empty until an update writes it; data is laid out per run
# (the factory/data area), and by cart-data-init on first boot.
rm -f "$out/root_a.img" "$out/boot.img"
rm -rf "$root"
touch "$out/.done"
ln -sfn "$name-$key" "$cache/$name"
# Older builds of this name go: each is a few GB.
for old in "$cache/$name"-* "$cache"/base-*; do
  case $old in "$out"|"$base") ;; *) rm -rf "$old" ;; esac
done
echo "build-guest: done ($cache/$name)"
