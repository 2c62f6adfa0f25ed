#!/usr/bin/env bash
# Ledger benchmarks in release: latency percentiles, throughput, and the
# fsync/fdatasync calls per checkout counted with strace.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench -p store-and-forward --bench ledger --no-run
bin=$(ls -t target/release/deps/ledger-* | grep -v '\.d$' | head -1)
"$bin"
# The maintenance figure once more on a tmpfs: what the maintenance's lock
# holding costs a checkout, without the disk's fsync time (a shared or busy
# disk dominates the figure above).
if [ -d /dev/shm ]; then
  shm=$(mktemp -d /dev/shm/ledger-bench.XXXXXX)
  echo "on tmpfs (no fsync cost):"
  LEDGER_BENCH_DIR="$shm" "$bin" --maintenance
  rm -rf "$shm"
fi

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
