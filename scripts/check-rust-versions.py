#!/usr/bin/env python3
"""Fail when a locked dependency needs a newer Rust than the image's toolchain.

The device image is built with Yocto's Rust (1.94.1), while developers and CI
only have a newer toolchain, so nothing else would notice a dependency that
quietly raised its minimum Rust version. Reads `cargo metadata` for the locked
graph (all features, all targets) and compares each package's `rust-version`
with the workspace's.
"""
import json
import subprocess
import sys

LIMIT = (1, 94)


def parse(version):
    parts = [int(p) for p in version.split(".")[:2]]
    while len(parts) < 2:
        parts.append(0)
    return tuple(parts)


def main():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    meta = json.loads(out)
    resolved = {node["id"] for node in meta["resolve"]["nodes"]}
    too_new = []
    for pkg in meta["packages"]:
        if pkg["id"] not in resolved:
            continue
        rv = pkg.get("rust_version")
        if rv and parse(rv) > LIMIT:
            too_new.append(f"{pkg['name']} {pkg['version']} needs Rust {rv}")
    if too_new:
        print(f"dependencies above rust-version {LIMIT[0]}.{LIMIT[1]}:", file=sys.stderr)
        for line in sorted(too_new):
            print(f"  {line}", file=sys.stderr)
        sys.exit(1)
    print(f"rust-version check: {len(resolved)} locked packages, all <= {LIMIT[0]}.{LIMIT[1]}")


if __name__ == "__main__":
    main()
