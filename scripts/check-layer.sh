#!/usr/bin/env bash
# The Yocto layer's checks in the test command (no bitbake needed; for the
# bitbake parse see scripts/check-yocto.sh):
#   1. cart-app-crates.inc is what Cargo.lock gives (scripts/gen-crates-inc.py);
#   2. the kas files are valid and pinned, the recipe's users are
#      sysusers.d's, its units files.list's (scripts/check-layer.py);
#   3. oelint-adv is clean on every recipe, bbappend and class of the layer;
#   4. the recipe-style release build from exactly the .inc's crates, then
#      its NEEDED list against the recipe (scripts/build-recipe-offline.sh).
# scripts/setup.sh installs oelint-adv and kas into target/yocto-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/yocto-tools/bin

python3 scripts/gen-crates-inc.py --check
"$tools/python" scripts/check-layer.py

# Suppressed oelint rules, each for a reason:
#   oelint.var.mandatoryvar.HOMEPAGE     the project has no public home page;
#                                        CART_GIT_URI names its repository
#   oelint.var.suggestedvar.BUGTRACKER   no public bug tracker either
#   oelint.var.suggestedvar.CVE_PRODUCT  the default (the recipe's name) is
#                                        right: no upstream CPE exists
#   oelint.var.bbclassextend             a device daemon, its data and images:
#                                        no native/nativesdk variant makes sense
# Inline suppressions (`# nooelint:` in the files) cover the generated
# crates.inc's spacing (oe-core's own format), the anonymous Python that
# skips a recipe without a source, and the test image's login features.
# homepageping needs the network and is not in the default rule set.
(cd yocto-layer && "../$tools/oelint-adv" --quiet --release wrynose \
  --constantmods=+.oelint-constants.json \
  --suppress oelint.var.mandatoryvar.HOMEPAGE \
  --suppress oelint.var.suggestedvar.BUGTRACKER \
  --suppress oelint.var.suggestedvar.CVE_PRODUCT \
  --suppress oelint.var.bbclassextend \
  $(find . \( -name '*.bb' -o -name '*.bbappend' -o -name '*.bbclass' \) | sort))
echo "check-layer: oelint-adv clean"

scripts/build-recipe-offline.sh
