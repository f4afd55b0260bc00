#!/usr/bin/env bash
# The whole throw-away development environment: RabbitMQ, PostgreSQL, a test CA, the HTTPS test
# receiver and the test publisher, all in DIR.
#
#   tests/env/devenv.sh up     DIR   start what is not running yet (idempotent), write DIR/env
#   tests/env/devenv.sh down   DIR   stop everything by PID (safe to call twice, or on a half-up DIR)
#   tests/env/devenv.sh status DIR   one line per component; exit 1 if any is down
#
# DIR/env (source it) exports: RABBITMQ_URL, RABBITMQ_PORT, RABBITMQCTL (a command: "$RABBITMQCTL"
# list_queues), DATABASE_URL, PGPORT, PSQL, PSQL_ADMIN, DESTINATION_URL, TLS_CA_FILE,
# RECEIVER_ADMIN_URL, TOKEN_FILE, AUTH_TOKEN, PUBLISH (the publisher binary), and the per-component
# directories. DIR/transmitter.env holds the same as TRANSMITTER_* KEY=VALUE lines for the daemon
# (usable as its config file, as an EnvironmentFile=, or with `set -a; . DIR/transmitter.env`).
#
# Layout: DIR/rabbitmq, DIR/postgres, DIR/tls, DIR/receiver (each with its own env and logs), DIR/bin.
# Knobs: DEVENV_TOKEN (default demo-token), PUBLISH_BIN (use this publisher instead of building
# tests/env/publish.c), RECEIVER_ARGS (extra receiver.py options, word-split).
set -euo pipefail

LOG_TAG=devenv
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
        echo "usage: $0 up|down|status DIR" >&2
        exit 2
}

build_publisher() {
        local out=$DIR/bin/publish src=$ENV_SCRIPTS_DIR/publish.c
        if [[ -n "${PUBLISH_BIN:-}" ]]; then
                [[ -x "$PUBLISH_BIN" ]] || die "PUBLISH_BIN=$PUBLISH_BIN is not executable"
                PUBLISH=$PUBLISH_BIN
                return 0
        fi
        PUBLISH=$out
        [[ -x "$out" && "$out" -nt "$src" && "$out" -nt "$ENV_SCRIPTS_DIR/amqp-tool.h" ]] && return 0
        mkdir -p "$DIR/bin"
        command -v gcc >/dev/null || die "gcc not found (needed to build $src; or set PUBLISH_BIN)"
        local flags
        flags=$(pkg-config --cflags --libs librabbitmq) || die "pkg-config librabbitmq failed: apt-get install librabbitmq-dev pkg-config"
        # shellcheck disable=SC2086
        gcc -std=c11 -O2 -Wall -Wextra -Werror -I"$ENV_SCRIPTS_DIR" -o "$out.tmp" "$src" $flags 2>"$DIR/bin/build.log" ||
                { tail_log "$DIR/bin/build.log"; die "building the publisher failed"; }
        mv -f "$out.tmp" "$out"
}

