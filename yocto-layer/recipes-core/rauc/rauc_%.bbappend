# RAUC's D-Bus policy lets any local user install a bundle or mark a slot;
# the cart's replaces it under the same name, so only root and the cart
# daemon (user cart) may call RAUC (files/de.pengutronix.rauc.conf,
# docs/updates.md).
FILESEXTRAPATHS:prepend:cart := "${THISDIR}/files:"

SRC_URI:append:cart = " file://de.pengutronix.rauc.conf"

do_install:append:cart() {
    if [ -e ${D}${datadir}/dbus-1/system.d/de.pengutronix.rauc.conf ]; then
        install -m 0644 ${UNPACKDIR}/de.pengutronix.rauc.conf ${D}${datadir}/dbus-1/system.d/de.pengutronix.rauc.conf
    fi
}
