#!/usr/bin/env bash
# Starts and stops tests/env/receiver.py, the test HTTPS destination, in the background.
#
#   tests/env/receiver.sh start DIR [receiver.py options...]
#   tests/env/receiver.sh stop  DIR       (safe to repeat)
#   tests/env/receiver.sh status DIR
#
# `start` defaults: --cert/--key from RECEIVER_TLS_DIR (default DIR/../tls, made by ca.sh if missing),
# --token-file DIR/token (created with RECEIVER_TOKEN, default demo-token, if missing), free ports.
# Pass --port/--admin-port to fix ports; a restart reuses the ports of the previous start unless
# given. Pass --plain for plain HTTP, or --cert/--key for another certificate (e.g. other-server.pem
# for the "certificate from another CA" test). Other options go to receiver.py as they are.
#
# DIR/env (source it): RECEIVER_PORT, RECEIVER_ADMIN_PORT, RECEIVER_ADMIN_URL, RECEIVER_PID,
# DESTINATION_URL (https://127.0.0.1:PORT/v1/discovery), RECEIVER_TOKEN_FILE, RECEIVER_CA_FILE.
# Log: DIR/receiver.log. Counts: tests/env/receiver-counts.sh DIR (or curl "$RECEIVER_ADMIN_URL/counts").
set -euo pipefail

LOG_TAG=receiver
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
        echo "usage: $0 start DIR [options] | stop DIR | status DIR" >&2
        exit 2
}

cmd_start() {
        local t0 pid tls="" plain=0 have_port=0 have_admin=0 have_token=0 have_cert=0 args=() a
        t0=$(now_ms)
        if pid=$(read_pid "$DIR/receiver.pid") && pid_alive "$pid" && [[ -f "$DIR/env" ]]; then
                log "already running (pid $pid)"
                return 0
        fi
        for a in "$@"; do
                case "$a" in
                --plain) plain=1 ;;
                --port | --port=*) have_port=1 ;;
                --admin-port | --admin-port=*) have_admin=1 ;;
                --token | --token=* | --token-file | --token-file=*) have_token=1 ;;
                --cert | --cert=*) have_cert=1 ;;
                esac
                [[ "$a" == --plain ]] || args+=("$a")
        done
        if ((plain == 0)); then
                tls=${RECEIVER_TLS_DIR:-$(dirname "$DIR")/tls}
                [[ -s "$tls/server.pem" ]] || "$ENV_SCRIPTS_DIR/ca.sh" "$tls"
                tls=$(cd "$tls" && pwd)
                ((have_cert)) || args+=(--cert "$tls/server.pem" --key "$tls/server.key")
        fi
        if ((have_token == 0)); then
                [[ -f "$DIR/token" ]] || printf '%s\n' "${RECEIVER_TOKEN:-demo-token}" >"$DIR/token"
                args+=(--token-file "$DIR/token")
        fi
        if [[ -f "$DIR/ports" ]]; then
                # shellcheck source=/dev/null
                . "$DIR/ports"
                ((have_port)) || args+=(--port "$PORT")
                ((have_admin)) || args+=(--admin-port "$ADMIN_PORT")
        fi
        rm -f "$DIR/receiver.json"
        setsid "$PYTHON" "$ENV_SCRIPTS_DIR/receiver.py" --state-file "$DIR/receiver.json" \
                --pid-file "$DIR/receiver.pid" "${args[@]}" </dev/null >>"$DIR/receiver.log" 2>&1 &
        pid=$!
        local deadline=$(($(now_ms) + 15000))
        until [[ -s "$DIR/receiver.json" ]]; do
                pid_alive "$pid" || { tail_log "$DIR/receiver.log"; die "receiver.py exited at start (log $DIR/receiver.log)"; }
                (($(now_ms) < deadline)) || { tail_log "$DIR/receiver.log"; die "receiver.py not ready after 15 s"; }
                sleep 0.05
        done
        local port admin scheme
        read -r port admin scheme < <("$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["port"], d["admin_port"], d["scheme"])' "$DIR/receiver.json")
        write_env "$DIR/ports" "PORT=$port" "ADMIN_PORT=$admin"
        local envs=(
                "RECEIVER_DIR=$DIR"
                "RECEIVER_PID=$pid"
                "RECEIVER_PORT=$port"
                "RECEIVER_ADMIN_PORT=$admin"
                "RECEIVER_ADMIN_URL=http://127.0.0.1:$admin"
                "RECEIVER_LOG=$DIR/receiver.log"
                "DESTINATION_URL=$scheme://127.0.0.1:$port/v1/discovery"
        )
        ((have_token)) || envs+=("RECEIVER_TOKEN_FILE=$DIR/token")
        ((plain || have_cert)) || envs+=("RECEIVER_CA_FILE=$tls/ca.pem")
        write_env "$DIR/env" "${envs[@]}"
        log "started (pid $pid) on $scheme://127.0.0.1:$port, admin http://127.0.0.1:$admin in $(($(now_ms) - t0)) ms"
}

cmd_stop() {
        local pid
        [[ -d "$DIR" ]] || return 0
        if pid=$(read_pid "$DIR/receiver.pid"); then
                stop_pid "$pid" receiver TERM 10
                log "stopped (pid $pid)"
        fi
        rm -f "$DIR/receiver.pid" "$DIR/receiver.json"
}

[[ $# -ge 2 ]] || usage
cmd=$1
DIR=$(abs_dir "$2")
shift 2
case "$cmd" in
start) cmd_start "$@" ;;
stop) cmd_stop ;;
status)
        pid=$(read_pid "$DIR/receiver.pid") && pid_alive "$pid"
        ;;
*) usage ;;
esac
