# shellcheck shell=bash
# Helpers shared by the tests/env/*.sh scripts. Sourced, never executed.
#
# Every wait has a timeout; every error names what failed and where its log is.

ENV_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export ENV_SCRIPTS_DIR

# Debian's python3 (the package the scripts need), not whatever shim comes first in PATH.
if [[ -z "${PYTHON:-}" ]]; then
        if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
export PYTHON

log() {
        printf '%s: %s\n' "${LOG_TAG:-env}" "$*" >&2
}

die() {
        printf '%s: error: %s\n' "${LOG_TAG:-env}" "$*" >&2
        exit 1
}

# now_ms: milliseconds since the epoch.
now_ms() {
        local t
        t=$(date +%s%N)
        echo $((t / 1000000))
}

# abs_dir DIR: creates DIR if needed and prints its absolute path.
abs_dir() {
        [[ -n "${1:-}" ]] || die "missing DIR argument"
        mkdir -p -- "$1"
        (cd -- "$1" && pwd)
}

# free_ports N [HOST...]: prints N distinct TCP ports that are free on every HOST
# (default 127.0.0.1), one a line. All are held open at once so that they differ.
free_ports() {
        local n=$1
        shift
        "$PYTHON" - "$n" "$@" <<'EOF'
import socket, sys
n = int(sys.argv[1])
hosts = sys.argv[2:] or ["127.0.0.1"]
held, ports = [], []
while len(ports) < n:
    s = socket.socket(socket.AF_INET6 if ":" in hosts[0] else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((hosts[0], 0))
    port = s.getsockname()[1]
    ok = True
    extra = []
    for h in hosts[1:]:
        t = socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            t.bind((h, port))
            extra.append(t)
        except OSError:
            ok = False
            t.close()
            break
    held.append(s)
    held.extend(extra)
    if ok:
        ports.append(port)
for p in ports:
    print(p)
EOF
}

# port_is_free PORT [HOST...]
port_is_free() {
        local port=$1
        shift
        "$PYTHON" - "$port" "$@" <<'EOF'
import socket, sys
port = int(sys.argv[1])
for h in sys.argv[2:] or ["127.0.0.1"]:
    s = socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET)
    # Servers set SO_REUSEADDR: a port in TIME_WAIT is free for them, a listening one is not.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((h, port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
}

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() {
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# have_ipv6_loopback: true when ::1 can be bound.
have_ipv6_loopback() {
        "$PYTHON" -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null
}

# pid_alive PID: true while PID runs. A zombie counts as dead: in a container whose PID 1 does not
# reap orphans, a killed daemon stays a zombie for ever and kill -0 still succeeds on it.
pid_alive() {
        local state=""
        [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null || return 1
        state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null) || true
        [[ "$state" != Z ]]
}

# read_pid FILE: prints the first line of FILE if FILE exists and holds a number.
read_pid() {
        local pid=""
        [[ -f "$1" ]] || return 1
        read -r pid <"$1" || true
        [[ "$pid" =~ ^[0-9]+$ ]] || return 1
        echo "$pid"
}

# wait_gone PID TIMEOUT_S: waits until PID has exited; false on timeout.
wait_gone() {
        local pid=$1 deadline
        deadline=$(($(now_ms) + $2 * 1000))
        while pid_alive "$pid"; do
                (($(now_ms) < deadline)) || return 1
                sleep 0.1
        done
}

# stop_pid PID NAME [SIGNAL] [TIMEOUT_S]: sends SIGNAL (default TERM) to PID (after a SIGCONT,
# in case a test froze it), waits up to TIMEOUT_S (default 30), then SIGKILL and waits again.
stop_pid() {
        local pid=$1 name=$2 sig=${3:-TERM} timeout=${4:-30}
        pid_alive "$pid" || return 0
        kill -CONT "$pid" 2>/dev/null || true
        kill "-$sig" "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" "$timeout"; then
                log "$name (pid $pid) still running ${timeout}s after SIG$sig; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                wait_gone "$pid" 10 || die "$name (pid $pid) survived SIGKILL"
        fi
}

# epmd_start PORT PIDFILE LOGFILE: an Erlang port mapper of our own on 127.0.0.1:PORT, unless the
# one PIDFILE names already listens there.
epmd_start() {
        local port=$1 pidfile=$2 logfile=$3 pid
        if pid=$(read_pid "$pidfile") && pid_alive "$pid" && port_open 127.0.0.1 "$port"; then
                return 0
        fi
        port_is_free "$port" || die "epmd port $port is in use by someone else"
        setsid epmd -port "$port" -address 127.0.0.1 </dev/null >>"$logfile" 2>&1 &
        echo $! >"$pidfile"
        local deadline=$(($(now_ms) + 10000))
        until port_open 127.0.0.1 "$port"; do
                pid_alive "$!" || { tail_log "$logfile"; die "epmd exited at start"; }
                (($(now_ms) < deadline)) || die "epmd did not listen on $port within 10 s"
                sleep 0.05
        done
}

# tail_log FILE...: prints the last lines of each existing FILE to stderr.
tail_log() {
        local f
        for f in "$@"; do
                [[ -f "$f" ]] || continue
                printf -- '----- last lines of %s -----\n' "$f" >&2
                tail -n 40 -- "$f" >&2 || true
        done
}

# shell_quote VALUE: prints VALUE quoted for a shell.
shell_quote() {
        printf '%q' "$1"
}

# write_env FILE NAME=VALUE...: writes a shell-sourceable file of exported variables (atomic).
write_env() {
        local file=$1 kv
        shift
        {
                echo "# generated by tests/env; source this file"
                for kv in "$@"; do
                        printf 'export %s=%s\n' "${kv%%=*}" "$(shell_quote "${kv#*=}")"
                done
        } >"$file.tmp.$$"
        # Per-process temporary name: two "up" calls on one directory must not race on it.
        mv -f -- "$file.tmp.$$" "$file"
}
