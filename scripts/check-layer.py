#!/usr/bin/env python3
"""Checks of yocto-layer/ that need no bitbake (the test command runs them;
scripts/check-yocto.sh parses the layer with bitbake where the layers are
checked out):

  - every kas file is valid against kas's own schema (kas's loader), has
    header version 20 (read by every kas 5.x), and the pins are complete:
    each repository with a url has a commit and a branch, bitbake's branch
    is the string "2.18", the others are on wrynose, the distro is set;
  - the recipe's users and groups (useradd class) are those of
    packaging/sysusers.d/cart.conf, which oe-core's rootfs check compares
    with /etc/passwd and /etc/group;
  - the recipe installs through packaging/install.sh (files.list) and names
    every unit files.list installs in SYSTEMD_SERVICE;
  - updates (docs/updates.md): common.yml pins every layer the cart's
    layer.conf depends on (meta-rauc among them); release.yml marks a
    release (CART_RELEASE, which makes cart_release_keys refuse the
    development keys) and forwards the signing variables; each RAUC
    system.conf uses only keys RAUC 1.8 (the QEMU guest's, which refuses
    unknown keys) and 1.15 (the image's) both read, takes its compatible
    string from CART_RAUC_COMPATIBLE, and cart-bundle writes the same one
    in verity format; RAUC's D-Bus policy lets only root and the cart's
    user call it.

Run with the Python that has kas installed (scripts/setup.sh puts it in
target/yocto-tools).
"""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER = os.path.join(ROOT, "yocto-layer")
RECIPE = os.path.join(LAYER, "recipes-cart", "cart-app", "cart-app_git.bb")
errors = []


def check_kas():
    from kas.includehandler import ConfigFile  # the schema kas itself applies

    files = sorted(glob.glob(os.path.join(LAYER, "kas", "*.yml")))
    if not files:
        errors.append("no kas files in yocto-layer/kas")
    configs = {}
    for f in files:
        name = os.path.basename(f)
        try:
            cf = ConfigFile.load(f)
        except Exception as e:  # kas reports schema errors as its own exceptions
            errors.append(f"kas/{name}: {e}")
            continue
        configs[name] = cf.config
        if cf.config.get("header", {}).get("version") != 20:
            errors.append(f"kas/{name}: header version must be 20 (every kas 5.x reads it)")
    common = configs.get("common.yml", {})
    if not common.get("distro"):
        errors.append("kas/common.yml: distro must be set explicitly (kas 5.3 changed its default)")
    for repo, spec in (common.get("repos") or {}).items():
        spec = spec or {}
        if "url" not in spec:
            continue
        if not re.fullmatch(r"[0-9a-f]{40}", str(spec.get("commit", ""))):
            errors.append(f"kas/common.yml: {repo} is not pinned by a full commit id")
        want = "2.18" if repo == "bitbake" else "wrynose"
        if spec.get("branch") != want:
            errors.append(f"kas/common.yml: {repo} branch is {spec.get('branch')!r}, want {want!r} (a string)")
    for name, config in configs.items():
        if name.startswith("cart-"):
            if "common.yml" not in config.get("header", {}).get("includes", []):
                errors.append(f"kas/{name}: must include common.yml")
            if not config.get("machine"):
                errors.append(f"kas/{name}: no machine")


