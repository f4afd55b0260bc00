#!/usr/bin/env bash
# Self-test of the development environment: brings it up in a temp dir, exercises every piece
# (broker, publisher, database, CA, receiver and each of its faults, broker and database
# restarts and freezes) and brings it down. Prints "N passed, N failed"; exit 1 on any failure.
#
#   tests/env/selftest.sh            (KEEP=1 keeps the directory for a look at the logs)
set -euo pipefail

LOG_TAG=selftest
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

E=$ENV_SCRIPTS_DIR
D=$(mktemp -d "${TMPDIR:-/tmp}/transmitter-env.XXXXXX")
passed=0
failed=0

cleanup() {
        "$E/devenv.sh" down "$D" >/dev/null 2>&1 || true
        local r
        for r in other-receiver mtls-receiver plain-receiver; do
                "$E/receiver.sh" stop "$D/$r" >/dev/null 2>&1 || true
        done
        if [[ -z "${KEEP:-}" ]]; then rm -rf "$D"; else log "kept $D"; fi
}
trap cleanup EXIT

ok() {
        passed=$((passed + 1))
        echo "ok   - $*"
}
fail() {
        failed=$((failed + 1))
        echo "FAIL - $*"
}
# check NAME COMMAND...: passes when COMMAND succeeds.
check() {
        local name=$1
        shift
        if "$@" >>"$D/selftest.log" 2>&1; then ok "$name"; else fail "$name"; fi
}
# equals NAME EXPECTED ACTUAL
equals() {
        if [[ "$2" == "$3" ]]; then ok "$1"; else fail "$1: expected '$2', got '$3'"; fi
}

jget() { # jget JSON-PATH (reads JSON on stdin): jget .a.b
        "$PYTHON" -c 'import json,sys
v = json.load(sys.stdin)
for k in sys.argv[1].strip(".").split("."):
    if k: v = v[int(k)] if isinstance(v, list) else v.get(k)
print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$1"
}
counts() { curl -fsS --max-time 10 "$RECEIVER_ADMIN_URL/counts" | jget "$1"; }
fault() { curl -fsS --max-time 10 -X POST -d "$1" "$RECEIVER_ADMIN_URL/faults" >/dev/null; }
reset() { curl -fsS --max-time 10 -X POST "$RECEIVER_ADMIN_URL/reset" >/dev/null; }

# post BATCH_FILE [curl args...]: POSTs a gzip file with every header right; prints the HTTP status.
# Override a header with TOKEN=, UA=, IKEY=, CENC= (empty: header left out).
post() {
        local file=$1 bid
        shift
        bid=$(gzip -dc "$file" | jget .batch_id)
        local token=${TOKEN-$(head -n1 "$TOKEN_FILE")} ua=${UA-transmitter/selftest} ikey=${IKEY-$bid}
        local cenc=${CENC-gzip} h=(-H 'Content-Type: application/json')
        [[ -n "$token" ]] && h+=(-H "Authorization: Bearer $token")
        [[ -n "$cenc" ]] && h+=(-H "Content-Encoding: $cenc")
        [[ -n "$ikey" ]] && h+=(-H "Idempotency-Key: $ikey")
        curl -sS --max-time 60 -o "$D/last-body" -w '%{http_code}' --cacert "$TLS_CA_FILE" "${h[@]}" -A "$ua" \
                --data-binary "@$file" "$@" "$DESTINATION_URL" 2>/dev/null || true
}

# make_batch FILE ID... : a gzip batch of minimal events with those ids.
make_batch() {
        local file=$1
        shift
        "$PYTHON" - "$@" >"$file.json" <<'EOF'
import json, sys, time, uuid
ids = sys.argv[1:]
bid = str(uuid.uuid5(uuid.NAMESPACE_URL, "\n".join(ids)))
evs = [{"specversion": "1.0", "id": i, "source": "/selftest", "type": "com.example.discovery.server.approved",
        "data": {"hostname": "h-" + i, "published_at_us": int(time.time() * 1e6)}} for i in ids]
print(json.dumps({"batch_id": bid, "discoveries": evs}))
EOF
        gzip -c "$file.json" >"$file"
}

