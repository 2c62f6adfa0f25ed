# The kernel options the cart needs, as config fragments (no kernel fork):
# docs/image.md, "Adding a board", says what a board's kernel must give.
FILESEXTRAPATHS:prepend := "${THISDIR}/files:"

SRC_URI += "file://cart.cfg"
SRC_URI:append:qemux86-64 = " file://cart-qemux86-64.cfg"
SRC_URI:append:qemuarm64 = " file://cart-qemuarm64.cfg"
