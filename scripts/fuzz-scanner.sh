#!/usr/bin/env bash
# Fuzzes the scanner decoder for a fixed budget (not run in CI).
#
#   scripts/fuzz-scanner.sh [RUNS]     # default 2,000,000 inputs per target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Only a stable
# toolchain is on our machines: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# nightly-only flags (sanitizer, coverage). The corpus is seeded from the
# decoder's table of real-world codes. Exits non-zero on the first crash;
# the crashing input is left under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-2000000}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

# Seed corpus: every scanned line of the code table, as bytes.
seed=fuzz/corpus/scanner_decode
mkdir -p "$seed" fuzz/corpus/scanner_lines
i=0
grep -v '^#' hal/tests/data/scanner/codes.tsv | cut -f1 | while IFS= read -r line; do
    i=$((i + 1))
    printf '%s' "${line//<GS>/$'\x1d'}" > "$seed/table-$i"
done

cd fuzz
for target in scanner_decode scanner_lines; do
    echo "== $target: $runs runs"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -runs="$runs" -max_len=512 -timeout=10
done
echo "fuzz: all targets ran clean for $runs runs each"
