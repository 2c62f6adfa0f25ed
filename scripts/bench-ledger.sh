#!/usr/bin/env bash
# Ledger benchmarks in release: latency percentiles, throughput, and the
# fsync/fdatasync calls per checkout counted with strace.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench -p store-and-forward --bench ledger --no-run
bin=$(ls -t target/release/deps/ledger-* | grep -v '\.d$' | head -1)
"$bin"

count() {
  strace -f -c -e trace=fsync,fdatasync -o "$1" "$bin" --checkouts "$2" >/dev/null
  awk '/fsync|fdatasync/ { n += $4 } END { print n + 0 }' "$1"
}
tmp=$(mktemp -d)
base=$(count "$tmp/zero" 0)
n=1000
with=$(count "$tmp/many" "$n")
echo "fsync+fdatasync: $base for open alone, $with with $n checkouts: $(( (with - base) / n )).$(( ((with - base) % n) * 100 / n )) per checkout"
rm -rf "$tmp"
