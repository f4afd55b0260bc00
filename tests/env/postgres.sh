#!/usr/bin/env bash
# A throw-away PostgreSQL 15 cluster (Debian's postgresql-15 package), no systemd, whole state in DIR.
#
#   tests/env/postgres.sh start   DIR   initdb on first use, then start (or reuse) the server
#   tests/env/postgres.sh stop    DIR   fast shutdown by PID, wait until gone (safe to repeat)
#   tests/env/postgres.sh restart DIR   stop + start on the SAME port and data directory
#   tests/env/postgres.sh pid     DIR   print the postmaster PID
#   tests/env/postgres.sh pause   DIR   SIGSTOP the postmaster and all its backends (frozen)
#   tests/env/postgres.sh resume  DIR   SIGCONT them
#   tests/env/postgres.sh status  DIR   exit 0 when accepting connections
#
# The server runs as the `postgres` OS user (it refuses root), listens on 127.0.0.1:<free port>
# and on a unix socket in DIR/sock, with fsync off. Role `discovery` (password `discovery`) owns
# database `discovery`; TCP connections need the password (scram-sha-256), unix-socket ones are
# trusted (superuser: -U postgres).
#
# DIR/env (source it): PGPORT, DATABASE_URL, PSQL (a path: "$PSQL" -c 'select 1' runs
# psql as discovery on the discovery database), PSQL_ADMIN (the same as superuser postgres).
# No PGPASSWORD/PGUSER/PGHOST: they would hide a daemon that drops parts of its DATABASE_URL.
# Logs: DIR/postgres.log. Data: DIR/data. The port is kept in DIR/port for restarts.
#
# A "database down for 20 s" test: postgres.sh stop DIR; sleep 20; postgres.sh start DIR.
# Environment knobs: POSTGRES_START_TIMEOUT_S (default 60), POSTGRES_STOP_TIMEOUT_S (default 30),
# POSTGRES_PORT (fixed port for the first start), POSTGRES_BIN (default /usr/lib/postgresql/15/bin).
set -euo pipefail

LOG_TAG=postgres
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_BIN=${POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
START_TIMEOUT_S=${POSTGRES_START_TIMEOUT_S:-60}
STOP_TIMEOUT_S=${POSTGRES_STOP_TIMEOUT_S:-30}
PG_USER=postgres

usage() {
        echo "usage: $0 start|stop|restart|pid|pause|resume|status DIR" >&2
        exit 2
}

as_pg() {
        runuser -u "$PG_USER" -- "$@"
}

postmaster_pid() {
        local pid
        pid=$(read_pid "$DIR/data/postmaster.pid") || return 1
        pid_alive "$pid" || return 1
        echo "$pid"
}

is_running() {
        postmaster_pid >/dev/null || return 1
        [[ -f "$DIR/port" ]] || return 1
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$(cat "$DIR/port")" -t 2
}

check_access() {
        # The postgres user must be able to reach DIR: a mktemp -d is 0700 root.
        local d=$DIR
        chmod a+x "$DIR"
        while [[ "$d" != / ]]; do
                d=$(dirname "$d")
                as_pg test -x "$d" || die "user $PG_USER cannot enter $d on the way to $DIR: chmod a+x $d (mktemp -d makes 0700 dirs)"
        done
}

init_cluster() {
        local t0
        t0=$(now_ms)
        mkdir -p "$DIR/data" "$DIR/sock"
        chown "$PG_USER:" "$DIR/data" "$DIR/sock"
        chmod 700 "$DIR/data"
        touch "$DIR/postgres.log"
        chown "$PG_USER:" "$DIR/postgres.log"
        if ! as_pg "$PG_BIN/initdb" -D "$DIR/data" -U postgres --auth-local=trust \
                --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync \
                >"$DIR/initdb.log" 2>&1; then
                tail_log "$DIR/initdb.log"
                die "initdb failed (log in $DIR/initdb.log)"
        fi
        cat >>"$DIR/data/postgresql.conf" <<EOF

# tests/env/postgres.sh: throw-away test cluster, speed over durability
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 128MB
log_min_messages = warning
log_connections = off
log_line_prefix = '%m [%p] %q%u@%d '
password_encryption = scram-sha-256
EOF
        log "initdb done in $(($(now_ms) - t0)) ms"
}

create_role_db() {
        if ! as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/sock" -p "$PORT" -U postgres \
                -d postgres >>"$DIR/setup.log" 2>&1 <<'EOF'; then
SELECT 'CREATE ROLE discovery LOGIN PASSWORD ''discovery'''
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'discovery') \gexec
SELECT 'CREATE DATABASE discovery OWNER discovery'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'discovery') \gexec
EOF
                tail_log "$DIR/setup.log"
                die "creating role/database failed (log in $DIR/setup.log)"
        fi
}

