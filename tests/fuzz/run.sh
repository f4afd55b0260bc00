#!/usr/bin/env bash
# Runs every fuzz target (tests/fuzz/README.md) for SECONDS each (default 60), one after the
# other, niced, on a copy of its corpus, and prints one line per target: executions, libFuzzer's
# coverage (cov: edges, ft: features) and the corpus size reached. A target that breaks an
# invariant, crashes, leaks or trips a sanitizer fails the run; its input is printed escaped and
# in hex, and kept in the work directory.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# Knobs: FUZZ_BUILD (default build-fuzz; set up with clang here if missing), FUZZ_WORK (where the
# corpora grow and crash inputs land; default a temporary directory, removed unless something
# failed), FUZZ_NICE (default 10), FUZZ_SEED (libFuzzer's -seed; default a new one each run,
# printed with a failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
seconds=${1:-60}
[[ $# -gt 0 ]] && shift
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }
build=${FUZZ_BUILD:-$root/build-fuzz}
nice_level=${FUZZ_NICE:-10}

if [[ ! -f $build/build.ninja ]]; then
        CC=clang nice -n "$nice_level" meson setup "$build" -Dfuzz=true -Dtests=false \
                -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
nice -n "$nice_level" ninja -C "$build" >/dev/null

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
        for d in tests/fuzz/corpus/*/; do
                targets+=("$(basename "$d")")
        done
fi

if [[ -n ${FUZZ_WORK:-} ]]; then
        work=$FUZZ_WORK
        mkdir -p "$work"
        keep=1
else
        work=$(mktemp -d /tmp/transmitter-fuzz.XXXXXX)
        keep=0
fi

# Undefined behaviour is a crash, not a line in the log.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

show_input() {
        local f=$1
        echo "---- input $f ($(stat -c %s "$f") bytes), escaped:"
        /usr/bin/python3 -c 'import sys; print(repr(open(sys.argv[1], "rb").read()[:4096]))' "$f"
        echo "---- hex:"
        head -c 1024 "$f" | od -A x -t x1z -v
}

status=0
printf '%-14s %8s %12s %10s %8s %8s %s\n' target seconds executions exec/s cov ft result
for t in "${targets[@]}"; do
        bin=$build/tests/fuzz/fuzz-$t
        [[ -x $bin ]] || { echo "$t: $bin not built" >&2; status=1; continue; }
        mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
        args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2560
              -artifact_prefix="$work/$t/artifacts/")
        [[ -n ${FUZZ_SEED:-} ]] && args+=(-seed="$FUZZ_SEED")
        [[ -f tests/fuzz/$t.dict ]] && args+=(-dict="tests/fuzz/$t.dict")
        [[ -f tests/fuzz/$t.options ]] && read -r -a extra <"tests/fuzz/$t.options" && args+=("${extra[@]}")
        log=$work/$t/fuzz.log
        rc=0
        # The first directory gets what the run adds; the committed corpus is only read.
        nice -n "$nice_level" "$bin" "${args[@]}" "$work/$t/corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
        last=$(grep -aE '^#[0-9]+.*(DONE|pulse|NEW|REDUCE|INITED).*cov: ' "$log" | tail -n1 || true)
        cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
        ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
        result=ok
        [[ $rc -eq 0 ]] || { result="FAILED (exit $rc)"; status=1; }
        printf '%-14s %8s %12s %10s %8s %8s %s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$result"
        if [[ $rc -ne 0 ]]; then
                seed=$(sed -n 's/^INFO: Seed: *//p' "$log" | head -n1)
                echo "---- $t: the end of its log ($log); the same run: FUZZ_SEED=${seed:-?} $0 $seconds $t"
                grep -aE 'FUZZ INVARIANT|^input:|ERROR|SUMMARY|#[0-9]+ 0x|^    #' "$log" | head -n 40 || tail -n 40 "$log"
                for f in "$work/$t/artifacts/"*; do
                        [[ -f $f ]] && show_input "$f"
                done
        fi
done

if [[ $status -eq 0 && $keep -eq 0 ]]; then
        rm -rf "$work"
else
        echo "work directory (corpora, logs, crash inputs): $work"
fi
exit $status
