#!/usr/bin/env python3
"""Compares what the built cart-app links with what its recipe declares.

    scripts/check-needed.py target/release/cart-app

The recipe (yocto-layer/recipes-cart/cart-app/cart-app_git.bb) keeps
CART_APP_NEEDED, a soname=package table of what the binary links,
CART_APP_OPENS, what it opens at run time without linking, and
RDEPENDS:${PN}. This check fails when
  - the binary's `readelf -d` NEEDED list has a soname the table lacks;
  - the table names a soname the binary does not link (a stale entry;
    the dynamic loader of another architecture excepted);
  - RDEPENDS:${PN} is not exactly the table's packages (less the toolchain's
    glibc and libgcc) plus CART_APP_OPENS.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "yocto-layer", "recipes-cart", "cart-app", "cart-app_git.bb")
TOOLCHAIN = {"glibc", "libgcc"}


def variable(text, name):
    """The value of `NAME = "..."` in a recipe, continuation lines joined."""
    m = re.search(r"^" + re.escape(name) + r' = "((?:[^"\\]|\\\n|\\.)*)"', text, re.M)
    if not m:
        sys.exit(f"check-needed: {name} not found in {os.path.relpath(RECIPE, ROOT)}")
    return m.group(1).replace("\\\n", " ")


def needed(binary):
    out = subprocess.run(["readelf", "-d", binary], check=True, capture_output=True, text=True).stdout
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check-needed.py BINARY")
    text = open(RECIPE, encoding="utf-8").read()
    table = dict(e.split("=", 1) for e in variable(text, "CART_APP_NEEDED").split())
    opens = variable(text, "CART_APP_OPENS").split()
    rdepends = variable(text, "RDEPENDS:${PN}").replace("${CART_APP_OPENS}", " ".join(opens)).split()
    linked = needed(sys.argv[1])
    errors = []
    for so in sorted(linked - table.keys()):
        errors.append(f"{so} is linked but not in CART_APP_NEEDED (add soname=package, and the package to RDEPENDS)")
    for so in sorted(table.keys() - linked):
        if not so.startswith("ld-linux-"):
            errors.append(f"{so} is in CART_APP_NEEDED but not linked (remove it)")
    want = {table[so] for so in linked if so in table} - TOOLCHAIN | set(opens)
    have = set(rdepends)
    for p in sorted(want - have):
        errors.append(f"RDEPENDS:${{PN}} lacks {p}")
    for p in sorted(have - want):
        errors.append(f"RDEPENDS:${{PN}} has {p}, which the binary neither links nor opens")
    if errors:
        sys.exit("check-needed: " + "\n  ".join([f"{sys.argv[1]} and the recipe disagree:"] + errors))
    print(f"check-needed: {len(linked)} linked libraries match CART_APP_NEEDED; RDEPENDS matches ({len(have)} packages)")


if __name__ == "__main__":
    main()