write_helpers() {
        cat >"$DIR/psql" <<EOF
#!/bin/sh
# psql as role discovery on database discovery (TCP, password auth), like the daemon connects.
exec "$PG_BIN/psql" -X "postgresql://discovery:discovery@127.0.0.1:$PORT/discovery" "\$@"
EOF
        cat >"$DIR/psql-admin" <<EOF
#!/bin/sh
# psql as superuser postgres over the unix socket in $DIR/sock.
exec "$PG_BIN/psql" -X -h "$DIR/sock" -p "$PORT" -U postgres "\${PGDATABASE:-discovery}" "\$@"
EOF
        chmod +x "$DIR/psql" "$DIR/psql-admin"
        write_env "$DIR/env" \
                "POSTGRES_DIR=$DIR" \
                "PGPORT=$PORT" \
                "DATABASE_URL=postgresql://discovery:discovery@127.0.0.1:$PORT/discovery" \
                "POSTGRES_SOCKET_DIR=$DIR/sock" \
                "POSTGRES_PID_FILE=$DIR/data/postmaster.pid" \
                "POSTGRES_LOG=$DIR/postgres.log" \
                "PSQL=$DIR/psql" \
                "PSQL_ADMIN=$DIR/psql-admin"
}

cmd_start() {
        local t0
        t0=$(now_ms)
        [[ -x "$PG_BIN/postgres" ]] || die "$PG_BIN/postgres not found: apt-get install postgresql-15"
        id "$PG_USER" >/dev/null 2>&1 || die "no OS user $PG_USER (comes with the postgresql-15 package)"
        check_access
        if is_running; then
                PORT=$(cat "$DIR/port")
                write_helpers
                log "already running (pid $(postmaster_pid), port $PORT)"
                return 0
        fi
        if [[ -f "$DIR/port" ]]; then
                PORT=$(cat "$DIR/port")
        else
                PORT=${POSTGRES_PORT:-$(free_ports 1)}
                echo "$PORT" >"$DIR/port"
        fi
        port_is_free "$PORT" || die "port $PORT (from $DIR/port) is in use"
        [[ -f "$DIR/data/PG_VERSION" ]] || init_cluster
        # A postmaster.pid left by a kill -9: postgres removes it itself only if kill(pid, 0) fails,
        # which it does not while the dead postmaster lingers as an unreaped zombie.
        local stale
        if stale=$(read_pid "$DIR/data/postmaster.pid"); then
                if ! pid_alive "$stale" || [[ "$(cat "/proc/$stale/comm" 2>/dev/null)" != postgres* ]]; then
                        log "removing stale postmaster.pid and socket lock (pid $stale is gone)"
                        rm -f "$DIR/data/postmaster.pid" "$DIR/sock/.s.PGSQL.$PORT" "$DIR/sock/.s.PGSQL.$PORT.lock"
                fi
        fi
        if ! as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t "$START_TIMEOUT_S" \
                -o "-p $PORT" start >>"$DIR/pg_ctl.log" 2>&1; then
                tail_log "$DIR/pg_ctl.log" "$DIR/postgres.log"
                die "pg_ctl start failed or timed out after ${START_TIMEOUT_S}s (logs in $DIR)"
        fi
        local deadline=$(($(now_ms) + START_TIMEOUT_S * 1000))
        until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 1; do
                (($(now_ms) < deadline)) || { tail_log "$DIR/postgres.log"; die "pg_isready timed out"; }
                sleep 0.1
        done
        create_role_db
        write_helpers
        log "started (pid $(postmaster_pid)) on 127.0.0.1:$PORT in $(($(now_ms) - t0)) ms"
}

cmd_stop() {
        local pid
        [[ -d "$DIR" ]] || return 0
        if pid=$(postmaster_pid); then
                # SIGINT = fast shutdown: roll back open transactions, disconnect clients, exit.
                # Backends frozen by `pause` must be thawed first or they never exit.
                pkill_tree CONT "$pid"
                stop_pid "$pid" postgres INT "$STOP_TIMEOUT_S"
                log "stopped (pid $pid)"
        fi
}

# pkill_tree SIGNAL PID: signals PID and its direct children (the backends of a postmaster).
pkill_tree() {
        local sig=$1 pid=$2 child
        kill "-$sig" "$pid" 2>/dev/null || true
        for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
                kill "-$sig" "$child" 2>/dev/null || true
        done
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
pid) postmaster_pid || die "not running ($DIR)" ;;
pause)
        pid=$(postmaster_pid) || die "not running ($DIR)"
        # Children first, so the postmaster never sees a child stop while it still runs.
        for child in $(ps -o pid= --ppid "$pid"); do kill -STOP "$child" 2>/dev/null || true; done
        kill -STOP "$pid"
        log "paused (SIGSTOP) postmaster $pid and its backends"
        ;;
resume)
        pid=$(postmaster_pid) || die "not running ($DIR)"
        pkill_tree CONT "$pid"
        log "resumed (SIGCONT) postmaster $pid and its backends"
        ;;
status) is_running ;;
*) usage ;;
esac
