#!/usr/bin/env bash
# The test command (README): installs what is needed, builds the daemon twice (plain, and with
# AddressSanitizer + UBSan), runs every unit and integration test against the sanitized build
# and the unit tests and a smoke run against the plain one, the basic flow once more with the
# daemon under valgrind, then builds, installs and checks the .deb and the .rpm
# (packaging/tests/test-packages.sh), and last runs every fuzz target for 30 s beside a 3-minute
# chaos soak.
#
# One throw-away broker and database server serve all of it but the soak, which starts its own;
# they are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

tests/install-deps.sh

meson setup build --wipe >/dev/null 2>&1 || meson setup build >/dev/null
meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false --wipe >/dev/null 2>&1 ||
        meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
ninja -C build
ninja -C build-asan

devenv=$(mktemp -d /tmp/transmitter-tests.XXXXXX)
cleanup() { bash tests/env/devenv.sh down "$devenv" >/dev/null 2>&1 || true; }
trap cleanup EXIT
export TRANSMITTER_TEST_DEVENV=$devenv
bash tests/env/devenv.sh up "$devenv"

status=0
# Every test against the sanitized build (memory errors in any fault path fail the run); the
# plain build, the one that ships, gets the unit tests, the flow and the activation under
# systemd here, the flow under valgrind, and its packaged twin's end-to-end run below.
echo "==== tests: AddressSanitizer + UBSan build ===="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        meson test -C build-asan --print-errorlogs --num-processes 2 || status=1
echo "==== tests: plain build ===="
meson test -C build --print-errorlogs --suite unit || status=1
meson test -C build --print-errorlogs flow systemd_activation || status=1
echo "==== the flow under valgrind ===="
TRANSMITTER_TEST_WRAPPER="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --track-fds=no" \
        meson test -C build --suite integration --print-errorlogs flow || status=1

echo "==== packages ===="
packaging/tests/test-packages.sh || status=1

# The fuzz targets (tests/fuzz, 30 s each on their corpora, clang + ASan + UBSan) on one core
# while the chaos soak (tests/soak, 3 min of random faults against a broker, database and receiver
# of its own) uses the other: together about as long as the soak alone. The fuzzing starts from a
# fixed seed, so that what turns this red is a change, not the luck of the draw: the search for new
# inputs, with a fresh seed each time, is tests/fuzz/run.sh run by hand for longer.
fuzz_seed=${FUZZ_SEED:-1}
echo "==== fuzzing, 30 s a target (seed $fuzz_seed), beside a 3-minute chaos soak ===="
fuzz_log=$(mktemp /tmp/transmitter-fuzz-log.XXXXXX)
FUZZ_SEED=$fuzz_seed tests/fuzz/run.sh 30 >"$fuzz_log" 2>&1 &
fuzz_pid=$!
tests/soak/run.sh --minutes 3 --rate 50 || status=1
wait "$fuzz_pid" || status=1
cat "$fuzz_log"
rm -f "$fuzz_log"

[[ $status -eq 0 ]] && echo "==== all tests passed ====" || echo "==== SOME TESTS FAILED ===="
exit $status
