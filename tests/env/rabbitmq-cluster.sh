#!/usr/bin/env bash
# A throw-away three-node RabbitMQ cluster on this machine (architecture §10), no systemd, whole state in DIR.
#
#   tests/env/rabbitmq-cluster.sh up     DIR     start what is not running (idempotent), join the
#                                                nodes into one cluster, write DIR/env
#   tests/env/rabbitmq-cluster.sh down   DIR     stop every node and the epmd by PID (safe twice)
#   tests/env/rabbitmq-cluster.sh kill   DIR N   kill -9 node N (1-3): its beam.smp, nothing else
#   tests/env/rabbitmq-cluster.sh start  DIR N   bring node N back (same ports, name, data): it
#                                                rejoins the cluster by itself
#   tests/env/rabbitmq-cluster.sh stop   DIR N   stop node N cleanly
#   tests/env/rabbitmq-cluster.sh status DIR     one line per node; exit 1 if any is down
#
# Each node is a tests/env/rabbitmq.sh instance in DIR/nodeN with its own node name, AMQP port,
# distribution port (RABBITMQ_DIST_PORT) and data directory. What makes them one cluster: one
# Erlang cookie (copied into each node's HOME=DIR/nodeN before its first start) and one epmd
# (DIR/epmd.pid, on a port of its own), because nodes find each other's distribution ports
# there. Nodes 2 and 3 join node 1 with `rabbitmqctl join_cluster` on the first `up`.
#
# DIR/env (source it): RABBITMQ_URLS (the three AMQP URLs, comma-separated: a RABBITMQ_URL list),
# RABBITMQ_URL (node 1's), RABBITMQ_NODE{1,2,3}_URL, _PORT, _NAME, _DIR, _CTL (rabbitmqctl for that
# node: "$RABBITMQ_NODE2_CTL" cluster_status), RABBITMQCTL (node 1's), RABBITMQ_CLUSTER_DIR. With
# RABBITMQ_TLS_DIR (tests/env/ca.sh) at the first `up`, also RABBITMQ_TLS_URLS (amqps://).
# Logs: DIR/nodeN/log/ (rabbit.log, startup.log), DIR/epmd.log, DIR/cluster.log (the joins).
# Memory: about 150 MB per node.
#
# Start time here: 25-40 s for three nodes started side by side on 2 cores (first boot).
set -euo pipefail

LOG_TAG=rabbitmq-cluster
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES=(1 2 3)

usage() {
        echo "usage: $0 up|down|status DIR | kill|start|stop DIR N" >&2
        exit 2
}

node_dir() {
        echo "$DIR/node$1"
}

ctl() { # ctl N ARGS...: rabbitmqctl against node N
        local n=$1
        shift
        "$ENV_SCRIPTS_DIR/rabbitmqctl.sh" "$(node_dir "$n")" "$@"
}

node_var() { # node_var N VAR: a variable of node N's ports file
        (
                # shellcheck source=/dev/null
                . "$(node_dir "$1")/ports"
                eval "echo \"\${$2}\""
        )
}

start_epmd() {
        local port
        if [[ -f "$DIR/epmd_port" ]]; then
                port=$(cat "$DIR/epmd_port")
        else
                port=$(free_ports 1)
                echo "$port" >"$DIR/epmd_port"
        fi
        epmd_start "$port" "$DIR/epmd.pid" "$DIR/epmd.log"
}