cmd_up() {
        local t0 t
        t0=$(now_ms)
        # PostgreSQL runs as user postgres and must be able to enter DIR (mktemp -d makes 0700).
        chmod a+x "$DIR"
        trap 'log "up failed; logs are in $DIR/*/; clean up with: $0 down $DIR"' ERR
        t=$(now_ms)
        "$ENV_SCRIPTS_DIR/ca.sh" "$DIR/tls"
        local t_ca=$(($(now_ms) - t))
        # The broker takes longest: it starts in the background while the rest comes up.
        local rmq_pid
        RABBITMQ_TLS_DIR="$DIR/tls" "$ENV_SCRIPTS_DIR/rabbitmq.sh" start "$DIR/rabbitmq" &
        rmq_pid=$!
        t=$(now_ms)
        "$ENV_SCRIPTS_DIR/postgres.sh" start "$DIR/postgres"
        local t_pg=$(($(now_ms) - t))
        mkdir -p "$DIR/receiver"
        [[ -f "$DIR/receiver/token" ]] || printf '%s\n' "${DEVENV_TOKEN:-demo-token}" >"$DIR/receiver/token"
        t=$(now_ms)
        # shellcheck disable=SC2086
        RECEIVER_TLS_DIR="$DIR/tls" "$ENV_SCRIPTS_DIR/receiver.sh" start "$DIR/receiver" ${RECEIVER_ARGS:-}
        local t_rcv=$(($(now_ms) - t))
        build_publisher
        wait "$rmq_pid" || die "rabbitmq did not start (logs in $DIR/rabbitmq/log); clean up with: $0 down $DIR"
        local t_rmq=$(($(now_ms) - t0))
        trap - ERR

        # shellcheck source=/dev/null
        . "$DIR/rabbitmq/env"
        # shellcheck source=/dev/null
        . "$DIR/postgres/env"
        # shellcheck source=/dev/null
        . "$DIR/receiver/env"
        local api_port token
        api_port=$(cat "$DIR/api_port" 2>/dev/null || free_ports 1)
        echo "$api_port" >"$DIR/api_port"
        token=$(head -n1 "$DIR/receiver/token")
        write_env "$DIR/env" \
                "DEVENV_DIR=$DIR" \
                "RABBITMQ_DIR=$RABBITMQ_DIR" \
                "RABBITMQ_URL=$RABBITMQ_URL" \
                "RABBITMQ_TLS_URL=${RABBITMQ_TLS_URL:-}" \
                "RABBITMQ_PORT=$RABBITMQ_PORT" \
                "RABBITMQ_NODE=$RABBITMQ_NODE" \
                "RABBITMQ_BEAM_PID_FILE=$RABBITMQ_BEAM_PID_FILE" \
                "RABBITMQCTL=$RABBITMQ_DIR/rabbitmqctl" \
                "POSTGRES_DIR=$POSTGRES_DIR" \
                "DATABASE_URL=$DATABASE_URL" \
                "PGPORT=$PGPORT" \
                "POSTGRES_PID_FILE=$POSTGRES_PID_FILE" \
                "PSQL=$PSQL" \
                "PSQL_ADMIN=$PSQL_ADMIN" \
                "TLS_DIR=$DIR/tls" \
                "TLS_CA_FILE=$DIR/tls/ca.pem" \
                "RECEIVER_DIR=$RECEIVER_DIR" \
                "RECEIVER_PID=$RECEIVER_PID" \
                "RECEIVER_PORT=$RECEIVER_PORT" \
                "RECEIVER_ADMIN_URL=$RECEIVER_ADMIN_URL" \
                "DESTINATION_URL=$DESTINATION_URL" \
                "TOKEN_FILE=$DIR/receiver/token" \
                "AUTH_TOKEN=$token" \
                "API_PORT=$api_port" \
                "PUBLISH=$PUBLISH" \
                "ENV_SCRIPTS_DIR=$ENV_SCRIPTS_DIR"
        cat >"$DIR/transmitter.env" <<EOF
# generated by tests/env/devenv.sh: the daemon's configuration for this environment
TRANSMITTER_SERVER_HOST=127.0.0.1
TRANSMITTER_SERVER_PORT=$api_port
TRANSMITTER_RABBITMQ_URL=$RABBITMQ_URL
TRANSMITTER_DATABASE_URL=$DATABASE_URL
TRANSMITTER_DESTINATION_URL=$DESTINATION_URL
TRANSMITTER_TLS_CA_FILE=$DIR/tls/ca.pem
TRANSMITTER_AUTH_TOKEN_FILE=$DIR/receiver/token
TRANSMITTER_DATABASE_MIGRATE=true
EOF
        log "up in $(($(now_ms) - t0)) ms (ca ${t_ca} ms, postgres ${t_pg} ms, receiver ${t_rcv} ms, rabbitmq in parallel, done at ${t_rmq} ms): source $DIR/env"
}

cmd_down() {
        [[ -d "$DIR" ]] || return 0
        local rc=0
        "$ENV_SCRIPTS_DIR/receiver.sh" stop "$DIR/receiver" || rc=1
        "$ENV_SCRIPTS_DIR/postgres.sh" stop "$DIR/postgres" || rc=1
        "$ENV_SCRIPTS_DIR/rabbitmq.sh" stop "$DIR/rabbitmq" || rc=1
        ((rc == 0)) || die "some component did not stop cleanly (see above)"
        log "down"
}

cmd_status() {
        local rc=0
        if "$ENV_SCRIPTS_DIR/rabbitmq.sh" status "$DIR/rabbitmq" 2>/dev/null; then echo "rabbitmq: up"; else echo "rabbitmq: down"; rc=1; fi
        if "$ENV_SCRIPTS_DIR/postgres.sh" status "$DIR/postgres" 2>/dev/null; then echo "postgres: up"; else echo "postgres: down"; rc=1; fi
        if "$ENV_SCRIPTS_DIR/receiver.sh" status "$DIR/receiver" 2>/dev/null; then echo "receiver: up"; else echo "receiver: down"; rc=1; fi
        return "$rc"
}

[[ $# -eq 2 ]] || usage
case "$1" in
up)
        DIR=$(abs_dir "$2")
        cmd_up
        ;;
down)
        [[ -d "$2" ]] || exit 0
        DIR=$(abs_dir "$2")
        cmd_down
        ;;
status)
        DIR=$(abs_dir "$2")
        cmd_status
        ;;
*) usage ;;
esac
