# Shared by packaging/build-deb.sh, build-rpm.sh and tests/test-packages.sh (sourced).
# shellcheck shell=bash

PKG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

pkg_log() { printf '%s: %s\n' "${PKG_LOG_TAG:-packaging}" "$*" >&2; }
pkg_die() { pkg_log "error: $*"; exit 1; }

# The one version: project() in meson.build.
pkg_version() {
        sed -n "/^project(/,/)/s/^[[:space:]]*version:[[:space:]]*'\([^']*\)'.*/\1/p" "$PKG_ROOT/meson.build" | head -n1
}

# Copies the source tree to DEST as a fresh clone would have it (plus changes not yet
# committed): tracked and untracked files that .gitignore does not exclude, so no build/
# directory, no .git. Outside a git checkout: everything but build*/ and .git.
pkg_copy_clean_tree() {
        local dest=$1
        mkdir -p "$dest"
        if git -C "$PKG_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
                (cd "$PKG_ROOT" && git ls-files -z --cached --others --exclude-standard |
                        while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done |
                        tar --null --no-recursion -T - -cf -) | tar -xf - -C "$dest"
        else
                (cd "$PKG_ROOT" && tar --exclude='./build*' --exclude=./.git --exclude=./debian -cf - .) |
                        tar -xf - -C "$dest"
        fi
}
