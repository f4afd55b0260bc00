#!/usr/bin/env bash
# The chaos soak (tests/soak/README.md): tests/soak/run.sh --minutes N [--seed S] [--rate R]
#
# Starts a throw-away broker, database and receiver of its own (tests/env), two transmitters
# from the build tree (SOAK_BUILD, default build: the plain build, the one that ships), a
# publisher and random faults, and checks at the end that nothing was lost. Where it can (root,
# unshare), all of it runs in a network namespace of its own, so that the latency faults with
# `tc` on the loopback touch nothing else on the machine. Exit status 0 only if every check held.
# Everything it starts is stopped by PID, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${SOAK_BUILD:-$root/build}

if [[ ! -x $build/src/transmitter ]]; then
        [[ -f $build/build.ninja ]] || meson setup "$build" >/dev/null
        ninja -C "$build" >/dev/null
fi
ninja -C "$build" src/transmitter tests/amqp-get >/dev/null

dir=$(mktemp -d /tmp/transmitter-soak.XXXXXX)
chmod a+x "$dir" # PostgreSQL runs as postgres and must enter it
cleanup() {
        bash tests/env/devenv.sh down "$dir/env" >/dev/null 2>&1 || true
        if [[ ${SOAK_KEEP:-0} == 1 || ${status:-1} -ne 0 ]]; then
                echo "soak: logs kept in $dir"
        else
                rm -rf "$dir"
        fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export TRANSMITTER_TEST_DEVENV=$dir/env
export SOURCE_ROOT=$root BUILD_ROOT=$build TRANSMITTER_BIN=$build/src/transmitter AMQP_GET_BIN=$build/tests/amqp-get
export PYTHONDONTWRITEBYTECODE=1 TMPDIR=$dir

run=(/usr/bin/python3 tests/soak/soak.py "$@")
status=0
if [[ $(id -u) -eq 0 ]] && unshare --net true 2>/dev/null; then
        # An Ethernet-sized MTU: tbf drops every packet larger than its burst (32 KB), and the
        # loopback's 64 KB segments would never pass a bandwidth fault, stalling TCP for minutes.
        SOAK_NETNS=1 unshare --net --fork -- bash -c 'ip link set lo mtu 1500 up && exec "$@"' soak "${run[@]}" ||
                status=$?
else
        echo "soak: no network namespace (needs root and unshare): no tc faults, the loopback is shared"
        "${run[@]}" || status=$?
fi
exit $status
