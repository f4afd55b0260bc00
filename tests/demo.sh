#!/usr/bin/env bash
# The demo (README): installs what is needed, builds, starts a throw-away RabbitMQ, PostgreSQL
# and HTTPS receiver in .demo/, the transmitter in front of them, and a publisher sending a
# steady stream of discovery events. Prints where to look, then a line every few seconds.
# Ctrl-C (or --seconds N) stops everything it started.
#
#   tests/demo.sh [--seconds N] [--rate EVENTS_PER_S]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=0
rate=200
while [[ $# -gt 0 ]]; do
        case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        *) echo "usage: $0 [--seconds N] [--rate EVENTS_PER_S]" >&2; exit 2 ;;
        esac
done

tests/install-deps.sh
[[ -d build ]] || meson setup build >/dev/null
ninja -C build >/dev/null

demo=$root/.demo
mkdir -p "$demo"
bash tests/env/devenv.sh up "$demo"
# shellcheck disable=SC1091
. "$demo/env"

pids=()
stop() {
        trap - INT TERM EXIT
        echo
        echo "demo: stopping"
        for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
        bash tests/env/devenv.sh down "$demo" >/dev/null 2>&1 || true
        echo "demo: stopped; logs stay in $demo"
}
trap stop INT TERM EXIT

build/src/transmitter --config "$demo/transmitter.env" --migrate
TRANSMITTER_BATCH_INTERVAL_S=5 build/src/transmitter --config "$demo/transmitter.env" >"$demo/transmitter.log" 2>&1 &
pids+=($!)
api=http://127.0.0.1:$API_PORT
for _ in $(seq 100); do curl -fs "$api/health" >/dev/null 2>&1 && break; sleep 0.1; done

"$PUBLISH" --url "$RABBITMQ_URL" --count 100000000 --rate "$rate" --id-prefix demo --quiet \
        >"$demo/publisher.log" 2>&1 &
pids+=($!)

cat <<MSG

transmitter demo: ${rate} events/s flow RabbitMQ -> transmitter -> HTTPS receiver, tracked in PostgreSQL.

  stats:     curl -s $api/api/v1/stats | python3 -m json.tool
  ready:     curl -s $api/ready
  metrics:   curl -s $api/metrics
  receiver:  curl -s $RECEIVER_ADMIN_URL/counts
  ledger:    $PSQL -c 'SELECT status, count(*), sum(item_count) FROM transmitter.batches GROUP BY status'
  log:       tail -f $demo/transmitter.log

Ctrl-C stops the demo.
MSG

start=$(date +%s)
while :; do
        sleep 5
        stats=$(curl -fs "$api/api/v1/stats" || echo '{}')
        counts=$(curl -fs "$RECEIVER_ADMIN_URL/counts" || echo '{}')
        rows=$("$PSQL" -Atc "SELECT count(*) FROM transmitter.batches WHERE status = 'sent'" 2>/dev/null || echo "?")
        python3 - "$stats" "$counts" "$rows" <<'PY'
import json, sys
s, c, rows = json.loads(sys.argv[1] or "{}"), json.loads(sys.argv[2] or "{}"), sys.argv[3]
ev = s.get("events", {})
print(f"received {ev.get('received', '?')}, sent {ev.get('sent', '?')} in {s.get('batches_sent', '?')} batches, "
      f"circuit {s.get('circuit_breaker', {}).get('state', '?')} | receiver: {c.get('unique_events', '?')} events, "
      f"{c.get('duplicates', '?')} duplicates | ledger: {rows} rows sent", flush=True)
PY
        if [[ $seconds -gt 0 && $(($(date +%s) - start)) -ge $seconds ]]; then
                break
        fi
done
