#!/usr/bin/env python3
"""The daemon's side of the systemd protocols, without a service manager:

1. No systemd at all (a shell): it binds SERVER_HOST:SERVER_PORT, logs "<N>message" lines to
   stderr, delivers, and exits 0 on SIGTERM.
2. Socket activation (systemd-socket-activate) with a NOTIFY_SOCKET of the test's own: the
   connection that started it is answered; it uses the passed socket (SERVER_PORT is elsewhere);
   READY=1 with STATUS=, WATCHDOG=1 pings at the WATCHDOG_USEC pace, a STATUS= summary,
   RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on SIGTERM, exit 0.
3. Wrong sockets (two, or a datagram socket): one clear line and exit status 78."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import TRANSMITTER_BIN, check, free_port, http_get, log, main, wait_for


class NotifySocket:
    """An AF_UNIX datagram socket standing in for the service manager's."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, {field: value})
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = {}
            for line in data.decode(errors="replace").split("\n"):
                k, sep, v = line.partition("=")
                if sep:
                    fields[k] = v
            with self.lock:
                self.messages.append((time.monotonic(), fields))

    def having(self, key, value=None, since=0.0):
        with self.lock:
            return [(t, m) for t, m in self.messages
                    if t >= since and key in m and (value is None or m[key] == value)]

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def daemon_env(case, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSMITTER_")}
    for k in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "JOURNAL_STREAM", "WATCHDOG_USEC",
              "WATCHDOG_PID", "CREDENTIALS_DIRECTORY", "INVOCATION_ID"):
        env.pop(k, None)
    env.update(case.base_settings)
    env.update(extra)
    return env


def plain_shell(case):
    log("-- 1. from a shell, no systemd")
    ids = case.publish(50, prefix="plain", declare=True)
    t = case.transmitter(BATCH_SIZE=10, BATCH_INTERVAL_S=1)
    t.start()
    case.wait_delivered(ids, timeout=60)
    rc = t.stop()
    text = t.log_text()
    lines = [l for l in text.splitlines() if l and not l.startswith("---- start")]
    check(rc == 0, f"exit status 0 after SIGTERM (got {rc})")
    check(f"Listening on {t.settings['TRANSMITTER_SERVER_HOST']}:{t.port}" in text,
          f"it bound SERVER_HOST:SERVER_PORT itself ({t.settings['TRANSMITTER_SERVER_HOST']}:{t.port})")
    check(lines and all(re.match(r"<[0-7]>\S", l) for l in lines),
          f"every stderr line is '<N>message' ({len(lines)} lines, e.g. {lines[0]!r})")
    check(any(l.startswith("<6>Batch ") and " sent: 10 events" in l for l in lines),
          "the per-batch line is there at INFO (<6>)")
    check(sum(1 for l in lines if l.startswith("<6>Batch ")) == 5, "one line per batch, not per event (5 batches)")


