#!/bin/sh
# Installs the cart into a root file system from packaging/files.list.
#   packaging/install.sh DESTDIR BINDIR [--owners]
# DESTDIR: the root to install into (the recipe's ${D}, the guest's rootfs).
# BINDIR: where the built cart-app and cartctl are (target/<triple>/release).
# --owners: chown to the list's owners, looked up in DESTDIR/etc/passwd and
# /etc/group (the guest builder, which runs as root); without it files are
# left to the caller's owner (bitbake's pseudo makes them root, and the
# recipe sets the one non-root owner itself).
# POSIX sh only: bitbake runs do_install with /bin/sh.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 DESTDIR BINDIR [--owners]" >&2; exit 2; }
dest=$1
bindir=$2
owners=${3:-}
top=$(cd "$(dirname "$0")/.." && pwd)

lookup() { # file name -> numeric id
  awk -F: -v n="$2" '$1 == n { print $3; found = 1 } END { exit !found }' "$1" ||
    { echo "install.sh: $2 not in $1 (sysusers.d/cart.conf applied?)" >&2; exit 1; }
}

grep -v '^[[:space:]]*\(#\|$\)' "$top/packaging/files.list" |
while read -r type path mode owner group source; do
  case $type in
    f)
      case $source in
        @*) src="$bindir/${source#@}" ;;
        *) src="$top/$source" ;;
      esac
      [ -f "$src" ] || { echo "install.sh: $src missing" >&2; exit 1; }
      install -D -m "$mode" "$src" "$dest$path"
      ;;
    d) install -d -m "$mode" "$dest$path" ;;
    *) echo "install.sh: unknown type $type in files.list" >&2; exit 1 ;;
  esac
  if [ "$owners" = "--owners" ]; then
    chown "$(lookup "$dest/etc/passwd" "$owner"):$(lookup "$dest/etc/group" "$group")" "$dest$path"
  fi
  # chmod after chown: chown clears the setgid bit of a directory.
  chmod "$mode" "$dest$path"
done
