#!/bin/sh
# What the packages must agree on with the project, checked without building them:
# - one version: meson's project() version (VERSION) is the upstream version of
#   packaging/debian/changelog's top entry, the Version: of packaging/rpm/transmitter.spec,
#   and what the daemon built from it prints (the same string is in its User-Agent);
# - one group: GROUP (the Group= of units/transmitter.service.in, from meson) is the .spec's
#   %conf_group and is declared in units/transmitter.sysusers.
# Run by `meson test package-consistency`, or by hand:
#   packaging/tests/check-consistency.sh 0.1.0 transmitter-config build/src/transmitter
# Ends with "N passed, N failed".
set -u
version=${1:?usage: check-consistency.sh VERSION GROUP [BINARY]}
group=${2:?usage: check-consistency.sh VERSION GROUP [BINARY]}
binary=${3:-}
pkg=$(dirname "$0")/..
top=$pkg/..
passed=0 failed=0
check() { # what expected actual
        if [ "$2" = "$3" ]; then
                passed=$((passed + 1))
        else
                failed=$((failed + 1))
                echo "FAIL: $1 is '$3', expected '$2'"
        fi
}

# debian/changelog: "transmitter (0.1.0-1) unstable; urgency=medium" -> 0.1.0
deb=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' "$pkg/debian/changelog")
deb_upstream=${deb#*:}
deb_upstream=${deb_upstream%-*}
check "the upstream version of packaging/debian/changelog ($deb)" "$version" "$deb_upstream"

spec=$pkg/rpm/transmitter.spec
check "Version: of packaging/rpm/transmitter.spec" "$version" "$(sed -n 's/^Version:[[:space:]]*//p' "$spec" | head -n1)"
check "%changelog's top entry of packaging/rpm/transmitter.spec" "$version" \
        "$(sed -n '/^%changelog/,$s/^\*.* - \([^ -]*\)-[^ -]*$/\1/p' "$spec" | head -n1)"

if [ -n "$binary" ]; then
        check "'$binary --version'" "transmitter $version" "$("$binary" --version)"
fi

check "%conf_group of packaging/rpm/transmitter.spec (the unit's Group=)" "$group" \
        "$(sed -n 's/^%global[[:space:]]*conf_group[[:space:]]*//p' "$spec")"
declared=$(awk -v g="$group" '($1 == "g" || $1 == "u") && $2 == g { print $2 }' "$top/units/transmitter.sysusers")
check "a group units/transmitter.sysusers declares" "$group" "$declared"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