def activated(case, tmp):
    log("-- 2. socket-activated, with a notify socket of the test")
    notify = NotifySocket(tmp)
    port = free_port()
    out_path = os.path.join(case.workdir, "activated.log")
    env = daemon_env(case, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000",
                     TRANSMITTER_BATCH_SIZE="10", TRANSMITTER_BATCH_INTERVAL_S="1")
    # SERVER_PORT points elsewhere: whatever answers on `port` is the passed socket.
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=http",
                                 "-E", "NOTIFY_SOCKET", "-E", "WATCHDOG_USEC",
                                 *[a for k in env if k.startswith("TRANSMITTER_") for a in ("-E", k)],
                                 TRANSMITTER_BIN, "--config", "/dev/null"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: os.path.exists(out_path) and "Listening on" in open(out_path).read(), 10,
                 "systemd-socket-activate to listen")
        check(not notify.having("READY"), "nothing is started before the first connection")
        t0 = time.monotonic()
        status, body, _ = http_get(f"http://127.0.0.1:{port}/health", timeout=15)
        check(status == 200 and b"healthy" in body, f"the activating connection is answered: {status} {body[:60]!r}")
        ready = wait_for(lambda: notify.having("READY", "1"), 10, "READY=1")
        t_ready, m = ready[0]
        log(f"FIGURE activation: connection to READY=1 {1000 * (t_ready - t0):.1f} ms (systemd-socket-activate, "
            f"no service manager, DATABASE_MIGRATE=true)")
        check("STATUS" in m, f"READY=1 comes with a STATUS= ({m.get('STATUS')!r})")
        text = open(out_path).read()
        check(f"Listening on 127.0.0.1:{port}, the socket passed by systemd" in text,
              "it uses the passed socket and says which")
        check(f"Listening on 127.0.0.1:{case.base_settings['TRANSMITTER_SERVER_PORT']}" not in text,
              "and binds nothing itself")

        wait_for(lambda: len(notify.having("WATCHDOG", "1", since=t_ready)) >= 3, 10, "3 watchdog pings")
        pings = [t for t, _ in notify.having("WATCHDOG", "1", since=t_ready)]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        check(all(0.5 < g < 2.0 for g in gaps), f"WATCHDOG=1 every 1-1.5 s for WATCHDOG_USEC=2 s (gaps {gaps})")

        ids = case.publish(30, prefix="act", declare=True)
        case.wait_delivered(ids, timeout=60)
        wait_for(lambda: [m for _, m in notify.having("STATUS")
                          if m["STATUS"].startswith("sent 3 batches / 30 events")],
                 10, "STATUS= with 3 batches / 30 events")
        line = [m for _, m in notify.having("STATUS") if m["STATUS"].startswith("sent 3 batches")][-1]["STATUS"]
        check("circuit closed, broker connected, database connected" in line, f"the summary: {line!r}")
        sent_status = notify.having("STATUS")
        check(all(b[0] - a[0] > 0.9 for a, b in zip(sent_status[1:], sent_status[2:])),
              f"STATUS= updates are rate-limited to one a second ({len(sent_status)} in all)")

        t_hup = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        reloading = wait_for(lambda: notify.having("RELOADING", "1", since=t_hup), 10, "RELOADING=1")
        ready2 = wait_for(lambda: notify.having("READY", "1", since=reloading[0][0]), 10, "READY=1 after the reload")
        check(ready2[0][0] >= reloading[0][0], "SIGHUP: RELOADING=1, then READY=1")

        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(40)
        stopping = notify.having("STOPPING", "1", since=t_term)
        check(stopping, f"SIGTERM: STOPPING=1 ({stopping[0][1] if stopping else None})")
        check("EXTEND_TIMEOUT_USEC" in stopping[0][1] or notify.having("EXTEND_TIMEOUT_USEC", since=t_term),
              "and EXTEND_TIMEOUT_USEC= for the drain's bound")
        check(rc == 0, f"exit status 0 (got {rc})")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def wrong_sockets(case):
    log("-- 3. sockets the daemon cannot use")
    env = daemon_env(case)
    for what, args, trigger in (
            ("two stream sockets", ["-l", f"127.0.0.1:{free_port()}", "-l", f"127.0.0.1:{free_port()}"], "tcp"),
            ("a datagram socket", ["--datagram", "-l", f"127.0.0.1:{free_port()}"], "udp")):
        port = int(args[-1].rsplit(":", 1)[1])
        proc = subprocess.Popen(["systemd-socket-activate", *args,
                                 *[a for k in env if k.startswith("TRANSMITTER_") for a in ("-E", k)],
                                 TRANSMITTER_BIN, "--config", "/dev/null"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(0.5)
            if trigger == "tcp":
                http_get(f"http://127.0.0.1:{port}/health", timeout=3)
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.sendto(b"x", ("127.0.0.1", port))
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        lines = [l for l in out.splitlines() if l.startswith("<")]
        check(proc.returncode == 78, f"{what}: exit status 78 (got {proc.returncode})")
        check(len(lines) == 1 and "socket" in lines[0] and lines[0].startswith("<3>"),
              f"{what}: one error line naming the problem: {lines}")


def body(case):
    with tempfile.TemporaryDirectory(prefix="transmitter-notify-") as tmp:
        plain_shell(case)
        activated(case, tmp)
        wrong_sockets(case)


if __name__ == "__main__":
    main("systemd_standalone", body)
