SUMMARY = "Payment cart daemon and field-technician CLI"
DESCRIPTION = "cart-app runs the payment cart: checkout UI on DRM/KMS, scanner, card reader, ledger, MQTT uplink with a TPM identity; cartctl is the field technician's tool."
SECTION = "console/utils"
# The cart's own code, and every crate it vendors (cart-app-crates.inc,
# generated with the crate list by scripts/gen-crates-inc.py).
LICENSE = "Apache-2.0 & ${CART_APP_CRATES_LICENSE}"
LIC_FILES_CHKSUM = "file://LICENSE;md5=89aea4e17d99a7cacdbeed46a0096b10"

# The C libraries the crates link from the image instead of bundling them
# (libsqlite3-sys, zstd-sys; see do_compile:prepend), so cve-check and the
# licence manifest see them.
DEPENDS = "fontconfig libinput libxkbcommon sqlite3 systemd tpm2-tss zstd"

# Release builds take the project's repository at the release's commit:
# set CART_GIT_URI (the project's repository; the default is a placeholder)
# and CART_SRCREV in local.conf or a kas overlay (kas/release.yml).
# Builds from this checkout take the checkout this layer lives in (kas/common.yml:
# externalsrc), and SRC_URI keeps only the crates.
CART_GIT_URI ??= "git://git.invalid/payment-cart.git;protocol=https;branch=main"
CART_SRCREV ??= ""
PV = "0.1.0+git"
SRC_URI = "${@'${CART_GIT_URI}' if d.getVar('CART_SRCREV') else ''}"

require ${BPN}-crates.inc

SRCREV = "${CART_SRCREV}"

inherit cargo pkgconfig systemd useradd

# One package of the workspace, the device's features only: the linuxkms
# UI backend; never demo, winit or failpoints.
CARGO_BUILD_FLAGS += "-p cart-app --features linuxkms"

# The users and groups of packaging/sysusers.d/cart.conf (the image's rootfs
# check compares them); scripts/check-layer.py keeps the two in step. The
# device groups usually exist already (base-passwd, systemd, tpm2-tss):
# groupadd leaves an existing group alone.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system cart-tech; --system tss; --system dialout; --system input; --system video; --system render; --system systemd-journal"
USERADD_PARAM:${PN} = "--system --user-group --home-dir ${localstatedir}/lib/cart --no-create-home --shell /sbin/nologin --groups tss,dialout,input,video,render --comment 'Payment cart daemon' cart"

SYSTEMD_PACKAGES = "${PN}"
SYSTEMD_SERVICE:${PN} = "cart-app.service cart-data.service data.mount var-lib-cart.mount var-log-journal.mount var-lib-systemd.mount cart-journal.socket cart-update-deadline.service"

do_compile:prepend() {
    # Link the image's sqlite3 and zstd (pkg-config), not the crates' bundled copies.
    export LIBSQLITE3_SYS_USE_PKG_CONFIG=1
    export ZSTD_SYS_USE_PKG_CONFIG=1
}

do_install() {
    # The one install list the QEMU guest uses too (packaging/files.list).
    ${S}/packaging/install.sh ${D} ${B}/target/${CARGO_TARGET_SUBDIR}
    # The owners files.list names that are not root (pseudo records them).
    chown cart:cart ${D}${localstatedir}/lib/cart
    chmod 0700 ${D}${localstatedir}/lib/cart
    chown root:systemd-journal ${D}${localstatedir}/log/journal
    chmod 2755 ${D}${localstatedir}/log/journal
}

PACKAGE_BEFORE_PN = "${PN}-selftest"

FILES:${PN}-selftest += "${bindir}/cart-selftest"
FILES:${PN} += "/data ${nonarch_libdir}/sysusers.d ${nonarch_libdir}/tmpfiles.d ${nonarch_base_libdir}/udev/rules.d ${datadir}/polkit-1/rules.d ${systemd_unitdir}/journald.conf.d ${systemd_unitdir}/system.conf.d"
CONFFILES:${PN} = "${sysconfdir}/cart/cart.toml"

# Exactly what cart-app links (readelf -d NEEDED) and what it opens at run
# time. scripts/check-needed.py compares the built binary's NEEDED list with
# CART_APP_NEEDED (soname=package) and RDEPENDS with both tables, so they
# cannot drift. glibc and libgcc come with the toolchain.
CART_APP_NEEDED = "\
    ld-linux-aarch64.so.1=glibc \
    ld-linux-x86-64.so.2=glibc \
    libc.so.6=glibc \
    libfontconfig.so.1=fontconfig \
    libgcc_s.so.1=libgcc \
    libinput.so.10=libinput \
    libm.so.6=glibc \
    libsqlite3.so.0=libsqlite3 \
    libtss2-esys.so.0=libtss2 \
    libtss2-mu.so.0=libtss2-mu \
    libtss2-tctildr.so.0=libtss2 \
    libudev.so.1=libudev \
    libxkbcommon.so.0=libxkbcommon \
    libzstd.so.1=libzstd \
"
# Opened at run time, not linked: the TCTI tctildr loads for /dev/tpmrm0,
# the font the UI asks for (DejaVu Sans: the reference images are drawn in
# it), udev (libinput's device data), the keymaps libxkbcommon reads, the
# CA bundle HTTPS URLs in jobs are checked against ([jobs] https_ca_file).
CART_APP_OPENS = "ca-certificates libtss2-tcti-device ttf-dejavu-sans udev xkeyboard-config"
RDEPENDS:${PN} = "${CART_APP_OPENS} fontconfig libinput libsqlite3 libtss2 libtss2-mu libudev libxkbcommon libzstd"
RDEPENDS:${PN}-selftest = "${PN} procps util-linux-findmnt"

# A recipe without a source (no release commit, no externalsrc) cannot build:
# say so at parse time rather than fail in do_compile.
# nooelint: oelint.task.noanonpython
python __anonymous() {
    if not d.getVar('CART_SRCREV') and not d.getVar('EXTERNALSRC'):
        raise bb.parse.SkipRecipe("set CART_SRCREV to the release's commit, or build this checkout with externalsrc (kas/common.yml)")
}
