#!/usr/bin/env python3
"""`systemctl --user reload transmitter` under a real user manager, while events flow:

- token rotation: a new auth-token credential file, then reload; the next batch carries the
  new token (the credential is copied again by the unit's ExecReload=, the daemon re-reads it);
- LOG_LEVEL: turned down to WARNING the per-batch INFO lines stop, turned back up they return;
- a bad configuration file: the reload is refused with a line saying why, the old settings stay;
- through all of it the main process and its listen socket are the same, /health always
  answers, and every event published arrives exactly once.
"""

import threading
import time

from harness import check, http_get, log, wait_for
from systemd_env import TransmitterService, case_settings, run_case

CHUNK = 10


class Publisher(threading.Thread):
    """Publishes CHUNK events every period until stopped; ids rl-000001, rl-000002, ..."""

    def __init__(self, case, period=0.4):
        super().__init__(daemon=True)
        self.case, self.period = case, period
        self.ids = []
        self.error = None
        self.halt = threading.Event()

    def run(self):
        try:
            while not self.halt.is_set():
                self.ids += self.case.publish(CHUNK, prefix="rl", start=len(self.ids) + 1)
                self.halt.wait(self.period)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def stop(self):
        self.halt.set()
        self.join(60)
        if self.error:
            raise self.error
        return self.ids


class HealthPoller(threading.Thread):
    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.ok = self.failed = 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            if http_get(self.url + "/health", timeout=5)[0] == 200:
                self.ok += 1
            else:
                self.failed += 1
            self.halt.wait(0.05)


def listen_inode(pid):
    import os

    return os.readlink(f"/proc/{pid}/fd/3")


def wait_reloaded(svc, mark, what):
    """The daemon's own "Configuration reloaded" line: `systemctl reload` returns when the signal
    is sent, not when the daemon is done."""
    return wait_for(lambda: [e for e in svc.journal(after=mark) if
                             str(e.get("MESSAGE", "")).startswith("Configuration reloaded")],
                    20, f"'Configuration reloaded' after {what}")


def body(case, m):
    case.declare()
    port = int(case.base_settings["TRANSMITTER_SERVER_PORT"])
    cred = f"{case.workdir}/auth-token"
    with open(cred, "w") as f:
        f.write("token-A\n")
    case.receiver.set_token("token-A")
    settings = case_settings(case, BATCH_SIZE=CHUNK, BATCH_INTERVAL_S=1)
    svc = TransmitterService(m, settings, port, token_file=cred).install()
    m.systemctl("start", svc.SOCKET, svc.SERVICE)
    m.wait_prop(svc.SERVICE, "StatusText", lambda v: "broker connected, database connected" in v, 30)
    pid, sock = svc.main_pid(), listen_inode(svc.main_pid())
    log(f"main PID {pid}, listen socket {sock}")

    poller = HealthPoller(svc.url)
    poller.start()
    pub = Publisher(case)
    pub.start()
    try:
        wait_for(lambda: len(case.receiver.batches()) >= 3, 30, "3 batches with the first token")
        check(all(b["token"] == "token-A" for b in case.receiver.batches()), "the first batches carry token-A")

        log("-- token rotation")
        case.receiver.set_token("token-A\ntoken-B")   # the destination accepts both while rotating
        with open(cred, "w") as f:
            f.write("token-B\n")
        mark = m.journal_mark()
        m.systemctl("reload", svc.SERVICE)
        done = wait_reloaded(svc, mark, "the token rotation")
        t_done = int(done[0]["__REALTIME_TIMESTAMP"]) / 1e6
        wait_for(lambda: [b for b in case.receiver.batches() if b["received_at"] > t_done + 0.5], 30,
                 "a batch sent after the reload")
        # (A request already on the wire when the reload finished may still carry token-A.)
        after = [b for b in case.receiver.batches() if b["received_at"] > t_done + 0.3]
        check(after and after[0]["token"] == "token-B", f"the next batch carries token-B ({after[0]['token']})")
        check(all(b["token"] == "token-B" for b in after), f"and every later one ({len(after)} batches)")
        case.receiver.set_token("token-B")            # the old token is revoked

        log("-- LOG_LEVEL")
        settings["TRANSMITTER_LOG_LEVEL"] = "WARNING"
        svc.write_config(settings)
        mark = m.journal_mark()
        m.systemctl("reload", svc.SERVICE)
        # What is logged after the reload took effect, not after `systemctl reload` was called.
        since = int(wait_reloaded(svc, mark, "LOG_LEVEL=WARNING")[0]["__REALTIME_TIMESTAMP"]) + 1
        n0 = len(case.receiver.batches())
        wait_for(lambda: len(case.receiver.batches()) >= n0 + 5, 30, "5 more batches")
        quiet = [e for e in svc.journal(after=since) if "BATCH_ID" in e]
        check(not quiet, f"at WARNING no per-batch INFO line ({len(quiet)} while 5+ batches went out)")
        settings["TRANSMITTER_LOG_LEVEL"] = "INFO"
        svc.write_config(settings)
        mark = m.journal_mark()
        m.systemctl("reload", svc.SERVICE)
        since = int(wait_reloaded(svc, mark, "LOG_LEVEL=INFO")[0]["__REALTIME_TIMESTAMP"]) + 1
        wait_for(lambda: [e for e in svc.journal(after=since) if "BATCH_ID" in e], 30, "per-batch lines again")
        check(True, "back at INFO the per-batch lines return")

        log("-- a bad configuration file")
        bad = dict(settings, TRANSMITTER_BATCH_SIZE="lots")
        svc.write_config(bad)
        mark = m.journal_mark()
        m.systemctl("reload", svc.SERVICE)
        refused = wait_for(lambda: [e for e in svc.journal(after=mark) if
                                    str(e.get("MESSAGE", "")).startswith("Reload failed")], 20, "the refusal")
        msg = refused[0]["MESSAGE"]
        check("TRANSMITTER_BATCH_SIZE=lots" in msg and refused[0]["PRIORITY"] == "3",
              f"refused at error level, naming the setting: {msg!r}")
        time.sleep(2)
        check(svc.active_state() == "active" and m.prop(svc.SERVICE, "SubState") == "running",
              "the service goes on running (READY=1 after the failed reload too)")
        n0 = len(case.receiver.batches())
        wait_for(lambda: len(case.receiver.batches()) >= n0 + 3, 30, "3 more batches")
        check(all(b["events"] <= CHUNK for b in case.receiver.batches()[n0:]), "with the old batch size")
        svc.write_config(settings)
    finally:
        ids = pub.stop()
        poller.halt.set()
        poller.join(10)

    log(f"published {len(ids)} events")
    events = case.wait_delivered(ids, timeout=120)
    counts = case.receiver.counts()
    check(not events["duplicates"] and counts["duplicates"] == 0, "no event arrived twice")
    check(counts["unique_events"] == len(ids), f"every event arrived ({counts['unique_events']} of {len(ids)})")
    rejected = [r for r in case.receiver.requests() if r["status"] != 200]
    check(all(r["status"] == 401 and r["token"] == "token-A" for r in rejected),
          f"the only refusals (if any) are of the revoked token ({len(rejected)})")
    case.wait_settled()
    check(svc.main_pid() == pid and listen_inode(pid) == sock,
          f"the same main process and listen socket throughout ({pid}, {sock})")
    check(poller.failed == 0 and poller.ok > 20,
          f"/health answered every time ({poller.ok} ok, {poller.failed} failed)")
    check(m.prop(svc.SERVICE, "NRestarts") == "0", "no restart")


if __name__ == "__main__":
    import sys

    sys.exit(run_case("systemd_reload", body))
