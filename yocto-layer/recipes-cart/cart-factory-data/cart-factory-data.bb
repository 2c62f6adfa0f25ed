SUMMARY = "The cart's factory area: broker endpoint and CA, fleet-provisioning claim"
DESCRIPTION = "Installs /data/factory (the data partition's factory area, \
docs/image.md): cart.toml with the broker's endpoint (and a cart id on \
development images), broker-ca.pem and the claim certificate and key, from \
CART_FACTORY_DIR, CART_BROKER_HOST, CART_BROKER_PORT and CART_ID, which are \
set outside the layer (conf/distro/cart.conf gives qemux86-64 a development \
claim)."
SECTION = "base"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = "\
    file://${CART_FACTORY_DIR}/broker-ca.pem \
    file://${CART_FACTORY_DIR}/claim.pem \
    file://${CART_FACTORY_DIR}/claim.key \
"

S = "${UNPACKDIR}"

# The data is the machine configuration's (CART_* may differ per machine).
INHIBIT_DEFAULT_DEPS = "1"
PACKAGE_ARCH = "${MACHINE_ARCH}"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

# Owners and modes are set at boot by cart-data-init (the data partition is
# read-write there; the users exist).
do_install() {
	install -d ${D}/data/factory/claim
	install -m 0644 ${UNPACKDIR}${CART_FACTORY_DIR}/broker-ca.pem ${D}/data/factory/broker-ca.pem
	install -m 0600 ${UNPACKDIR}${CART_FACTORY_DIR}/claim.pem ${D}/data/factory/claim/claim.pem
	install -m 0600 ${UNPACKDIR}${CART_FACTORY_DIR}/claim.key ${D}/data/factory/claim/claim.key
	{
		echo "# The cart's own settings (local_settings of /etc/cart/cart.toml)."
		if [ -n "${CART_ID}" ]; then
			echo "cart_id = \"${CART_ID}\""
		fi
		echo "[link]"
		echo "host = \"${CART_BROKER_HOST}\""
		echo "port = ${CART_BROKER_PORT}"
	} > ${D}/data/factory/cart.toml
	chmod 0640 ${D}/data/factory/cart.toml
}

FILES:${PN} = "/data/factory"

python __anonymous() {
    if not d.getVar('CART_FACTORY_DIR'):
        raise bb.parse.SkipRecipe("CART_FACTORY_DIR is not set: the image's factory area is left to manufacturing (docs/image.md)")
}
