# Stops a release build (CART_RELEASE = "1", set by kas/release.yml) that
# would sign bundles with the layer's public development key, or put the
# development CA into the image's RAUC keyring (files/rauc-dev): a cart that
# trusts that CA installs whatever anyone signs with the published key.
# Checked once the configuration is parsed, before any recipe, so a
# release fails at once (bitbake -e included), not at its last task.
#
# RAUC_KEY_FILE and RAUC_CERT_FILE may be PKCS#11 URIs (pkcs11:...), the way
# a release reaches the signing service; RAUC_KEYRING_FILE is a file (the
# fleet's CA certificate, public). A file is refused when it lies in the
# development folder or has the same bytes as a file there (a copy).

addhandler cart_release_keys_check
cart_release_keys_check[eventmask] = "bb.event.ConfigParsed"
cart_release_keys_check[doc] = "Stops a release build that names the layer's development RAUC keys"
python cart_release_keys_check() {
    import os

    d = e.data
    if d.getVar('CART_RELEASE') != '1':
        return
    dev_dir = os.path.realpath(d.getVar('CART_RAUC_DEV_DIR'))
    dev_bytes = set()
    for name in sorted(os.listdir(dev_dir)) if os.path.isdir(dev_dir) else []:
        with open(os.path.join(dev_dir, name), 'rb') as f:
            dev_bytes.add(f.read())
    for var in ('RAUC_KEY_FILE', 'RAUC_CERT_FILE', 'RAUC_KEYRING_FILE'):
        value = (d.getVar(var) or '').strip()
        if not value:
            bb.fatal("cart release: %s is not set; a release signs with the signing service's key "
                     "and trusts the fleet's CA (docs/updates.md, \"Keys\")" % var)
        if value.startswith('pkcs11:'):
            if var == 'RAUC_KEYRING_FILE':
                bb.fatal("cart release: RAUC_KEYRING_FILE must be the fleet's CA certificate file, not %s" % value)
            continue
        path = os.path.realpath(value)
        if path == dev_dir or path.startswith(dev_dir + os.sep):
            bb.fatal("cart release: %s names the layer's DEVELOPMENT key material (%s); "
                     "set it from outside the layer (docs/updates.md, \"Keys\")" % (var, value))
        if os.path.isfile(path):
            with open(path, 'rb') as f:
                if f.read() in dev_bytes:
                    bb.fatal("cart release: %s (%s) is a copy of the layer's DEVELOPMENT key material" % (var, value))
}
