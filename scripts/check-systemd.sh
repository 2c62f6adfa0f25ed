#!/usr/bin/env bash
# Checks the daemon's unit: `systemd-analyze verify` (with ExecStart pointed
# at the binary this build made, since /usr/bin/cart-app exists only in the
# image) and `systemd-analyze security`, which must stay at or below 2.5.
# See docs/systemd.md for the score and the exposures kept.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v systemd-analyze >/dev/null || {
  echo "check-systemd: systemd-analyze missing: install the Debian package systemd" >&2
  exit 1
}
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/cart-app"
[ -x "$bin" ] || { echo "check-systemd: build cart-app first ($bin missing)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in systemd/*.service; do
  name=$(basename "$unit")
  sed "s#^ExecStart=/usr/bin/cart-app#ExecStart=$bin#" "$unit" > "$tmp/$name"
  (cd "$tmp" && systemd-analyze verify "./$name")
  score=$(cd "$tmp" && systemd-analyze security --offline=true "./$name" 2>/dev/null \
    | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  [ -n "$score" ] || { echo "check-systemd: no security score for $name" >&2; exit 1; }
  echo "check-systemd: $name verified; exposure $score (limit 2.5)"
  awk -v s="$score" 'BEGIN { exit !(s <= 2.5) }' || {
    echo "check-systemd: $name exposure $score is above 2.5" >&2
    exit 1
  }
done

# The journal reader for diagnostic bundles: the socket and one instance of
# its template service (verify needs an instance name).
cp packaging/systemd/cart-journal.socket "$tmp/"
cp "packaging/systemd/cart-journal@.service" "$tmp/"
cp "packaging/systemd/cart-journal@.service" "$tmp/cart-journal@0.service"
(cd "$tmp" && systemd-analyze verify ./cart-journal.socket ./cart-journal@0.service)
score=$(cd "$tmp" && systemd-analyze security --offline=true ./cart-journal@0.service 2>/dev/null \
  | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
echo "check-systemd: cart-journal.socket, cart-journal@.service verified; exposure $score (limit 1.5)"
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 1.5) }' || {
  echo "check-systemd: cart-journal@.service exposure '$score' is above 1.5" >&2
  exit 1
}

# The update health deadline (root, one-shot per boot).
cp packaging/systemd/cart-update-deadline.service "$tmp/"
sed -i "s#^ExecStart=/usr/bin/cartctl#ExecStart=$(dirname "$bin")/cartctl#" "$tmp/cart-update-deadline.service"
(cd "$tmp" && systemd-analyze verify ./cart-update-deadline.service)
echo "check-systemd: cart-update-deadline.service verified"
