# The kernel options the cart needs, as config fragments (no kernel fork);
# docs/image.md ("Adding a board") says what a board's kernel must give.
FILESEXTRAPATHS:prepend:cart := "${THISDIR}/files:"

SRC_URI:append:cart = " file://cart.cfg"
SRC_URI:append:cart:qemux86-64 = " file://cart-qemux86-64.cfg"
SRC_URI:append:cart:qemuarm64 = " file://cart-qemuarm64.cfg"
