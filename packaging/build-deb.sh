#!/usr/bin/env bash
# Builds the .deb (dpkg-buildpackage -b -us -uc) from a clean copy of the source tree.
#
#   packaging/build-deb.sh [OUTDIR]        default OUTDIR: build/packages
#
# dpkg-buildpackage wants the packaging at debian/ in the source root; this project keeps it
# in packaging/debian/, so the copy gets it as debian/ (the tree itself is not touched).
# Leaves in OUTDIR: transmitter_<version>_<arch>.deb, the dbgsym .deb, .buildinfo,
# .changes, and build-deb.log.
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh's pkg_log
PKG_LOG_TAG=build-deb
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

out=${1:-$PKG_ROOT/build/packages}
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(pkg_version)
[[ -n $version ]] || pkg_die "no version in meson.build's project()"

work=$(mktemp -d /tmp/transmitter-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/transmitter-$version
pkg_copy_clean_tree "$src"
rm -rf "$src/debian"
cp -a "$src/packaging/debian" "$src/debian"

cd "$src"
if ! missing=$(dpkg-checkbuilddeps 2>&1); then
        pkg_die "${missing#dpkg-checkbuilddeps: error: }
(install them with apt-get, or run tests/install-deps.sh)"
fi
pkg_log "dpkg-buildpackage -b -us -uc in $src (log: $out/build-deb.log)"
if ! DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
        dpkg-buildpackage -b -us -uc >"$out/build-deb.log" 2>&1; then
        tail -n 60 "$out/build-deb.log" >&2
        pkg_die "dpkg-buildpackage failed (whole log: $out/build-deb.log)"
fi
shopt -s nullglob
files=("$work"/*.deb "$work"/*.ddeb "$work"/*.buildinfo "$work"/*.changes)
[[ ${#files[@]} -gt 0 ]] || pkg_die "dpkg-buildpackage left no .deb"
rm -f "$out"/transmitter*_*.deb "$out"/transmitter_*.buildinfo "$out"/transmitter_*.changes
mv "${files[@]}" "$out/"
for f in "${files[@]}"; do echo "$out/$(basename "$f")"; done
