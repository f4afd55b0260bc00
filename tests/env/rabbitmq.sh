#!/usr/bin/env bash
# A throw-away RabbitMQ broker (Debian's rabbitmq-server package), no systemd, no root-owned state
# outside DIR.
#
#   tests/env/rabbitmq.sh start   DIR   start (or reuse) a broker whose whole state lives in DIR
#   tests/env/rabbitmq.sh stop    DIR   stop it by PID and wait until it is gone (safe to repeat)
#   tests/env/rabbitmq.sh restart DIR   stop + start on the SAME ports, node name and data
#   tests/env/rabbitmq.sh pid     DIR   print the PID of the broker VM (beam.smp)
#   tests/env/rabbitmq.sh pause   DIR   SIGSTOP the broker (frozen: TCP stays open, nothing answers)
#   tests/env/rabbitmq.sh resume  DIR   SIGCONT it
#   tests/env/rabbitmq.sh status  DIR   exit 0 when running and accepting AMQP connections
#
# Layout of DIR: env (source it: RABBITMQ_PORT, RABBITMQ_URL, RABBITMQCTL, ...), rabbitmqctl (runs
# rabbitmqctl against this node: "$RABBITMQCTL" list_queues), rabbitmq.conf, enabled_plugins, .erlang.cookie (HOME=DIR),
# mnesia/ (data), log/ (rabbit.log, startup.log, epmd.log), rabbitmq.pid (beam.smp PID),
# wrapper.pid, epmd.pid, ports (kept for restart).
#
# Each instance has its own node name, AMQP port, distribution port and epmd (on a port of its own,
# ERL_EPMD_PORT), so several can run side by side and nothing outlives `stop`.
#
# Freezing the broker by hand (what `pause`/`resume` do):
#   kill -STOP "$(cat DIR/rabbitmq.pid)"    # beam.smp: connections stay open, no frame is answered
#   kill -CONT "$(cat DIR/rabbitmq.pid)"
#
# Environment knobs: RABBITMQ_START_TIMEOUT_S (default 90), RABBITMQ_STOP_TIMEOUT_S (default 60),
# RABBITMQ_AMQP_PORT (fixed port for the first start instead of a free one),
# RABBITMQ_EXTRA_CONF (lines appended to rabbitmq.conf), RABBITMQ_SHARED_EPMD_PORT (first start
# only: use the epmd someone else runs on that port instead of one of our own; the nodes of a
# cluster must find each other in one epmd, see rabbitmq-cluster.sh).
set -euo pipefail

LOG_TAG=rabbitmq
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RMQ_BIN=/usr/lib/rabbitmq/bin
START_TIMEOUT_S=${RABBITMQ_START_TIMEOUT_S:-90}
STOP_TIMEOUT_S=${RABBITMQ_STOP_TIMEOUT_S:-60}

usage() {
        echo "usage: $0 start|stop|restart|pid|pause|resume|status DIR" >&2
        exit 2
}

# Exports the environment every rabbitmq script needs to find this node's files. Used both for
# the server and, through rabbitmqctl.sh, for the CLI tools.
node_env() {
        # shellcheck source=/dev/null
        . "$DIR/ports"
        export HOME="$DIR"
        export RABBITMQ_NODENAME="$NODENAME"
        export RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
        export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf"
        export RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/advanced.config"
        export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
        export RABBITMQ_MNESIA_BASE="$DIR/mnesia"
        export RABBITMQ_LOG_BASE="$DIR/log"
        export RABBITMQ_LOGS="$DIR/log/rabbit.log"
        export RABBITMQ_PID_FILE="$DIR/rabbitmq.pid"
        export RABBITMQ_DIST_PORT="$DIST_PORT"
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        export ERL_EPMD_PORT="$EPMD_PORT"
        export ERL_EPMD_ADDRESS=127.0.0.1
        unset RABBITMQ_NODE_PORT RABBITMQ_NODE_IP_ADDRESS NOTIFY_SOCKET
}

beam_pid() {
        local pid
        pid=$(read_pid "$DIR/rabbitmq.pid") || return 1
        pid_alive "$pid" || return 1
        echo "$pid"
}

is_running() {
        [[ -f "$DIR/ports" ]] || return 1
        beam_pid >/dev/null || return 1
        # shellcheck source=/dev/null
        . "$DIR/ports"
        port_open 127.0.0.1 "$AMQP_PORT"
}

