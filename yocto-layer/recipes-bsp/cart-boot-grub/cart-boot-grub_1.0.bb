SUMMARY = "GRUB configuration and environment for the cart's A/B root slots"
DESCRIPTION = "The grub.cfg that boots root slot A or B as RAUC's grub backend chose, its environment block (both deployed for wic's EFI partition), and the mount of the EFI partition at /efi where RAUC edits the environment (docs/updates.md)."
SECTION = "bootloaders"
LICENSE = "Apache-2.0"
# The files are the layer's own (no source tree with a licence file).
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# grub-editenv makes the empty environment block.
DEPENDS = "grub-native"

SRC_URI = "\
    file://cart-grub.cfg.in \
    file://efi.mount \
"

S = "${UNPACKDIR}"

inherit deploy systemd

# GRUB on EFI is the x86-64 boot path (OVMF on qemux86-64); a U-Boot board
# uses RAUC's uboot backend instead (docs/updates.md).
COMPATIBLE_HOST = "x86_64.*-linux"
PACKAGE_ARCH = "${MACHINE_ARCH}"

SYSTEMD_SERVICE:${PN} = "efi.mount"

do_configure[noexec] = "1"

# The kernel's console: CART_KERNEL_CONSOLE (conf/distro/cart.conf), the
# same as systemd-boot's command line.
do_compile() {
    sed -e 's|@CART_KERNEL_CONSOLE@|${CART_KERNEL_CONSOLE}|g' ${S}/cart-grub.cfg.in > ${B}/cart-grub.cfg
    # An empty environment block (1 KiB of '#' after the header), as
    # save_env needs it: GRUB writes it in place and never grows it.
    rm -f ${B}/cart-grubenv
    grub-editenv ${B}/cart-grubenv create
}

do_install() {
    install -d ${D}${systemd_system_unitdir} ${D}/efi
    install -m 0644 ${S}/efi.mount ${D}${systemd_system_unitdir}/efi.mount
}

do_deploy() {
    install -m 0644 ${B}/cart-grub.cfg ${DEPLOYDIR}/cart-grub.cfg
    install -m 0644 ${B}/cart-grubenv ${DEPLOYDIR}/cart-grubenv
}

addtask deploy after do_compile before do_build

FILES:${PN} += "/efi"
