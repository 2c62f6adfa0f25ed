# The cart's RAUC system.conf (files/<MACHINE>/system.conf: a machine needs
# its own, for its slots and bootloader; docs/updates.md) and keyring.
FILESEXTRAPATHS:prepend:cart := "${THISDIR}/files:"

# RAUC's grub backend edits GRUB's environment with grub-editenv.
RDEPENDS:${PN}:append:cart:qemux86-64 = " grub-editenv"

# meta-rauc's do_install keeps the keyring's file name; the cart's is always
# ca.cert.pem (system.conf names it, relative to itself), whether it is the
# development CA or the fleet's (RAUC_KEYRING_FILE, conf/distro/cart.conf).
# The compatible string comes from CART_RAUC_COMPATIBLE, which cart-bundle
# writes into every bundle too.
do_install:cart() {
    if ! grep -q '^compatible=' ${UNPACKDIR}/system.conf; then
        bbfatal "No system.conf for ${MACHINE} in this layer (recipes-core/rauc/files/${MACHINE}/system.conf; docs/updates.md)"
    fi
    install -d ${D}${nonarch_libdir}/rauc
    sed -e 's|@CART_RAUC_COMPATIBLE@|${CART_RAUC_COMPATIBLE}|' ${UNPACKDIR}/system.conf > ${D}${nonarch_libdir}/rauc/system.conf
    chmod 0644 ${D}${nonarch_libdir}/rauc/system.conf
    install -m 0644 ${UNPACKDIR}/${RAUC_KEYRING_FILE} ${D}${nonarch_libdir}/rauc/ca.cert.pem
}
