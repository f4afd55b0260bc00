#!/usr/bin/env bash
# Builds the .rpm from packaging/rpm/transmitter.spec and a tarball of a clean copy of the
# source tree.
#
#   packaging/build-rpm.sh [OUTDIR]        default OUTDIR: build/packages
#
# On Fedora/RHEL (rpmbuild with redhat-rpm-config, meson and systemd-rpm-macros) this is a
# plain `rpmbuild -bb`. On a Debian host (Debian's rpm package) the Fedora-only macros come
# from packaging/rpm/debian-host.macros and BuildRequires are not checked (--nodeps: they
# use Fedora's names; the Debian build dependencies are the same libraries). Leaves in
# OUTDIR: transmitter-<version>-<release>.<arch>.rpm and build-rpm.log. RPM_NOCHECK=1 skips %check.
set -euo pipefail
# shellcheck disable=SC2034 # read by lib.sh's pkg_log
PKG_LOG_TAG=build-rpm
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

out=${1:-$PKG_ROOT/build/packages}
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(pkg_version)
[[ -n $version ]] || pkg_die "no version in meson.build's project()"
command -v rpmbuild >/dev/null || pkg_die "rpmbuild not found (apt-get install rpm, or dnf install rpm-build)"

work=$(mktemp -d /tmp/transmitter-rpm.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
pkg_copy_clean_tree "$work/transmitter-$version"
tar -C "$work" -czf "$work/SOURCES/transmitter-$version.tar.gz" "transmitter-$version"
# Source1 of releases whose rpm does not create sysusers.d users itself (see the .spec).
cp "$work/transmitter-$version/units/transmitter.sysusers" "$work/SOURCES/"
rm -rf "${work:?}/transmitter-$version"

args=(-bb --define "_topdir $work")
# RPM_NOCHECK=1: skip %check (the unit suite), e.g. when the .deb build just ran it.
[[ -z ${RPM_NOCHECK:-} ]] || args+=(--nocheck)
if [[ -r /etc/debian_version ]]; then
        args+=(--nodeps --load "$PKG_ROOT/packaging/rpm/debian-host.macros")
fi
pkg_log "rpmbuild ${args[*]} (log: $out/build-rpm.log)"
if ! rpmbuild "${args[@]}" "$PKG_ROOT/packaging/rpm/transmitter.spec" >"$out/build-rpm.log" 2>&1; then
        tail -n 60 "$out/build-rpm.log" >&2
        pkg_die "rpmbuild failed (whole log: $out/build-rpm.log)"
fi
shopt -s nullglob
rpms=("$work"/RPMS/*/transmitter-*.rpm)
[[ ${#rpms[@]} -gt 0 ]] || pkg_die "rpmbuild left no .rpm"
rm -f "$out"/transmitter-*.rpm
mv "${rpms[@]}" "$out/"
for f in "${rpms[@]}"; do echo "$out/$(basename "$f")"; done
