SUMMARY = "The payment cart's image for development and testimage"
DESCRIPTION = "cart-image with an ssh server and root login without a \
password, as oe-core's testimage needs, and the oeqa cases of this layer. \
Never shipped: the cart ships cart-image."
LICENSE = "MIT"

require cart-image.bb

IMAGE_FEATURES += "ssh-server-dropbear allow-empty-password empty-root-password allow-root-login"

# bitbake cart-image-dev -c testimage: boots the wic image on OVMF with
# user-mode networking and runs lib/oeqa/runtime/cases/cart_image.py
# (cart-selftest) after oe-core's ssh and systemd cases. runqemu has no TPM
# option: the QB_ settings that attach swtpm are in docs/image.md.
IMAGE_CLASSES += "testimage"
TEST_SUITES = "ping ssh systemd cart_image"
TEST_RUNQEMUPARAMS = "slirp ovmf wic"
QB_DEFAULT_FSTYPE = "wic"
EXTRA_IMAGEDEPENDS += "ovmf"
