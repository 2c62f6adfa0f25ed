SUMMARY = "The payment cart's image for development and testimage"
DESCRIPTION = "cart-image with an ssh server and root login without a password, as testimage needs, and this layer's oeqa cases; never shipped."
SECTION = "images"
LICENSE = "MIT"

require cart-image.inc

# testimage logs in over ssh as root without a password: this image only.
# nooelint: oelint.var.badimagefeature.allow-empty-password,oelint.var.badimagefeature.allow-root-login,oelint.var.badimagefeature.empty-root-password
IMAGE_FEATURES += "allow-empty-password allow-root-login empty-root-password ssh-server-dropbear"

# bitbake cart-image-dev -c testimage: boots the wic image (on OVMF on
# x86-64; OVMF is x86 only, qemuarm64 boots its EFI from u-boot) with
# user-mode networking and runs lib/oeqa/runtime/cases/cart_image.py
# (cart-selftest) after oe-core's ssh and systemd cases. runqemu has no TPM
# option: the QB_ settings that attach swtpm are in docs/image.md.
IMAGE_CLASSES += "testimage"
TEST_SUITES = "ping ssh systemd cart_image"
TEST_RUNQEMUPARAMS = "slirp wic"
TEST_RUNQEMUPARAMS:x86-64 = "slirp ovmf wic"
QB_DEFAULT_FSTYPE = "wic"
EXTRA_IMAGEDEPENDS:append:x86-64 = " ovmf"
