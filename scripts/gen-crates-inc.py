#!/usr/bin/env python3
"""Writes yocto-layer/recipes-cart/cart-app/cart-app-crates.inc from the
workspace's Cargo.lock, in the format of oe-core's own generated
`*-crates.inc` files (what `bitbake -c update_crates` writes), plus the
licence expression of the crates it lists.

Only the workspace's Cargo.lock is read for the crate list: oe-core's
`update_crates` task would walk every Cargo.lock under the source tree and
also take fuzz/Cargo.lock, whose crates the image never builds. Cargo.lock's
`checksum` is the sha256 of the .crate file, which is what bitbake's crate
fetcher checks.

The licences come from each crate's own Cargo.toml, read from the .crate
file in the local cargo cache (`cargo fetch --locked` fills it).

    scripts/gen-crates-inc.py           rewrite the .inc
    scripts/gen-crates-inc.py --check   exit 1 if the .inc is not what
                                        Cargo.lock gives (the test command)
"""

import argparse
import difflib
import glob
import os
import re
import sys
import tarfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK = os.path.join(ROOT, "Cargo.lock")
INC = os.path.join(ROOT, "yocto-layer", "recipes-cart", "cart-app", "cart-app-crates.inc")
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"

# SPDX identifiers as oe-core's common-licenses names them (meta/files/
# common-licenses and SPDXLICENSEMAP in meta/conf/licenses.conf). Anything
# not listed here must be added on purpose: the script fails on it.
SPDX_TO_OE = {
    "0BSD": "0BSD",
    "Apache-2.0": "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception": "Apache-2.0-with-LLVM-exception",
    "BSD-2-Clause": "BSD-2-Clause",
    "BSD-3-Clause": "BSD-3-Clause",
    "BSL-1.0": "BSL-1.0",
    "CC0-1.0": "CC0-1.0",
    "CDLA-Permissive-2.0": "CDLA-Permissive-2.0",
    "GPL-3.0-only": "GPL-3.0-only",
    "ISC": "ISC",
    "LGPL-2.1-or-later": "LGPL-2.1-or-later",
    "MIT": "MIT",
    "MIT-0": "MIT-0",
    "MPL-2.0": "MPL-2.0",
    "OFL-1.1": "OFL-1.1",
    "Unicode-3.0": "Unicode-3.0",
    "Unicode-DFS-2016": "Unicode-DFS-2016",
    "Unlicense": "Unlicense",
    "Zlib": "Zlib",
    # Slint's own licences (not in common-licenses): the recipe points
    # NO_GENERIC_LICENSE at their texts inside the vendored slint crate.
    "LicenseRef-Slint-Royalty-free-2.0": "LicenseRef-Slint-Royalty-free-2.0",
    "LicenseRef-Slint-Software-3.0": "LicenseRef-Slint-Software-3.0",
}


def cargo_cache():
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    dirs = glob.glob(os.path.join(home, "registry", "cache", "index.crates.io-*"))
    return dirs


def registry_crates(lock_path=LOCK):
    """(name, version, checksum) of every crates.io package of the lock, in its order."""
    with open(lock_path, "rb") as f:
        lock = tomllib.load(f)
    crates = []
    for p in lock.get("package", []):
        source = p.get("source")
        if source is None:
            continue  # a workspace member
        if source != CRATES_IO:
            sys.exit(f"gen-crates-inc: {p['name']} {p['version']} comes from {source}: "
                     "only crates.io crates can be listed (git sources need manual entries)")
        if "checksum" not in p:
            sys.exit(f"gen-crates-inc: {p['name']} {p['version']} has no checksum in Cargo.lock")
        crates.append((p["name"], p["version"], p["checksum"]))
    return crates


def crate_file(name, version):
    for d in cargo_cache():
        path = os.path.join(d, f"{name}-{version}.crate")
        if os.path.exists(path):
            return path
    return None


