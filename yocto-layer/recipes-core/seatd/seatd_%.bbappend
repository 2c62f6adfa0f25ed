# The cart uses libseat's noop backend (the unit sets LIBSEAT_BACKEND=noop
# and allows exactly the DRM and input devices): the cart is the only seat,
# so seatd's daemon is installed (its package carries libseat) but not started.
SYSTEMD_AUTO_ENABLE:${PN}:cart = "disable"
