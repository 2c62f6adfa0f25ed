SUMMARY = "The payment cart's image"
DESCRIPTION = "A small systemd image with the cart (cart-app, its unit, users, \
devices and data partition), tpm2-tools for field diagnosis, NetworkManager \
(connections on the data partition), time sync, a read-only root file \
system in one of two root slots, and /etc's changes (the machine-id among \
them) kept on the data partition. docs/image.md says what and why."
LICENSE = "MIT"

inherit core-image

IMAGE_INSTALL = "\
    packagegroup-core-boot \
    cart-app \
    cart-app-selftest \
    ${@'cart-factory-data' if d.getVar('CART_FACTORY_DIR') else ''} \
    networkmanager \
    networkmanager-nmcli \
    polkit \
    tpm2-tools \
    kernel-modules \
    ${CORE_IMAGE_EXTRA_INSTALL} \
"

IMAGE_LINGUAS = " "

# A read-only root; /etc's changes (the machine-id, so `journalctl -b -1`
# finds the previous boot) live on the data partition through overlayfs-etc,
# mounted before systemd starts. The partition is found by its device node
# there (no udev yet): set OVERLAYFS_ETC_DEVICE for a board.
IMAGE_FEATURES += "read-only-rootfs overlayfs-etc"
OVERLAYFS_ETC_MOUNT_POINT = "/data"
OVERLAYFS_ETC_FSTYPE = "ext4"
OVERLAYFS_ETC_DEVICE ?= "/dev/vda4"

# The disk: boot (EFI), root_a, root_b, data (files/wic/cart-ab.wks.in).
IMAGE_FSTYPES += "wic"
WKS_FILE = "cart-ab.wks.in"
CART_ROOT_SLOT_SIZE ?= "1024M"
CART_DATA_SIZE ?= "512M"
CART_KERNEL_CONSOLE ?= "console=ttyS0,115200 console=tty0"
CART_KERNEL_CONSOLE:aarch64 ?= "console=ttyAMA0,115200 console=tty0"
