SUMMARY = "The cart's factory area: broker endpoint and CA, fleet-provisioning claim"
DESCRIPTION = "Installs /data/factory on the data partition from CART_FACTORY_DIR, CART_BROKER_HOST, CART_BROKER_PORT and CART_ID, set outside the layer (docs/image.md)."
SECTION = "base"
# The fleet's certificates and keys, not the project's: no open licence.
LICENSE = "CLOSED"

SRC_URI = "\
    file://${CART_FACTORY_DIR}/broker-ca.pem \
    file://${CART_FACTORY_DIR}/claim.pem \
    file://${CART_FACTORY_DIR}/claim.key \
"

S = "${UNPACKDIR}"

# The data follows the machine's configuration (CART_* may differ per
# machine); nothing is compiled.
INHIBIT_DEFAULT_DEPS = "1"
PACKAGE_ARCH = "${MACHINE_ARCH}"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

# Owners and modes are set at boot by cart-data-init (the data partition is
# read-write there and the users exist).
do_install() {
    install -d ${D}/data/factory/claim
    install -m 0644 ${UNPACKDIR}${CART_FACTORY_DIR}/broker-ca.pem ${D}/data/factory/broker-ca.pem
    install -m 0600 ${UNPACKDIR}${CART_FACTORY_DIR}/claim.pem ${D}/data/factory/claim/claim.pem
    install -m 0600 ${UNPACKDIR}${CART_FACTORY_DIR}/claim.key ${D}/data/factory/claim/claim.key
    {
        echo "# The cart's own settings (local_settings of the image's cart.toml)."
        if [ -n "${CART_ID}" ]; then
            echo "cart_id = \"${CART_ID}\""
        fi
        echo "[link]"
        echo "host = \"${CART_BROKER_HOST}\""
        echo "port = ${CART_BROKER_PORT}"
    } > ${D}/data/factory/cart.toml
    chmod 0640 ${D}/data/factory/cart.toml
}

FILES:${PN} += "/data/factory"

# Without factory data the image's factory area is left to manufacturing.
# nooelint: oelint.task.noanonpython
python __anonymous() {
    if not d.getVar('CART_FACTORY_DIR'):
        raise bb.parse.SkipRecipe("CART_FACTORY_DIR is not set: the factory area is left to manufacturing (docs/image.md)")
}
