#!/usr/bin/env bash
# A throw-away PostgreSQL 15 primary with a synchronous streaming standby (architecture §10), no systemd,
# whole state in DIR.
#
#   tests/env/postgres-ha.sh up      DIR   start what is not running (idempotent): the primary, a
#                                          standby made by pg_basebackup -R, synchronous replication
#   tests/env/postgres-ha.sh down    DIR   stop both by PID (safe twice, safe after a failover)
#   tests/env/postgres-ha.sh kill    DIR   kill -9 the primary's postmaster and every backend of it
#   tests/env/postgres-ha.sh promote DIR   pg_ctl promote the standby (waits until it takes writes)
#   tests/env/postgres-ha.sh status  DIR   one line per server; exit 1 if one is down
#
# Each server is a tests/env/postgres.sh instance: DIR/primary and DIR/standby, each with its own
# port, data, socket directory and log (DIR/*/postgres.log). The standby streams from the primary
# as application_name "standby"; the primary has synchronous_commit = on and
# synchronous_standby_names = 'standby' (set after the base backup, so that the promoted standby
# does not wait for a standby of its own), i.e. a commit returns once the standby has it: what a
# client saw committed is on the standby when it is promoted. fsync stays off (no OS crash here).
#
# DIR/env (source it): DATABASE_URL (both hosts, target_session_attrs=read-write: libpq finds the
# primary), DATABASE_URL_PRIMARY, DATABASE_URL_STANDBY, PRIMARY_PORT, STANDBY_PORT, PSQL (psql as
# discovery through DATABASE_URL), PSQL_ADMIN (superuser on whichever server takes writes),
# PSQL_PRIMARY, PSQL_STANDBY (superuser on that server), POSTGRES_PRIMARY_DIR, POSTGRES_STANDBY_DIR,
# PG_HA_DIR. After `promote`, DIR/promoted exists and `up` refuses to start the old primary again
# (it would be a second primary): `down` and use a fresh DIR.
set -euo pipefail