echo "# environment in $D"
t0=$(now_ms)
check "devenv up" "$E/devenv.sh" up "$D"
[[ -f "$D/env" ]] || { tail -n 30 "$D/selftest.log"; echo "0 passed, 1 failed"; exit 1; }
# shellcheck source=/dev/null
. "$D/env"
echo "# up in $(($(now_ms) - t0)) ms"
check "devenv up again is a no-op" "$E/devenv.sh" up "$D"
check "devenv status" "$E/devenv.sh" status "$D"

# --- broker + publisher
if out=$("$PUBLISH" --url "$RABBITMQ_URL" --count 10000 --declare-queue transmitter.approved --id-prefix selftest 2>&1); then
        ok "publish 10000: $out"
else
        fail "publish 10000: $out"
fi
ready=$("$RABBITMQCTL" list_queues -q name messages_ready | awk '$1 == "transmitter.approved" {print $2}')
equals "10000 messages ready in transmitter.approved" 10000 "$ready"
args=$("$RABBITMQCTL" list_queues -q name arguments | awk '$1 == "transmitter.approved" {print $2}')
equals "queue has x-dead-letter-exchange" '[{"x-dead-letter-exchange","discovery.events.dlx"}]' "$args"
check "dead-letter queue exists" sh -c "'$RABBITMQCTL' list_queues -q name | grep -qx transmitter.approved.dead"
check "dlx is a durable fanout" sh -c "'$RABBITMQCTL' list_exchanges -q name type durable | grep -q 'discovery.events.dlx.*fanout.*true'"
printf 'not json at all' >"$D/raw.bin"
check "publish --raw" "$PUBLISH" --url "$RABBITMQ_URL" --raw "$D/raw.bin" --routing-key approved.server --quiet
check "publish unroutable fails" bash -c "! '$PUBLISH' --url '$RABBITMQ_URL' --count 1 --routing-key nowhere --quiet"
check "publish with rate" "$PUBLISH" --url "$RABBITMQ_URL" --count 200 --rate 400 --id-prefix rate --marker BADMARK --marker-every 10 --quiet
ready=$("$RABBITMQCTL" list_queues -q name messages_ready | awk '$1 == "transmitter.approved" {print $2}')
equals "10201 messages ready after raw + rate publishes" 10201 "$ready"

# --- receiver: a hand-made batch
reset
make_batch "$D/b1.gz" hand-1 hand-2
equals "hand-made batch accepted" 200 "$(post "$D/b1.gz")"
equals "counts.events" 2 "$(counts .events)"
equals "counts.batches" 1 "$(counts .batches)"
equals "latency recorded" 2 "$(curl -fsS "$RECEIVER_ADMIN_URL/latency" | jget .count)"
equals "same batch again: 200" 200 "$(post "$D/b1.gz")"
equals "duplicates counted" 2 "$(counts .duplicates)"
equals "unique_events" 2 "$(counts .unique_events)"
equals "wrong token: 401" 401 "$(TOKEN=nope post "$D/b1.gz")"
equals "last_token" nope "$(counts .last_token)"
equals "no token: 401" 401 "$(TOKEN='' post "$D/b1.gz")"
equals "wrong User-Agent: 400" 400 "$(UA=curl/8 post "$D/b1.gz")"
equals "wrong Idempotency-Key: 400" 400 "$(IKEY=00000000-0000-0000-0000-000000000000 post "$D/b1.gz")"
equals "no Idempotency-Key: 400" 400 "$(IKEY='' post "$D/b1.gz")"
equals "no Content-Encoding: 415" 415 "$(CENC='' post "$D/b1.gz")"
gzip -c "$D/raw.bin" >"$D/notjson.gz"
equals "not JSON: 400" 400 "$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$TLS_CA_FILE" -H "Authorization: Bearer $AUTH_TOKEN" \
        -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' -H 'Idempotency-Key: x' -A transmitter/t \
        --data-binary "@$D/notjson.gz" "$DESTINATION_URL")"
