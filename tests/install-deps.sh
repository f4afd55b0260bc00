#!/usr/bin/env bash
# Installs, from Debian 12's archive, everything the build, the tests and the demo need.
# Idempotent; needs root (or sudo). Services are not started by the packages: the tests
# and the demo start throw-away instances of their own.
set -euo pipefail

packages=(
        # build
        meson ninja-build pkg-config gcc libc6-dev
        libsystemd-dev librabbitmq-dev libpq-dev libcurl4-openssl-dev zlib1g-dev libssl-dev libjson-c-dev
        libdeflate-dev
        libmicrohttpd-dev libcriterion-dev
        # the development environment: broker, database, HTTPS receiver, certificates
        rabbitmq-server postgresql openssl curl python3 procps util-linux gzip
        # the benchmark's reference gzip engines (tests/bench/cpubench.c)
        libisal-dev
        # checks: promtool, valgrind, a systemd user manager and journald, YAML for the rules' test
        prometheus valgrind systemd dbus python3-yaml
        # the fuzz targets (tests/fuzz): clang and libFuzzer
        clang libfuzzer-14-dev
        # the chaos soak's network latency (tests/soak): tc
        iproute2
        # packages: the .deb, the .rpm, the man pages
        build-essential debhelper dpkg-dev fakeroot lintian rpm scdoc man-db
)

missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
        echo "install-deps: all ${#packages[@]} packages are installed"
        exit 0
fi

SUDO=
[[ $(id -u) -eq 0 ]] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
# No package may start its service here (there may be no init system to start it with).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        created_policy=1
fi
cleanup() { [[ $created_policy -eq 0 ]] || $SUDO rm -f "$policy"; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