write_ports() {
        local hosts=(127.0.0.1) ports
        have_ipv6_loopback && hosts+=(::1)
        if [[ -n "${RABBITMQ_AMQP_PORT:-}" ]]; then
                mapfile -t ports < <(free_ports 3 "${hosts[@]}")
                ports=("$RABBITMQ_AMQP_PORT" "${ports[@]}")
        else
                mapfile -t ports < <(free_ports 4 "${hosts[@]}")
        fi
        ((${#ports[@]} == 4)) || die "could not find free ports"
        local suffix epmd=${ports[2]} epmd_shared=0
        if [[ -n "${RABBITMQ_SHARED_EPMD_PORT:-}" ]]; then
                epmd=$RABBITMQ_SHARED_EPMD_PORT
                epmd_shared=1
        fi
        suffix=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')
        write_env "$DIR/ports" \
                "AMQP_PORT=${ports[0]}" "DIST_PORT=${ports[1]}" "EPMD_PORT=$epmd" "TLS_PORT=${ports[3]}" \
                "EPMD_SHARED=$epmd_shared" \
                "NODENAME=rmq-${ports[0]}-$suffix@localhost" \
                "LISTEN_V6=$([[ ${#hosts[@]} -gt 1 ]] && echo 1 || echo 0)"
}

write_config() {
        # The TLS directory given at the first start is kept for restarts.
        if [[ -n "${RABBITMQ_TLS_DIR:-}" ]]; then
                printf '%s\n' "$RABBITMQ_TLS_DIR" >"$DIR/tls_dir"
        elif [[ -f "$DIR/tls_dir" ]]; then
                RABBITMQ_TLS_DIR=$(cat "$DIR/tls_dir")
        fi
        {
                echo "# generated by tests/env/rabbitmq.sh"
                echo "listeners.tcp.v4 = 127.0.0.1:$AMQP_PORT"
                if [[ "$LISTEN_V6" == 1 ]]; then
                        echo "listeners.tcp.v6 = ::1:$AMQP_PORT"
                fi
                # The product's default credentials; created at first boot with full
                # permissions on "/" (no guest user).
                echo "default_user = discovery"
                echo "default_pass = discovery"
                echo "default_vhost = /"
                echo "default_user_tags.administrator = true"
                echo "default_permissions.configure = .*"
                echo "default_permissions.read = .*"
                echo "default_permissions.write = .*"
                echo "log.file = rabbit.log"
                echo "log.file.level = info"
                echo "log.console = false"
                echo "disk_free_limit.absolute = 50MB"
                # amqps:// on a second port when a test CA is there (tests/env/ca.sh).
                if [[ -n "${TLS_PORT:-}" && -n "${RABBITMQ_TLS_DIR:-}" && -f "$RABBITMQ_TLS_DIR/server.pem" ]]; then
                        echo "listeners.ssl.default = 127.0.0.1:$TLS_PORT"
                        echo "ssl_options.cacertfile = $RABBITMQ_TLS_DIR/ca.pem"
                        echo "ssl_options.certfile = $RABBITMQ_TLS_DIR/server.pem"
                        echo "ssl_options.keyfile = $RABBITMQ_TLS_DIR/server.key"
                        echo "ssl_options.verify = verify_none"
                        echo "ssl_options.fail_if_no_peer_cert = false"
                fi
                if [[ -n "${RABBITMQ_EXTRA_CONF:-}" ]]; then
                        printf '%s\n' "$RABBITMQ_EXTRA_CONF"
                fi
        } >"$DIR/rabbitmq.conf"
        echo "[]." >"$DIR/enabled_plugins"
        : >"$DIR/rabbitmq-env.conf"
        if [[ ! -s "$DIR/.erlang.cookie" ]]; then
                (umask 077 && od -An -N20 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F' \
                        >"$DIR/.erlang.cookie")
        fi
        chmod 400 "$DIR/.erlang.cookie"
}

write_envfile() {
        cat >"$DIR/rabbitmqctl" <<EOF
#!/bin/sh
# rabbitmqctl against the broker in $DIR; --tool NAME for rabbitmq-diagnostics, rabbitmq-queues, ...
exec "$ENV_SCRIPTS_DIR/rabbitmqctl.sh" "$DIR" "\$@"
EOF
        chmod +x "$DIR/rabbitmqctl"
        write_env "$DIR/env" \
                "RABBITMQ_DIR=$DIR" \
                "RABBITMQ_PORT=$AMQP_PORT" \
                "RABBITMQ_HOST=127.0.0.1" \
                "RABBITMQ_URL=amqp://discovery:discovery@127.0.0.1:$AMQP_PORT/" \
                "RABBITMQ_TLS_URL=$([[ -n "${TLS_PORT:-}" && -n "${RABBITMQ_TLS_DIR:-}" ]] && echo "amqps://discovery:discovery@localhost:$TLS_PORT/")" \
                "RABBITMQ_NODE=$NODENAME" \
                "RABBITMQ_DIST_PORT=$DIST_PORT" \
                "RABBITMQ_EPMD_PORT=$EPMD_PORT" \
                "RABBITMQ_BEAM_PID_FILE=$DIR/rabbitmq.pid" \
                "RABBITMQ_LOG=$DIR/log/rabbit.log" \
                "RABBITMQCTL=$DIR/rabbitmqctl"
}

start_epmd() {
        if [[ "${EPMD_SHARED:-0}" == 1 ]]; then
                port_open 127.0.0.1 "$EPMD_PORT" || die "the shared epmd on port $EPMD_PORT (from $DIR/ports) is not running"
                return 0
        fi
        epmd_start "$EPMD_PORT" "$DIR/epmd.pid" "$DIR/log/epmd.log"
}

cmd_start() {
        local t0 wrapper
        t0=$(now_ms)
        if is_running; then
                log "already running (pid $(beam_pid), port $AMQP_PORT)"
                write_envfile
                return 0
        fi
        [[ -x "$RMQ_BIN/rabbitmq-server" ]] || die "$RMQ_BIN/rabbitmq-server not found: apt-get install rabbitmq-server"
        mkdir -p "$DIR/log" "$DIR/mnesia"
        [[ -f "$DIR/ports" ]] || write_ports
        node_env
        local hosts=(127.0.0.1)
        [[ "$LISTEN_V6" == 1 ]] && hosts+=(::1)
        port_is_free "$AMQP_PORT" "${hosts[@]}" || die "AMQP port $AMQP_PORT is in use"
        port_is_free "$DIST_PORT" || die "distribution port $DIST_PORT is in use"
        write_config
        rm -f "$DIR/rabbitmq.pid"
        start_epmd

        # Not /usr/sbin/rabbitmq-server: run as root it re-executes itself through
        # `su rabbitmq` and writes to /var/log/rabbitmq. The script in /usr/lib runs as root
        # as it is; it forks erl and turns SIGTERM into a clean shutdown.
        (cd "$DIR" && exec setsid "$RMQ_BIN/rabbitmq-server") </dev/null >>"$DIR/log/startup.log" 2>&1 &
        wrapper=$!
        echo "$wrapper" >"$DIR/wrapper.pid"

        local deadline=$(($(now_ms) + START_TIMEOUT_S * 1000))
        until beam_pid >/dev/null && port_open 127.0.0.1 "$AMQP_PORT"; do
                if ! pid_alive "$wrapper"; then
                        tail_log "$DIR/log/startup.log" "$DIR/log/rabbit.log"
                        die "rabbitmq-server exited during start (logs in $DIR/log)"
                fi
                if (($(now_ms) >= deadline)); then
                        tail_log "$DIR/log/startup.log" "$DIR/log/rabbit.log"
                        die "broker not listening on 127.0.0.1:$AMQP_PORT after ${START_TIMEOUT_S}s (logs in $DIR/log)"
                fi
                sleep 0.1
        done
        if ! "$ENV_SCRIPTS_DIR/rabbitmqctl.sh" "$DIR" await_startup --timeout 60 \
                >>"$DIR/log/ctl.log" 2>&1; then
                tail_log "$DIR/log/ctl.log" "$DIR/log/rabbit.log"
                die "rabbitmqctl await_startup failed (logs in $DIR/log)"
        fi
        write_envfile
        log "started $NODENAME (beam pid $(beam_pid)) on 127.0.0.1:$AMQP_PORT in $(($(now_ms) - t0)) ms"
}

cmd_stop() {
        local pid wrapper epmd
        [[ -d "$DIR" ]] || return 0
        if pid=$(read_pid "$DIR/rabbitmq.pid") && pid_alive "$pid"; then
                # SIGTERM: the VM runs init:stop(), a clean shutdown (queues flushed to disk).
                stop_pid "$pid" "rabbitmq (beam.smp)" TERM "$STOP_TIMEOUT_S"
                log "stopped broker (pid $pid)"
        fi
        if wrapper=$(read_pid "$DIR/wrapper.pid"); then
                stop_pid "$wrapper" "rabbitmq-server wrapper" TERM 10
        fi
        if epmd=$(read_pid "$DIR/epmd.pid"); then
                stop_pid "$epmd" epmd TERM 10
        fi
        rm -f "$DIR/rabbitmq.pid" "$DIR/wrapper.pid" "$DIR/epmd.pid"
}

[[ $# -eq 2 ]] || usage
DIR=$(abs_dir "$2")

case "$1" in
start) cmd_start ;;
stop) cmd_stop ;;
restart)
        cmd_stop
        cmd_start
        ;;
pid) beam_pid || die "not running ($DIR)" ;;
pause)
        pid=$(beam_pid) || die "not running ($DIR)"
        kill -STOP "$pid"
        log "paused (SIGSTOP) pid $pid"
        ;;
resume)
        pid=$(beam_pid) || die "not running ($DIR)"
        kill -CONT "$pid"
        log "resumed (SIGCONT) pid $pid"
        ;;
status) is_running ;;
*) usage ;;
esac