equals "rejected requests not counted" 4 "$(counts .events)"
equals "rejected count" 7 "$(counts .rejected)"

# token rotation through the token file
cp "$TOKEN_FILE" "$D/token.orig"
echo rotated >"$TOKEN_FILE"
equals "old token refused after rotation" 401 "$(TOKEN=$AUTH_TOKEN post "$D/b1.gz")"
equals "new token accepted" 200 "$(post "$D/b1.gz")"
cp "$D/token.orig" "$TOKEN_FILE"

# TLS: another CA
curl -sS -o /dev/null --cacert "$TLS_DIR/other-ca.pem" "$DESTINATION_URL" 2>/dev/null && rc=0 || rc=$?
equals "client trusting another CA: curl 60" 60 "$rc"
check "second receiver with other-server cert" env RECEIVER_TLS_DIR="$TLS_DIR" "$E/receiver.sh" start "$D/other-receiver" \
        --cert "$TLS_DIR/other-server.pem" --key "$TLS_DIR/other-server.key"
# shellcheck source=/dev/null
other_url=$(. "$D/other-receiver/env" && echo "$DESTINATION_URL")
curl -sS -o /dev/null --cacert "$TLS_CA_FILE" "$other_url" 2>/dev/null && rc=0 || rc=$?
equals "certificate from another CA: curl 60" 60 "$rc"
curl -sS -o /dev/null --cacert "$TLS_DIR/other-ca.pem" -X POST "$other_url" 2>/dev/null && rc=0 || rc=$?
equals "other receiver with its own CA: TLS ok" 0 "$rc"
"$E/receiver.sh" stop "$D/other-receiver" >/dev/null 2>&1
check "mTLS receiver" env RECEIVER_TLS_DIR="$TLS_DIR" "$E/receiver.sh" start "$D/mtls-receiver" \
        --client-ca "$TLS_DIR/ca.pem" --light
# shellcheck source=/dev/null
mtls_url=$(. "$D/mtls-receiver/env" && echo "$DESTINATION_URL")
curl -sS -o /dev/null --cacert "$TLS_CA_FILE" -X POST "$mtls_url" 2>/dev/null && rc=0 || rc=$?
if [[ $rc -ne 0 ]]; then ok "mTLS: no client cert refused (curl $rc)"; else fail "mTLS: no client cert accepted"; fi
equals "mTLS: client cert accepted, --light" 200 \
        "$(DESTINATION_URL=$mtls_url post "$D/b1.gz" --cert "$TLS_DIR/client.pem" --key "$TLS_DIR/client.key")"
"$E/receiver.sh" stop "$D/mtls-receiver" >/dev/null 2>&1
check "plain HTTP receiver" "$E/receiver.sh" start "$D/plain-receiver" --plain
# shellcheck source=/dev/null
plain_url=$(. "$D/plain-receiver/env" && echo "$DESTINATION_URL")
equals "plain HTTP: accepted" 200 "$(DESTINATION_URL=$plain_url post "$D/b1.gz")"
"$E/receiver.sh" stop "$D/plain-receiver" >/dev/null 2>&1
check "expired cert is expired" bash -c "! openssl verify -CAfile '$TLS_DIR/ca.pem' '$TLS_DIR/expired-server.pem'"
check "wrong-host cert does not match localhost" bash -c "openssl x509 -in '$TLS_DIR/wrong-host.pem' -noout -checkhost localhost | grep -q 'does NOT match'"
check "server cert matches localhost" bash -c "! openssl x509 -in '$TLS_DIR/server.pem' -noout -checkhost localhost -checkip 127.0.0.1 -checkip ::1 | grep -q 'NOT'"

