#!/usr/bin/env bash
# The benchmark of issue 7, in one command (run by hand; not part of CI's pass/fail):
#
#   tests/bench/run.sh [--quick] [--long] [bench.py options...]
#
# Builds what it needs (build/ with meson+ninja unless TRANSMITTER_BIN names a binary; the ceiling
# consumer tests/bench/ceiling.c with gcc), brings up its own throw-away environment
# (tests/env/devenv.sh in a temp dir, receiver in --light mode), runs bench.py -- the ceiling and the
# transmitter at BATCH_SIZE 100 and 1000 (gzip 6) and 100 (gzip 1) on N=200,000 preloaded events, the
# latency run (5,000 events/s for 30 s), the RSS run (prefetch 1000; 5 minutes with --long) -- prints
# one JSON line per run ("BENCH {...}") and a table, and tears the environment down.
#
#   --quick        N=20,000, 10 s latency run, 20 s RSS run (a smoke test of the benchmark itself)
#   --long         the RSS run lasts 300 s (memory at minute 1 vs minute 5)
#   --keep         leave the environment up (its directory is printed) instead of tearing it down
#   --profile TOOLS  instead of the benchmark: profile the daemon under load with callgrind, dhat,
#                  massif and/or perf (comma-separated; profile.py --help), e.g. --profile callgrind,dhat
#   other options go to bench.py (--n N, --only b100,latency, --latency-rate R, ...; bench.py --help)
#
# Environment: TRANSMITTER_BIN (the daemon to measure; default build/src/transmitter, built first),
# BUILD_DIR (default build), BENCH_DIR (where the environment goes; default a new mktemp -d),
# PYTHON (default /usr/bin/python3).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
keep=0
driver=bench.py
args=()
prev=
for a in "$@"; do
        if [[ "$prev" == --profile ]]; then
                args+=(--tools "$a")
                prev=
                continue
        fi
        prev=$a
        case "$a" in
        --keep) keep=1 ;;
        --profile) driver=profile.py ;;
        --profile=*)
                driver=profile.py
                args+=(--tools "${a#--profile=}")
                ;;
        -h | --help)
                sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
                exec "$PYTHON" "$here/bench.py" --help
                ;;
        *) args+=("$a") ;;
        esac
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The daemon.
if [[ -n "${TRANSMITTER_BIN:-}" ]]; then
        bin=$TRANSMITTER_BIN
else
        build=${BUILD_DIR:-$root/build}
        if [[ ! -f "$build/build.ninja" ]]; then
                log "meson setup $build"
                (cd "$root" && meson setup "$build" >/dev/null)
        fi
        log "ninja -C $build"
        ninja -C "$build" >/dev/null
        bin=$build/src/transmitter
fi
[[ -x "$bin" ]] || { log "no transmitter binary at $bin"; exit 1; }

# The environment (and its own copy of the helpers).
dir=${BENCH_DIR:-$(mktemp -d /tmp/transmitter-bench.XXXXXX)}
mkdir -p "$dir/bin"
cleanup() {
        if ((keep)); then
                log "environment left up in $dir (stop it with: tests/env/devenv.sh down $dir)"
        else
                bash "$root/tests/env/devenv.sh" down "$dir" >/dev/null 2>&1 || true
        fi
}
trap cleanup EXIT

rmq_flags=$(pkg-config --cflags --libs librabbitmq)
# shellcheck disable=SC2086
gcc -std=c11 -O2 -Wall -Wextra -Werror -I"$root/tests/env" -o "$dir/bin/ceiling" "$here/ceiling.c" $rmq_flags

# The per-stage CPU budget (cpubench.c), with the daemon's own sources and gzip engine (libdeflate when
# the daemon links it); libdeflate and ISA-L as reference stages if installed.
cpu_flags=()
ldd "$bin" 2>/dev/null | grep -q 'libdeflate\.so' && cpu_flags+=(-DHAVE_LIBDEFLATE -ldeflate)
[[ -f /usr/include/libdeflate.h ]] && cpu_flags+=(-DBENCH_LIBDEFLATE -ldeflate)
[[ -f /usr/include/isa-l/igzip_lib.h ]] && cpu_flags+=(-DBENCH_ISAL -lisal)
gcc -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE -I"$root/src" -o "$dir/bin/cpubench" "$here/cpubench.c" \
        "$root/src/core/json-check.c" "$root/src/core/uuid.c" "$root/src/core/envelope.c" "$root/src/util/buffer.c" "$root/src/util/util.c" \
        -lz -lcrypto ${cpu_flags[@]+"${cpu_flags[@]}"} || { log "cpubench did not build (src/ changed?); going on without it"; rm -f "$dir/bin/cpubench"; }

log "starting the environment in $dir"
RECEIVER_ARGS="--light" bash "$root/tests/env/devenv.sh" up "$dir" >"$dir/devenv-up.log" 2>&1 ||
        { cat "$dir/devenv-up.log" >&2; exit 1; }

if [[ -n "${TRANSMITTER_BIN:-}" ]]; then
        log "transmitter: $bin (TRANSMITTER_BIN, built $(date -r "$bin" '+%F %T'))"
else
        log "transmitter: $bin (source $(cd "$root" && git describe --always --dirty 2>/dev/null || echo '?'))"
fi
log "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
[[ -x "$dir/bin/cpubench" ]] && args=(--cpubench "$dir/bin/cpubench" ${args[@]+"${args[@]}"})
"$PYTHON" "$here/$driver" --devenv "$dir" --transmitter "$bin" --ceiling "$dir/bin/ceiling" \
        --json-out "$dir/results.jsonl" ${args[@]+"${args[@]}"}
log "JSON lines also in $dir/results.jsonl"