# The one cookie every node is given before its first start (rabbitmq.sh keeps an existing one).
seed_cookie() {
        local d
        if [[ ! -s "$DIR/.erlang.cookie" ]]; then
                (umask 077 && od -An -N20 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F' >"$DIR/.erlang.cookie")
        fi
        for n in "${NODES[@]}"; do
                d=$(node_dir "$n")
                mkdir -p "$d"
                if [[ ! -s "$d/.erlang.cookie" ]]; then
                        cp "$DIR/.erlang.cookie" "$d/.erlang.cookie"
                        chmod 400 "$d/.erlang.cookie"
                fi
        done
}

start_node() { # start_node N: rabbitmq.sh start on the shared epmd
        RABBITMQ_SHARED_EPMD_PORT=$(cat "$DIR/epmd_port") RABBITMQ_TLS_DIR=${RABBITMQ_TLS_DIR:-} \
                "$ENV_SCRIPTS_DIR/rabbitmq.sh" start "$(node_dir "$1")"
}

# join N: makes node N a member of node 1's cluster, once (DIR/nodeN/joined remembers it).
join() {
        local n=$1 d first
        d=$(node_dir "$n")
        [[ -f "$d/joined" ]] && return 0
        first=$(node_var 1 NODENAME)
        {
                ctl "$n" stop_app &&
                        ctl "$n" reset &&
                        ctl "$n" join_cluster "$first" &&
                        ctl "$n" start_app &&
                        ctl "$n" await_startup --timeout 60
        } >>"$DIR/cluster.log" 2>&1 || { tail_log "$DIR/cluster.log"; die "node $n could not join $first"; }
        touch "$d/joined"
        log "node $n joined $first"
}

write_envfile() {
        local urls=() tls_urls=() vars=("RABBITMQ_CLUSTER_DIR=$DIR") n port tls
        for n in "${NODES[@]}"; do
                port=$(node_var "$n" AMQP_PORT)
                urls+=("amqp://discovery:discovery@127.0.0.1:$port/")
                vars+=("RABBITMQ_NODE${n}_URL=amqp://discovery:discovery@127.0.0.1:$port/"
                        "RABBITMQ_NODE${n}_PORT=$port"
                        "RABBITMQ_NODE${n}_NAME=$(node_var "$n" NODENAME)"
                        "RABBITMQ_NODE${n}_DIR=$(node_dir "$n")"
                        "RABBITMQ_NODE${n}_CTL=$(node_dir "$n")/rabbitmqctl"
                        "RABBITMQ_NODE${n}_PID_FILE=$(node_dir "$n")/rabbitmq.pid")
                if [[ -s "$(node_dir "$n")/tls_dir" ]]; then
                        tls=$(node_var "$n" TLS_PORT)
                        tls_urls+=("amqps://discovery:discovery@localhost:$tls/")
                fi
        done
        local IFS=,
        vars+=("RABBITMQ_URLS=${urls[*]}" "RABBITMQ_URL=${urls[0]}" "RABBITMQ_TLS_URLS=${tls_urls[*]}"
                "RABBITMQCTL=$(node_dir 1)/rabbitmqctl")
        unset IFS
        write_env "$DIR/env" "${vars[@]}"
}

cmd_up() {
        local t0 pids=() n rc=0
        t0=$(now_ms)
        seed_cookie
        start_epmd
        # Side by side: each node takes 7-13 s to boot, mostly the Erlang VM.
        for n in "${NODES[@]}"; do
                start_node "$n" &
                pids+=($!)
        done
        for n in "${!pids[@]}"; do
                wait "${pids[$n]}" || rc=1
        done
        ((rc == 0)) || die "a node did not start (logs in $DIR/node*/log); clean up with: $0 down $DIR"
        join 2
        join 3
        write_envfile
        log "up in $(($(now_ms) - t0)) ms: source $DIR/env"
}

cmd_down() {
        local n rc=0 pid
        for n in "${NODES[@]}"; do
                "$ENV_SCRIPTS_DIR/rabbitmq.sh" stop "$(node_dir "$n")" || rc=1
        done
        if pid=$(read_pid "$DIR/epmd.pid"); then
                stop_pid "$pid" epmd TERM 10
        fi
        rm -f "$DIR/epmd.pid"
        ((rc == 0)) || die "some node did not stop cleanly (see above)"
        log "down"
}

cmd_kill() {
        local n=$1 pid
        if ! pid=$(read_pid "$(node_dir "$n")/rabbitmq.pid") || ! pid_alive "$pid"; then
                die "node $n is not running"
        fi
        kill -KILL "$pid"
        wait_gone "$pid" 10 || die "node $n (pid $pid) survived SIGKILL"
        log "killed node $n (beam pid $pid)"
}

cmd_status() {
        local n rc=0 members
        for n in "${NODES[@]}"; do
                if "$ENV_SCRIPTS_DIR/rabbitmq.sh" status "$(node_dir "$n")" 2>/dev/null; then
                        echo "node $n: up ($(node_var "$n" NODENAME), port $(node_var "$n" AMQP_PORT))"
                else
                        echo "node $n: down"
                        rc=1
                fi
        done
        if members=$(ctl 1 eval 'length(rabbit_nodes:all_running()).' 2>/dev/null); then
                echo "running cluster members: $members"
        fi
        return "$rc"
}

node_arg() {
        [[ "${1:-}" =~ ^[123]$ ]] || usage
        echo "$1"
}

[[ $# -ge 2 ]] || usage
DIR=$(abs_dir "$2")
case "$1" in
up)
        [[ $# -eq 2 ]] || usage
        cmd_up
        ;;
down)
        [[ $# -eq 2 ]] || usage
        cmd_down
        ;;
status)
        [[ $# -eq 2 ]] || usage
        cmd_status
        ;;
kill)
        [[ $# -eq 3 ]] || usage
        cmd_kill "$(node_arg "$3")"
        ;;
start)
        [[ $# -eq 3 ]] || usage
        n=$(node_arg "$3")
        start_epmd
        start_node "$n"
        ;;
stop)
        [[ $# -eq 3 ]] || usage
        "$ENV_SCRIPTS_DIR/rabbitmq.sh" stop "$(node_dir "$(node_arg "$3")")"
        ;;
*) usage ;;
esac
