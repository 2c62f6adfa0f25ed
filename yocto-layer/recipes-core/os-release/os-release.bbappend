# The cart compares an update's version with os-release's IMAGE_VERSION
# (docs/updates.md, "The update's life"): the distro's version, the same
# one cart-bundle writes into the bundle's manifest (RAUC_BUNDLE_VERSION).
IMAGE_VERSION:cart = "${DISTRO_VERSION}"
OS_RELEASE_FIELDS:append:cart = " IMAGE_VERSION"
