#!/usr/bin/env python3
"""The watchdog, under a real user manager: a stalled event loop gets the service killed and
restarted, and no event is lost.

The stall is real and needs nothing in the daemon: its stderr is a pipe (StandardError=file: on
a FIFO with a 4 KiB buffer) that the test stops reading. The daemon, not under journald on that
stream, writes its "<N>message" lines to stderr, and the next write of the loop's thread blocks,
as it would on any stuck log reader. The loop no longer iterates, so no WATCHDOG=1 goes out;
after WatchdogSec= the manager sends SIGABRT, and Restart=on-failure starts it again.
"""

import fcntl
import os
import threading
import time

from harness import check, http_get, log, wait_for
from systemd_env import TransmitterService, case_settings, run_case

WATCHDOG_S = 8  # short for the test, long enough for a loaded 2-CPU machine
N = 1500


class FifoReader(threading.Thread):
    """Reads the daemon's stderr while `reading` is set; when it is cleared the pipe fills up."""

    def __init__(self, path):
        super().__init__(daemon=True)
        os.mkfifo(path, 0o600)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, 4096)
        self.reading = threading.Event()
        self.reading.set()
        self.halt = threading.Event()
        self.data = bytearray()

    def run(self):
        while not self.halt.is_set():
            if not self.reading.is_set():
                time.sleep(0.05)
                continue
            try:
                chunk = os.read(self.fd, 65536)
                if chunk:
                    self.data += chunk
                    continue
            except BlockingIOError:
                pass
            time.sleep(0.02)

    def close(self):
        self.halt.set()
        self.join(5)
        os.close(self.fd)


def main_thread_syscall(pid):
    """(syscall number, first argument) the main thread is in, from /proc/PID/syscall."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            parts = f.read().split()
        return int(parts[0]), int(parts[1], 16)
    except (OSError, ValueError, IndexError):
        return None


def body(case, m):
    case.declare()
    port = int(case.base_settings["TRANSMITTER_SERVER_PORT"])
    fifo = os.path.join(m.dir, "stderr.fifo")
    reader = FifoReader(fifo)
    reader.start()
    settings = case_settings(case, BATCH_SIZE=1, BATCH_INTERVAL_S=1)
    svc = TransmitterService(m, settings, port, token_file=case.receiver.token_file,
                             service_extra="\n".join([
                                 "# The test: a short watchdog, and stderr on a pipe it can stop reading.",
                                 f"WatchdogSec={WATCHDOG_S}", "RestartSec=1",
                                 f"StandardError=file:{fifo}"])).install()
    try:
        m.systemctl("start", svc.SOCKET, svc.SERVICE)
        m.wait_prop(svc.SERVICE, "StatusText", lambda v: "broker connected, database connected" in v, 30)
        check(m.prop(svc.SERVICE, "WatchdogUSec") == f"{WATCHDOG_S}s", f"WatchdogSec={WATCHDOG_S}")
        ids = case.publish(50, prefix="wd", start=1)
        case.wait_delivered(ids, timeout=60)
        time.sleep(2 * WATCHDOG_S)
        check(m.prop(svc.SERVICE, "NRestarts") == "0",
              f"fed from the loop, it lives past {2 * WATCHDOG_S} s of watchdog")
        check(reader.data.startswith(b"<") and b"<6>Batch " in reader.data,
              "its log goes to the pipe as '<N>message' lines (stderr is not the journal stream)")
        pid = svc.main_pid()

        log("-- the stall: stop reading the daemon's stderr, keep events coming")
        mark = m.journal_mark()
        reader.reading.clear()
        published = {}
        pub = threading.Thread(target=lambda: published.update(ids=case.publish(N, prefix="wd", start=51, rate=300)),
                               daemon=True)
        pub.start()
        t_stall = time.monotonic()

        def stuck():
            sc = main_thread_syscall(pid)
            return sc if sc and sc[0] == 1 and sc[1] == 2 else None  # write(2, ...) on x86_64

        wait_for(stuck, 20, "the main thread to block in write(2) to stderr", interval=0.1)
        check(True, "the event loop's thread is blocked in write(2, ...) to the full pipe")
        check(http_get(svc.url + "/health", timeout=2)[0] == 0, "and /health no longer answers (the loop is stalled)")

        killed = wait_for(lambda: [e for e in m.unit_journal(svc.SERVICE, after=mark)
                                   if "Watchdog timeout" in str(e.get("MESSAGE", ""))],
                          WATCHDOG_S * 4 + 10, "the manager's watchdog timeout", interval=0.2)
        t_kill = time.monotonic()
        reader.reading.set()  # whatever runs next can write again
        log(f"FIGURE watchdog: killed {t_kill - t_stall:.1f} s after the stall began (WatchdogSec={WATCHDOG_S})")
        check(killed[0]["_PID"] == m.pid, f"the manager: {killed[0]['MESSAGE']!r}")
        msgs = [str(e.get("MESSAGE", "")) for e in m.unit_journal(svc.SERVICE, after=mark)]
        check(any(f"Killing process {pid} (transmitter) with signal SIGABRT" in x for x in msgs),
              f"it sent SIGABRT to the stalled process {pid}")
        check(any("Failed with result 'watchdog'" in x for x in msgs), "result 'watchdog'")

        m.wait_prop(svc.SERVICE, "NRestarts", lambda v: v == "1", 30)
        m.wait_prop(svc.SERVICE, "ActiveState", lambda v: v == "active", 30)
        check(svc.main_pid() not in (0, pid), f"Restart=on-failure started a new process ({svc.main_pid()})")
        wait_for(lambda: http_get(svc.url + "/health", timeout=2)[0] == 200, 30, "/health again")
        check(True, "which answers /health on the same socket")

        pub.join(300)
        check("ids" in published, "the publisher confirmed every event")
        all_ids = ids + published["ids"]
        case.wait_delivered(all_ids, timeout=180)
        counts = case.receiver.counts()
        check(counts["unique_events"] == len(all_ids), f"every event arrived ({len(all_ids)})")
        log(f"duplicates after the kill (redelivered, allowed): {counts['duplicates']}")
        case.wait_settled(timeout=120)
        check(True, "the queue is settled")
        check(m.prop(svc.SERVICE, "NRestarts") == "1", "one restart in all")
    finally:
        reader.reading.set()
        try:
            m.systemctl("stop", svc.SERVICE, check=False, timeout=90)
        finally:
            reader.close()


if __name__ == "__main__":
    import sys

    sys.exit(run_case("systemd_watchdog", body))
