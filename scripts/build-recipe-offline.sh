#!/usr/bin/env bash
# Builds the cart the way the Yocto recipe does, and is the one optimized
# build CI makes (the QEMU guest installs its target/release/cart-app and
# cartctl):
#   - only the crates yocto-layer/recipes-cart/cart-app/cart-app-crates.inc
#     lists, taken from the local cargo cache and checked against the .inc's
#     sha256, unpacked as a directory source that replaces crates.io (what
#     bitbake's crate fetcher and cargo_common.bbclass do);
#   - `cargo build --offline --frozen -p cart-app --release --features
#     linuxkms` (the recipe's CARGO_BUILD_FLAGS);
#   - SQLite and zstd from the system through pkg-config, as the recipe links
#     the image's sqlite3 and zstd (LIBSQLITE3_SYS_USE_PKG_CONFIG,
#     ZSTD_SYS_USE_PKG_CONFIG).
# A crate missing from the .inc fails here, not in an integrator's bitbake
# run. Cargo skips the build when target/release is up to date.
#
#   scripts/build-recipe-offline.sh          build, then scripts/check-needed.py
set -euo pipefail
cd "$(dirname "$0")/.."

inc=yocto-layer/recipes-cart/cart-app/cart-app-crates.inc
vendor=target/recipe-vendor

# The cache must hold every crate of the lock (the registry is reachable).
cargo fetch --locked --quiet

# Unpack the .inc's crates once per .inc content. A crate already unpacked
# from the same .crate (its .cargo-checksum.json) is kept as it is, so cargo
# sees unchanged files and rebuilds nothing; crates no longer listed go.
stamp=$(sha256sum "$inc" | cut -d' ' -f1)
if [ "$(cat "$vendor/.stamp" 2>/dev/null)" != "$stamp" ]; then
  mkdir -p "$vendor"
  python3 - "$inc" "$vendor" <<'EOF'
import glob, hashlib, json, os, re, shutil, sys, tarfile
inc, vendor = sys.argv[1], sys.argv[2]
text = open(inc, encoding="utf-8").read()
crates = re.findall(r"crate://crates\.io/([^/\s]+)/([^\s\\]+)", text)
sums = dict(re.findall(r'SRC_URI\[([^\]]+)\.sha256sum\] = "([0-9a-f]{64})"', text))
home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
caches = glob.glob(os.path.join(home, "registry", "cache", "index.crates.io-*"))
bad = []
listed = {f"{n}-{v}" for n, v in crates}
for entry in os.listdir(vendor):
    if entry not in listed and not entry.startswith("."):
        shutil.rmtree(os.path.join(vendor, entry))
for name, version in crates:
    key = f"{name}-{version}"
    want = sums.get(key)
    if want is None:
        bad.append(f"{key}: no sha256sum in the .inc")
        continue
    path = next((p for p in (os.path.join(c, key + ".crate") for c in caches) if os.path.exists(p)), None)
    if path is None:
        bad.append(f"{key}: not in the cargo cache")
        continue
    data = open(path, "rb").read()
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        bad.append(f"{key}: sha256 {got}, the .inc says {want}")
        continue
    try:
        with open(os.path.join(vendor, key, ".cargo-checksum.json")) as f:
            if json.load(f).get("package") == got:
                continue  # unpacked from this very .crate before: keep its files
    except (OSError, ValueError):
        pass
    shutil.rmtree(os.path.join(vendor, key), ignore_errors=True)
    with tarfile.open(path, "r:gz") as tar:
        # The "data" filter (no links out, no device files) where Python has it.
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(vendor, **extra)
    # What bitbake's crate fetcher writes beside each unpacked crate.
    with open(os.path.join(vendor, key, ".cargo-checksum.json"), "w") as f:
        json.dump({"files": {}, "package": got}, f)
if bad:
    sys.exit("build-recipe-offline: " + "\n  ".join(["crates of the .inc unusable:"] + bad))
print(f"build-recipe-offline: {len(crates)} crates of the .inc checked against their sha256 and unpacked")
EOF
  echo "$stamp" > "$vendor/.stamp"
fi

export LIBSQLITE3_SYS_USE_PKG_CONFIG=1 ZSTD_SYS_USE_PKG_CONFIG=1
cargo build --offline --frozen -p cart-app --release --features linuxkms \
  --config 'source.crates-io.replace-with="recipe-vendor"' \
  --config "source.recipe-vendor.directory=\"$PWD/$vendor\""

python3 scripts/check-needed.py target/release/cart-app
