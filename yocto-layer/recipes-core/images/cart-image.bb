SUMMARY = "The payment cart's image"
DESCRIPTION = "A small systemd image with the cart, tpm2-tools, NetworkManager and time sync on a read-only root with A/B slots and a data partition."
SECTION = "images"
LICENSE = "MIT"

require cart-image.inc