LOG_TAG=postgres-ha
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_BIN=${POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=postgres
TIMEOUT_S=${POSTGRES_START_TIMEOUT_S:-60}

usage() {
        echo "usage: $0 up|down|kill|promote|status DIR" >&2
        exit 2
}

as_pg() {
        runuser -u "$PG_USER" -- "$@"
}

pg() { # pg ROLE ACTION: postgres.sh ACTION on the primary or the standby
        "$ENV_SCRIPTS_DIR/postgres.sh" "$2" "$DIR/$1"
}

port_of() {
        cat "$DIR/$1/port"
}

sql() { # sql ROLE QUERY: one value, as superuser over the server's socket
        as_pg "$PG_BIN/psql" -X -Atq -v ON_ERROR_STOP=1 -h "$DIR/$1/sock" -p "$(port_of "$1")" -U postgres \
                -d postgres -c "$2"
}

wait_sql() { # wait_sql ROLE QUERY EXPECTED WHAT
        local deadline=$(($(now_ms) + TIMEOUT_S * 1000)) v=""
        until v=$(sql "$1" "$2" 2>/dev/null) && [[ "$v" == "$3" ]]; do
                (($(now_ms) < deadline)) || {
                        tail_log "$DIR/primary/postgres.log" "$DIR/standby/postgres.log"
                        die "timed out after ${TIMEOUT_S}s waiting for $4 (last answer: '$v')"
                }
                sleep 0.1
        done
}

make_standby() {
        local d=$DIR/standby
        [[ -f "$d/data/PG_VERSION" ]] && return 0
        mkdir -p "$d/data" "$d/sock"
        chown "$PG_USER:" "$d" "$d/data" "$d/sock"
        chmod 700 "$d/data"
        touch "$d/postgres.log"
        chown "$PG_USER:" "$d/postgres.log"
        # -R writes standby.signal and a primary_conninfo with these parameters: the socket and
        # trust of the primary, and the name synchronous_standby_names refers to.
        if ! as_pg "$PG_BIN/pg_basebackup" -D "$d/data" -R -X stream -c fast --no-sync \
                -d "host=$DIR/primary/sock port=$(port_of primary) user=postgres application_name=standby" \
                >"$d/basebackup.log" 2>&1; then
                tail_log "$d/basebackup.log"
                rm -rf "$d/data"
                die "pg_basebackup failed (log in $d/basebackup.log)"
        fi
        # The copied postgresql.conf names the primary's socket directory.
        printf "\n# tests/env/postgres-ha.sh: the standby\nunix_socket_directories = '%s'\n" "$d/sock" \
                >>"$d/data/postgresql.conf"
        log "standby made by pg_basebackup from the primary"
}

write_helpers() {
        local p1 p2 hosts
        p1=$(port_of primary)
        p2=$(port_of standby)
        hosts="127.0.0.1:$p1,127.0.0.1:$p2"
        cat >"$DIR/psql" <<EOF
#!/bin/sh
# psql as role discovery on database discovery through both hosts, on whichever takes writes.
exec "$PG_BIN/psql" -X "postgresql://discovery:discovery@$hosts/discovery?target_session_attrs=read-write" "\$@"
EOF
        cat >"$DIR/psql-admin" <<EOF
#!/bin/sh
# psql as superuser postgres over the sockets, on whichever server takes writes.
exec "$PG_BIN/psql" -X "host=$DIR/primary/sock,$DIR/standby/sock port=$p1,$p2 user=postgres dbname=\${PGDATABASE:-discovery} target_session_attrs=read-write" "\$@"
EOF
        chmod +x "$DIR/psql" "$DIR/psql-admin"
        write_env "$DIR/env" \
                "PG_HA_DIR=$DIR" \
                "DATABASE_URL=postgresql://discovery:discovery@$hosts/discovery?target_session_attrs=read-write" \
                "DATABASE_URL_PRIMARY=postgresql://discovery:discovery@127.0.0.1:$p1/discovery" \
                "DATABASE_URL_STANDBY=postgresql://discovery:discovery@127.0.0.1:$p2/discovery" \
                "PRIMARY_PORT=$p1" \
                "STANDBY_PORT=$p2" \
                "PSQL=$DIR/psql" \
                "PSQL_ADMIN=$DIR/psql-admin" \
                "PSQL_PRIMARY=$DIR/primary/psql-admin" \
                "PSQL_STANDBY=$DIR/standby/psql-admin" \
                "POSTGRES_PRIMARY_DIR=$DIR/primary" \
                "POSTGRES_STANDBY_DIR=$DIR/standby"
}

cmd_up() {
        local t0
        t0=$(now_ms)
        chmod a+x "$DIR"
        if [[ -f "$DIR/promoted" ]]; then
                pg primary status 2>/dev/null || pg standby status 2>/dev/null ||
                        die "$DIR has failed over and is down: run '$0 down $DIR' and use a fresh DIR"
                log "failed over before: leaving the old primary down (no second primary)"
                pg standby start
                write_helpers
                return 0
        fi
        pg primary start
        make_standby
        pg standby start
        wait_sql primary "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby' AND state = 'streaming'" \
                1 "the standby to stream"
        # After the base backup, so that the standby's copy of the configuration lacks it.
        if [[ "$(sql primary 'SHOW synchronous_standby_names')" != standby ]]; then
                sql primary "ALTER SYSTEM SET synchronous_standby_names = 'standby'" >/dev/null
                sql primary "ALTER SYSTEM SET synchronous_commit = 'on'" >/dev/null
                sql primary "SELECT pg_reload_conf()" >/dev/null
        fi
        wait_sql primary "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'" sync \
                "synchronous replication"
        write_helpers
        log "up in $(($(now_ms) - t0)) ms: primary on $(port_of primary), synchronous standby on $(port_of standby): source $DIR/env"
}

cmd_down() {
        local rc=0
        pg standby stop || rc=1
        pg primary stop || rc=1
        ((rc == 0)) || die "a server did not stop cleanly (see above)"
        log "down"
}

cmd_kill() {
        local pid children
        if ! pid=$(read_pid "$DIR/primary/data/postmaster.pid") || ! pid_alive "$pid"; then
                die "the primary is not running"
        fi
        children=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
        # The whole server at once, as a host that dies: no backend lingers to close its socket cleanly.
        # shellcheck disable=SC2086
        kill -KILL "$pid" $children 2>/dev/null || true
        wait_gone "$pid" 10 || die "the primary (pid $pid) survived SIGKILL"
        log "killed the primary (postmaster $pid and $(echo "$children" | wc -w) children)"
}

cmd_promote() {
        local t0
        t0=$(now_ms)
        pg standby status || die "the standby is not running"
        if ! as_pg "$PG_BIN/pg_ctl" -D "$DIR/standby/data" -w -t "$TIMEOUT_S" promote >>"$DIR/standby/pg_ctl.log" 2>&1; then
                tail_log "$DIR/standby/pg_ctl.log" "$DIR/standby/postgres.log"
                die "pg_ctl promote failed"
        fi
        touch "$DIR/promoted"
        wait_sql standby "SELECT pg_is_in_recovery()" f "the promoted standby to take writes"
        log "promoted the standby in $(($(now_ms) - t0)) ms"
}

cmd_status() {
        local rc=0 role
        for role in primary standby; do
                if pg "$role" status 2>/dev/null; then
                        echo "$role: up (port $(port_of "$role"), in recovery: $(sql "$role" 'SELECT pg_is_in_recovery()'))"
                else
                        echo "$role: down"
                        rc=1
                fi
        done
        return "$rc"
}

[[ $# -eq 2 ]] || usage
DIR=$(abs_dir "$2")
case "$1" in
up) cmd_up ;;
down) cmd_down ;;
kill) cmd_kill ;;
promote) cmd_promote ;;
status) cmd_status ;;
*) usage ;;
esac
