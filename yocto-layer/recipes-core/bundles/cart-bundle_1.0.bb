SUMMARY = "The payment cart's update bundle: cart-image's root file system for a root slot"
DESCRIPTION = "A signed RAUC bundle (verity format) holding cart-image's ext4 root file system, for the slot class rootfs of the cart's system.conf (docs/updates.md)."
SECTION = "images"
LICENSE = "MIT"
# A bundle of images built elsewhere: no source tree with a licence file.
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

# Nothing to fetch: the bundle holds images other recipes built
# (RAUC_SLOT_rootfs).
SRC_URI = ""

inherit bundle

# Signed with RAUC_KEY_FILE and RAUC_CERT_FILE (conf/distro/cart.conf: the
# development signer by default; a release names the signing service, and
# cart_release_keys refuses the development files there).

# verity: RAUC checks each block of the bundle as it reads it (dm-verity),
# so a bundle can be installed while it streams and a bundle altered after
# its signature was checked is caught. The cart's system.conf refuses plain
# bundles.
RAUC_BUNDLE_FORMAT = "verity"
# The image's system.conf carries the same string: RAUC refuses a bundle
# made for another machine.
RAUC_BUNDLE_COMPATIBLE = "${CART_RAUC_COMPATIBLE}"
# The release's version is the distro's (DISTRO_VERSION); RAUC_BUNDLE_BUILD
# is the bundle class's build time stamp.
RAUC_BUNDLE_VERSION = "${DISTRO_VERSION}"
RAUC_BUNDLE_DESCRIPTION = "${SUMMARY}"

# The root file system only: the kernel lives in it (/boot), the EFI
# partition and the data partition are not updated.
RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "cart-image"
RAUC_SLOT_rootfs[fstype] = "ext4"

# The machines whose boot the layer switches between root slots
# (cart-image.inc's CART_RAUC_INSTALL); a board adds itself.
COMPATIBLE_MACHINE = "qemux86-64"

# An update must not carry the factory area: cart-image's ext4 holds /data
# as the image lays it (the claim key among it, under CART_FACTORY_DIR).
# The layer's development claim is public and may; a bundle for a fleet is
# built in a configuration without CART_FACTORY_DIR (docs/updates.md).
# nooelint: oelint.task.noanonpython
python __anonymous() {
    import os
    factory = d.getVar('CART_FACTORY_DIR')
    dev = os.path.join(d.getVar('CART_LAYERDIR'), 'files', 'factory-dev')
    if factory and os.path.realpath(factory) != os.path.realpath(dev):
        raise bb.parse.SkipRecipe("CART_FACTORY_DIR is set: a bundle must not carry the fleet's factory data; "
                                  "build it in a configuration without CART_FACTORY_DIR (docs/updates.md)")
}