# --- faults
reset
make_batch "$D/b2.gz" f-1 f-2 f-3
fault '{"status": 503, "count": 2, "retry_after": "2"}'
curl -sS -D "$D/h" -o /dev/null --cacert "$TLS_CA_FILE" -X POST -d x "$DESTINATION_URL" || true
check "Retry-After header sent" grep -qi '^retry-after: 2' "$D/h"
equals "503 count 2: second" 503 "$(post "$D/b2.gz")"
equals "503 count 2: then 200" 200 "$(post "$D/b2.gz")"
fault '{"status": 503, "for_s": 1.5}'
equals "503 for_s: during" 503 "$(post "$D/b2.gz")"
sleep 1.6
equals "503 for_s: after" 200 "$(post "$D/b2.gz")"
fault '{"status": 429}'
equals "429 until cleared" 429 "$(post "$D/b2.gz")"
fault '{"clear": true}'
equals "cleared" 200 "$(post "$D/b2.gz")"
t=$(now_ms)
fault '{"delay_s": 2, "count": 1}'
equals "delay_s then 200" 200 "$(post "$D/b2.gz")"
dt=$(($(now_ms) - t))
if ((dt >= 2000)); then ok "delay took ${dt} ms"; else fail "delay took only ${dt} ms"; fi
fault '{"delay_s": 3, "count": 1}'
curl -sS -o /dev/null --max-time 1 --cacert "$TLS_CA_FILE" -X POST -d x "$DESTINATION_URL" 2>/dev/null && rc=0 || rc=$?
equals "delay beyond client timeout: curl 28" 28 "$rc"
fault '{"drop": true, "count": 1}'
post "$D/b2.gz" >/dev/null
curl -sS -o /dev/null --cacert "$TLS_CA_FILE" -X POST -d x "$DESTINATION_URL" 2>/dev/null && rc=0 || rc=$?
equals "drop consumed by one request" 0 "$rc"
fault '{"drop": true, "count": 1}'
make_batch "$D/b3.gz" d-1
curl -sS -o /dev/null --cacert "$TLS_CA_FILE" -X POST --data-binary "@$D/b3.gz" "$DESTINATION_URL" 2>/dev/null && rc=0 || rc=$?
equals "drop: curl 52 (empty reply)" 52 "$rc"
before=$(counts .events)
dups=$(counts .duplicates)
fault '{"drop": true, "after_accept": true, "count": 1}'
equals "drop after accept: no answer" 000 "$(post "$D/b3.gz")"
equals "drop after accept: events counted" $((before + 1)) "$(counts .events)"
equals "retry after lost answer: 200" 200 "$(post "$D/b3.gz")"
equals "retry after lost answer: one duplicate" $((dups + 1)) "$(counts .duplicates)"
fault '{"status": 302, "headers": {"Location": "https://elsewhere.invalid/"}, "count": 1}'
curl -sS -D "$D/h" -o /dev/null --cacert "$TLS_CA_FILE" -X POST -d x "$DESTINATION_URL" || true
check "3xx with Location" grep -qi '^location: https://elsewhere.invalid/' "$D/h"

make_batch "$D/marked.gz" m-1 m-2-BADMARK m-3
fault '{"reject_marker": "BADMARK"}'
equals "reject_marker: 400" 400 "$(post "$D/marked.gz")"
check "reject_marker: body explains" grep -q BADMARK "$D/last-body"
equals "reject_marker: clean batch passes" 200 "$(post "$D/b2.gz")"
fault '{"clear": true, "max_body_bytes": 300}'
equals "max_body_bytes: big batch 413" 413 "$(post "$D/marked.gz")"
make_batch "$D/small.gz" s
equals "max_body_bytes: small batch 200" 200 "$(post "$D/small.gz")"
fault '{"clear": true}'
equals "no fault left" 0 "$(counts .faults_active)"
check "bad fault spec refused" bash -c "! curl -fsS -X POST -d '{\"bogus\": 1}' '$RECEIVER_ADMIN_URL/faults'"

since=$("$PYTHON" -c 'import time; print(time.time())')
sleep 0.5
equals "/requests: none in a quiet window" 0 \
        "$(curl -fsS "$RECEIVER_ADMIN_URL/requests?since=$since" | "$PYTHON" -c 'import json,sys; print(len(json.load(sys.stdin)["requests"]))')"
