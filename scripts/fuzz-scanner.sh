#!/usr/bin/env bash
# Fuzzes the scanner decoder, each target for a fixed time (not run in CI).
#
#   scripts/fuzz-scanner.sh [SECONDS]   # per target; default and minimum 600
#   FUZZ_SMOKE=1 scripts/fuzz-scanner.sh 30   # a short smoke run (below the minimum)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Only a stable
# toolchain is on our machines: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# nightly-only flags (sanitizer, coverage). The corpus is seeded from the
# decoder's table of real-world codes and from the regression inputs.
#
# Regression inputs: every crash found so far is kept under
# hal/tests/data/scanner/regressions/<target>/ (committed); the hal test
# `scanner_props::every_kept_fuzz_crash_decodes_without_panic` replays them
# on every `cargo test`, and this script runs them first. A new crash is
# copied there (named after its hash) and the script exits non-zero after
# all targets ran: add the file to git with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds="${1:-600}"
if [ "$seconds" -lt 600 ] && [ -z "${FUZZ_SMOKE:-}" ]; then
    echo "each target runs at least 600 s; set FUZZ_SMOKE=1 for a shorter smoke run" >&2
    exit 2
fi
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

found=0
cd fuzz
for target in scanner_decode scanner_lines; do
    regressions="$root/hal/tests/data/scanner/regressions/$target"
    artifacts="$root/fuzz/artifacts/$target"
    mkdir -p "$regressions" "$artifacts"
    echo "== $target: kept regression inputs"
    if [ -n "$(ls -A "$regressions")" ]; then
        RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$regressions" -- -runs=0
    fi
    echo "== $target: ${seconds} s"
    # -fork with -ignore_crashes keeps fuzzing after a crash, so one run
    # finds as many as it can; each crash lands in $artifacts.
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$root/fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=512 -timeout=10 \
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -print_final_stats=1 || true
    for crash in "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
        [ -e "$crash" ] || continue
        name=$(basename "$crash")
        if [ ! -e "$regressions/$name" ]; then
            cp "$crash" "$regressions/$name"
            echo "new crash kept as a regression input: hal/tests/data/scanner/regressions/$target/$name" >&2
            found=1
        fi
    done
done
if [ "$found" -ne 0 ]; then
    echo "fuzz: crashes found (see above)" >&2
    exit 1
fi
echo "fuzz: all targets ran clean for ${seconds} s each"
