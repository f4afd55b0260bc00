#!/usr/bin/env bash
# Requests/s that wrk gets from the HTTP API, on /health and /metrics (and any other paths given).
#
#   tests/bench/http.sh [--url URL] [--connections "50 32"] [--duration 10s] [--threads 2] [PATH...]
#
# --url: a running daemon (e.g. http://127.0.0.1:8020). Without it, a throw-away development
# environment (tests/env/devenv.sh) and the daemon (TRANSMITTER_BIN, default build/src/transmitter)
# are started in a temporary directory, 2,000 events are sent through it so that /metrics has
# something to say, and both are stopped at the end.
#
# Note the per-address limit of the API (32 connections): with more connections than that from
# one address, wrk's extra connections are closed as soon as they are accepted and show up as
# "Socket errors: read". The figure for 32 connections is the one without refusals.
set -euo pipefail
cd "$(dirname "$0")/../.."

url=""
connections="50 32"
duration="10s"
threads=2
paths=()
while [[ $# -gt 0 ]]; do
        case "$1" in
        --url) url=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) paths+=("$1"); shift ;;
        esac
done
[[ ${#paths[@]} -gt 0 ]] || paths=(/health /metrics)
command -v wrk >/dev/null || { echo "wrk not found (Debian package wrk)" >&2; exit 1; }

dir=""
daemon_pid=""
cleanup() {
        if [[ -n $daemon_pid ]]; then
                kill "$daemon_pid" 2>/dev/null || true
                wait "$daemon_pid" 2>/dev/null || true
        fi
        if [[ -n $dir ]]; then
                bash tests/env/devenv.sh down "$dir/env" >/dev/null 2>&1 || true
                rm -rf "$dir"
        fi
}
trap cleanup EXIT

if [[ -z $url ]]; then
        bin=${TRANSMITTER_BIN:-build/src/transmitter}
        [[ -x $bin ]] || { echo "$bin not built (meson setup build && ninja -C build)" >&2; exit 1; }
        dir=$(mktemp -d /tmp/transmitter-bench-http.XXXXXX)
        chmod a+x "$dir"
        echo "starting a development environment in $dir/env ..."
        bash tests/env/devenv.sh up "$dir/env" >"$dir/devenv.log" 2>&1 || { tail -20 "$dir/devenv.log"; exit 1; }
        # shellcheck disable=SC1091
        . "$dir/env/env"
        (
                set -a
                # shellcheck disable=SC1091
                . "$dir/env/transmitter.env"
                set +a
                export TRANSMITTER_BATCH_INTERVAL_S=1 TRANSMITTER_LOG_LEVEL=WARNING
                exec "$bin" --config /dev/null
        ) >"$dir/transmitter.log" 2>&1 &
        daemon_pid=$!
        port=$(sed -n 's/^TRANSMITTER_SERVER_PORT=//p' "$dir/env/transmitter.env")
        url="http://127.0.0.1:$port"
        for _ in $(seq 100); do
                curl -fs -o /dev/null "$url/ready" && break
                sleep 0.2
        done
        curl -fs -o /dev/null "$url/ready" || { echo "the daemon is not ready:"; tail -20 "$dir/transmitter.log"; exit 1; }
        "$PUBLISH" --url "$RABBITMQ_URL" --count 2000 --declare-queue transmitter.approved --quiet
        for _ in $(seq 100); do
                [[ $(curl -fs "$url/metrics" | sed -n 's/^transmitter_events_sent_total //p') == 2000 ]] && break
                sleep 0.2
        done
fi

echo "wrk -t$threads -d$duration against $url ($(nproc) CPUs)"
for path in "${paths[@]}"; do
        for c in $connections; do
                out=$(wrk -t"$threads" -c"$c" -d"$duration" "$url$path")
                rps=$(sed -n 's/^Requests\/sec: *//p' <<<"$out")
                lat=$(awk '$1 == "Latency" { print $2 " avg, " $4 " max" }' <<<"$out")
                errors=$(sed -n 's/^ *Socket errors: *//p' <<<"$out")
                non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *//p' <<<"$out")
                echo "FIGURE wrk $path -c$c: $rps requests/s, latency $lat${errors:+, socket errors: $errors}${non2xx:+, non-2xx: $non2xx}"
        done
done