check "/events" sh -c "curl -fsS '$RECEIVER_ADMIN_URL/events' | grep -q d-1"
check "/events?detail=1" sh -c "curl -fsS '$RECEIVER_ADMIN_URL/events?detail=1' | grep -q latency_ms"
check "/batches" sh -c "curl -fsS '$RECEIVER_ADMIN_URL/batches' | grep -q compressed_bytes"
check "receiver-counts.sh" "$E/receiver-counts.sh" "$D"
if out=$("$PYTHON" "$E/post_batch.py" --url "$DESTINATION_URL" --cacert "$TLS_CA_FILE" --token "$AUTH_TOKEN" \
        --events 100 --requests 200 --concurrency 2 --id-prefix speed 2>&1); then
        ok "200 batches of 100: $out"
else
        fail "post_batch: $out"
fi

# --- broker restart and freeze
port_before=$RABBITMQ_PORT
t=$(now_ms)
check "rabbitmq restart" "$E/rabbitmq.sh" restart "$RABBITMQ_DIR"
echo "# rabbitmq restart took $(($(now_ms) - t)) ms"
# shellcheck source=/dev/null
equals "same port after restart" "$port_before" "$(. "$RABBITMQ_DIR/env" && echo "$RABBITMQ_PORT")"
ready=$("$RABBITMQCTL" list_queues -q name messages_ready | awk '$1 == "transmitter.approved" {print $2}')
equals "persistent messages survive restart" 10201 "$ready"
check "rabbitmq pause" "$E/rabbitmq.sh" pause "$RABBITMQ_DIR"
timeout 3 "$PUBLISH" --url "$RABBITMQ_URL" --count 1 --quiet >/dev/null 2>&1 && rc=0 || rc=$?
equals "frozen broker: publisher hangs (timeout 124)" 124 "$rc"
check "rabbitmq resume" "$E/rabbitmq.sh" resume "$RABBITMQ_DIR"
check "publish after resume" timeout 30 "$PUBLISH" --url "$RABBITMQ_URL" --count 10 --id-prefix after --quiet

# --- database
check "psql as discovery" "$PSQL" -v ON_ERROR_STOP=1 -c 'CREATE TABLE t (x int); INSERT INTO t VALUES (42)'
check "psql admin" "$PSQL_ADMIN" -c 'select 1'
check "wrong password refused" bash -c "! psql 'postgresql://discovery:wrong@127.0.0.1:$PGPORT/discovery' -c 'select 1'"
check "postgres stop" "$E/postgres.sh" stop "$POSTGRES_DIR"
check "database down: psql fails" bash -c "! '$PSQL' -c 'select 1'"
t=$(now_ms)
check "postgres start again" "$E/postgres.sh" start "$POSTGRES_DIR"
echo "# postgres restart took $(($(now_ms) - t)) ms"
equals "data kept across restart" 42 "$("$PSQL" -tAc 'select x from t')"
check "postgres pause" "$E/postgres.sh" pause "$POSTGRES_DIR"
timeout 3 "$PSQL" -c 'select 1' >/dev/null 2>&1 && rc=0 || rc=$?
equals "frozen database: psql hangs (timeout 124)" 124 "$rc"
check "postgres resume" "$E/postgres.sh" resume "$POSTGRES_DIR"
check "psql after resume" timeout 10 "$PSQL" -c 'select 1'

# --- down
pids=("$(cat "$RABBITMQ_BEAM_PID_FILE")" "$(head -n1 "$POSTGRES_PID_FILE")" "$(cat "$RECEIVER_DIR/receiver.pid")")
check "devenv down" "$E/devenv.sh" down "$D"
check "devenv down twice" "$E/devenv.sh" down "$D"
alive=0
for p in "${pids[@]}"; do pid_alive "$p" && [[ "$(ps -o stat= -p "$p")" != Z* ]] && alive=1; done
equals "every process gone" 0 "$alive"
check "status reports down" bash -c "! '$E/devenv.sh' status '$D'"

echo "$passed passed, $failed failed"
((failed == 0))