def crate_license(name, version):
    path = crate_file(name, version)
    if path is None:
        sys.exit(f"gen-crates-inc: {name}-{version}.crate not in the cargo cache: run `cargo fetch --locked`")
    # Streamed: stop at the manifest instead of reading the whole archive.
    manifest = None
    with tarfile.open(path, "r|gz") as tar:
        for member in tar:
            if member.name == f"{name}-{version}/Cargo.toml":
                manifest = tomllib.loads(tar.extractfile(member).read().decode("utf-8"))
                break
    if manifest is None:
        sys.exit(f"gen-crates-inc: {path} has no Cargo.toml")
    lic = manifest.get("package", {}).get("license")
    if not lic:
        sys.exit(f"gen-crates-inc: {name} {version} declares no `license` (only license-file): "
                 "add it to the table by hand")
    return lic


def to_oe(expr, who):
    """An SPDX expression in Cargo's syntax -> bitbake's (| for OR, & for AND)."""
    expr = expr.replace("/", " OR ")  # the old Cargo syntax "MIT/Apache-2.0"
    expr = re.sub(r"(\S+) WITH (\S+)", lambda m: m.group(1) + "_WITH_" + m.group(2), expr)
    out = []
    for tok in re.findall(r"\(|\)|[^\s()]+", expr):
        if tok in ("(", ")"):
            out.append(tok)
        elif tok == "OR":
            out.append("|")
        elif tok == "AND":
            out.append("&")
        else:
            spdx = tok.replace("_WITH_", " WITH ")
            if spdx not in SPDX_TO_OE:
                sys.exit(f"gen-crates-inc: {who}: licence {spdx!r} is not in SPDX_TO_OE; "
                         "add it with oe-core's name for it")
            out.append(SPDX_TO_OE[spdx])
    if "(" not in out and "&" not in out:
        # A plain choice: one order, so "MIT OR Apache-2.0" and
        # "Apache-2.0 OR MIT" are one entry.
        out = " | ".join(sorted(t for t in out if t != "|")).split(" ")
    text = " ".join(out).replace("( ", "(").replace(" )", ")")
    if "|" in text or "&" in text:
        text = f"({text})"
    return text


def render(crates, licenses):
    lines = [
        "# Autogenerated with 'scripts/gen-crates-inc.py' from the workspace's Cargo.lock",
        "# (the same format as 'bitbake -c update_crates'; do not edit by hand)",
        "",
        "# from Cargo.lock",
        "# oe-core's generated .inc files start the list with a space: keep their format.",
        "# nooelint: oelint.vars.inconspaces,oelint.vars.notneededspace",
        'SRC_URI += " \\',
    ]
    for name, version, _ in crates:
        lines.append(f"    crate://crates.io/{name}/{version} \\")
    lines.append('"')
    lines.append("")
    for name, version, checksum in crates:
        lines.append(f'SRC_URI[{name}-{version}.sha256sum] = "{checksum}"')
    lines.append("")
    lines.append("# The licences of the crates above, each distinct expression once")
    lines.append("# (from each crate's Cargo.toml); the recipe's LICENSE includes it.")
    lines.append('CART_APP_CRATES_LICENSE = "\\')
    for i, lic in enumerate(licenses):
        sep = " & \\" if i + 1 < len(licenses) else " \\"
        lines.append(f"    {lic}{sep}")
    lines.append('"')
    return "\n".join(lines) + "\n"


def generate():
    crates = registry_crates()
    licenses = sorted({to_oe(crate_license(n, v), f"{n} {v}") for n, v, _ in crates})
    return render(crates, licenses)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the .inc is stale")
    args = ap.parse_args()
    text = generate()
    if args.check:
        try:
            with open(INC, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            diff = difflib.unified_diff(current.splitlines(), text.splitlines(),
                                        "cart-app-crates.inc", "from Cargo.lock", lineterm="", n=0)
            sys.stderr.write("\n".join(list(diff)[:40]) + "\n")
            sys.exit("gen-crates-inc: cart-app-crates.inc and Cargo.lock disagree: "
                     "run scripts/gen-crates-inc.py and commit the .inc")
        print(f"gen-crates-inc: cart-app-crates.inc matches Cargo.lock ({text.count('crate://')} crates)")
        return
    os.makedirs(os.path.dirname(INC), exist_ok=True)
    with open(INC, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"gen-crates-inc: wrote {os.path.relpath(INC, ROOT)} ({text.count('crate://')} crates)")


if __name__ == "__main__":
    main()