def sysusers():
    """(groups, users {name: home}, memberships {(user, group)}) of the sysusers.d file."""
    groups, users, members = set(), {}, set()
    with open(os.path.join(ROOT, "packaging", "sysusers.d", "cart.conf"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = re.findall(r'"[^"]*"|\S+', line)
            kind, name = fields[0], fields[1]
            if kind == "g":
                groups.add(name)
            elif kind == "u":
                users[name] = fields[4] if len(fields) > 4 else "-"
            elif kind == "m":
                members.add((name, fields[2]))
    return groups, users, members


def recipe_var(text, name):
    m = re.search(r"^" + re.escape(name) + r' = "([^"]*)"', text, re.M)
    return m.group(1) if m else ""


def check_users():
    text = open(RECIPE, encoding="utf-8").read()
    groups, users, members = sysusers()
    r_groups = {c.split()[-1] for c in recipe_var(text, "GROUPADD_PARAM:${PN}").split(";") if c.strip()}
    r_users = {}
    r_members = set()
    for cmd in recipe_var(text, "USERADD_PARAM:${PN}").split(";"):
        if not cmd.strip():
            continue
        words = re.findall(r"'[^']*'|\S+", cmd)
        name = words[-1]
        home = words[words.index("--home-dir") + 1] if "--home-dir" in words else "-"
        r_users[name] = home.replace("${localstatedir}", "/var")
        if "--groups" in words:
            for g in words[words.index("--groups") + 1].split(","):
                r_members.add((name, g))
        if "--user-group" in words:
            r_groups.add(name)
    # A sysusers `u` line makes a group of the user's name too.
    want_groups = groups | set(users)
    if r_groups - {"systemd-journal"} != want_groups:
        errors.append(f"recipe groups {sorted(r_groups)} != sysusers.d groups {sorted(want_groups)} "
                      "(systemd-journal is the recipe's own, for /var/log/journal)")
    if r_users != users:
        errors.append(f"recipe users {r_users} != sysusers.d users {users}")
    if r_members != members:
        errors.append(f"recipe memberships {sorted(r_members)} != sysusers.d {sorted(members)}")


def check_install():
    text = open(RECIPE, encoding="utf-8").read()
    if "${S}/packaging/install.sh ${D}" not in text:
        errors.append("cart-app_git.bb: do_install must call packaging/install.sh (the one install list)")
    listed = set()
    with open(os.path.join(ROOT, "packaging", "files.list"), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            # Template units (name@.service) are started by their socket,
            # never enabled: SYSTEMD_SERVICE names the socket.
            if parts and parts[0] == "f" and parts[1].startswith("/usr/lib/systemd/system/") \
                    and "@." not in parts[1]:
                listed.add(os.path.basename(parts[1]))
    services = set(recipe_var(text, "SYSTEMD_SERVICE:${PN}").split())
    if listed != services:
        errors.append(f"SYSTEMD_SERVICE {sorted(services)} != units in files.list {sorted(listed)}")


# The system.conf keys RAUC 1.8 and 1.15 both read, per section ("slot" for
# every [slot.CLASS.N]); docs/updates.md says why the cart uses each.
RAUC_KEYS = {
    "system": {"compatible", "bootloader", "grubenv", "data-directory", "bundle-formats"},
    "keyring": {"path"},
    "slot": {"device", "type", "bootname"},
}
# The layers whose collections LAYERDEPENDS_cart names, by kas repository.
LAYER_REPOS = {
    "core": "openembedded-core",
    "openembedded-layer": "meta-openembedded",
    "meta-python": "meta-openembedded",
    "networking-layer": "meta-openembedded",
    "tpm-layer": "meta-security",
    "rauc": "meta-rauc",
}


def read(*parts):
    with open(os.path.join(LAYER, *parts), encoding="utf-8") as f:
        return f.read()


def check_updates():
    import yaml  # kas depends on PyYAML

    common = yaml.safe_load(read("kas", "common.yml")) or {}
    repos = common.get("repos") or {}
    m = re.search(r'^LAYERDEPENDS_cart = "([^"]*)"', read("conf", "layer.conf"), re.M)
    for collection in (m.group(1).split() if m else []):
        repo = LAYER_REPOS.get(collection)
        if repo is None:
            errors.append(f"layer.conf depends on {collection}: add its repository to LAYER_REPOS and kas/common.yml")
        elif repo not in repos:
            errors.append(f"kas/common.yml: no repository {repo} for the layer collection {collection}")

    release = yaml.safe_load(read("kas", "release.yml")) or {}
    headers = "\n".join((release.get("local_conf_header") or {}).values())
    if not re.search(r'^CART_RELEASE = "1"$', headers, re.M):
        errors.append('kas/release.yml: local_conf_header must set CART_RELEASE = "1" (refuses the development keys)')
    for var in ("RAUC_KEY_FILE", "RAUC_CERT_FILE", "RAUC_KEYRING_FILE"):
        if var not in (release.get("env") or {}):
            errors.append(f"kas/release.yml: env must forward {var} (the release's signing material)")
    if 'INHERIT += "cart_release_keys"' not in read("conf", "distro", "cart.conf"):
        errors.append("conf/distro/cart.conf: must inherit cart_release_keys")

    confs = sorted(glob.glob(os.path.join(LAYER, "recipes-core", "rauc", "files", "*", "system.conf")))
    if not confs:
        errors.append("no RAUC system.conf under recipes-core/rauc/files/<machine>/")
    for conf in confs:
        name = os.path.relpath(conf, LAYER)
        section = None
        for n, line in enumerate(open(conf, encoding="utf-8"), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            sm = re.fullmatch(r"\[([^\]]+)\]", line)
            if sm:
                section = sm.group(1)
                kind = "slot" if re.fullmatch(r"slot\.[\w-]+\.\d+", section) else section
                if kind not in RAUC_KEYS:
                    errors.append(f"{name}:{n}: section [{section}] is not one RAUC 1.8 and 1.15 both read")
                continue
            key, _, value = line.partition("=")
            key = key.strip()
            if section is None or key not in RAUC_KEYS.get(kind, set()):
                errors.append(f"{name}:{n}: key {key} in [{section}] is not one the cart uses from RAUC 1.8 and 1.15")
            if section == "system" and key == "compatible" and value.strip() != "@CART_RAUC_COMPATIBLE@":
                errors.append(f"{name}:{n}: compatible must be @CART_RAUC_COMPATIBLE@ (filled in by rauc-conf)")

    bundle = read("recipes-core", "bundles", "cart-bundle_1.0.bb")
    if 'RAUC_BUNDLE_FORMAT = "verity"' not in bundle:
        errors.append('cart-bundle: RAUC_BUNDLE_FORMAT must be "verity"')
    if 'RAUC_BUNDLE_COMPATIBLE = "${CART_RAUC_COMPATIBLE}"' not in bundle:
        errors.append("cart-bundle: RAUC_BUNDLE_COMPATIBLE must be ${CART_RAUC_COMPATIBLE}, as system.conf")

    policy = read("recipes-core", "rauc", "files", "de.pengutronix.rauc.conf")
    policy = re.sub(r"<!--.*?-->", "", policy, flags=re.S)
    _, users, _ = sysusers()
    for m in re.finditer(r'<policy ([^>]*)>(.*?)</policy>', policy, re.S):
        who, body = m.group(1), m.group(2)
        allows = re.search(r'<allow send_destination="de\.pengutronix\.rauc"', body)
        um = re.fullmatch(r'user="([^"]+)"', who.strip())
        if allows and not (um and um.group(1) in {"root"} | set(users)):
            errors.append(f"de.pengutronix.rauc.conf: <policy {who}> may call RAUC; only root and the cart's user may")


def main():
    check_kas()
    check_users()
    check_install()
    check_updates()
    if errors:
        sys.exit("check-layer:\n  " + "\n  ".join(errors))
    print("check-layer: kas files valid and pinned; users and groups match sysusers.d; units match files.list; "
          "RAUC layer pinned, release refuses the development keys, system.conf keys read by RAUC 1.8 and 1.15, "
          "D-Bus policy root and cart only")


if __name__ == "__main__":
    main()
