#!/usr/bin/env python3
"""`systemctl --user stop transmitter` while events flow and requests are in flight (the
receiver answers slowly): the service drains (architecture §9) and exits 0 well within TimeoutStopSec;
events published meanwhile wait in the broker; after the next start every event published has
arrived, exactly once, and the queue is settled."""

import threading
import time

from harness import check, log, wait_for
from systemd_env import TransmitterService, case_settings, run_case, timespan_s

N = 3000


def body(case, m):
    case.declare()
    port = int(case.base_settings["TRANSMITTER_SERVER_PORT"])
    settings = case_settings(case, BATCH_SIZE=50, BATCH_INTERVAL_S=2)
    svc = TransmitterService(m, settings, port, token_file=case.receiver.token_file).install()
    m.systemctl("start", svc.SOCKET, svc.SERVICE)
    m.wait_prop(svc.SERVICE, "StatusText", lambda v: "broker connected, database connected" in v, 30)
    timeout_stop_s = timespan_s(m.prop(svc.SERVICE, "TimeoutStopUSec"))
    log(f"TimeoutStopSec={timeout_stop_s}s")

    published = {}

    def publish():
        published["ids"] = case.publish(N, prefix="stp", rate=400)

    pub = threading.Thread(target=publish, daemon=True)
    pub.start()
    wait_for(lambda: case.receiver.counts()["unique_events"] >= 500, 60, "500 events at the receiver")

    # The next requests take 3 s to answer: they are on the wire when SIGTERM comes.
    case.receiver.fault(delay_s=3, count=2)
    time.sleep(0.5)
    mark = m.journal_mark()
    t0 = time.monotonic()
    m.systemctl("stop", svc.SERVICE, timeout=timeout_stop_s + 30)
    elapsed = time.monotonic() - t0
    show = m.show(svc.SERVICE, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    log(f"FIGURE stop: {elapsed:.2f} s from `systemctl stop` to stopped, during a flow of 400 events/s")
    check(show["ActiveState"] == "inactive" and show["Result"] == "success" and show["ExecMainStatus"] == "0",
          f"exit status 0, result success ({show})")
    check(elapsed < timeout_stop_s - 10, f"well within TimeoutStopSec={timeout_stop_s}s ({elapsed:.1f} s)")
    msgs = [str(e.get("MESSAGE", "")) for e in svc.journal(after=mark)]
    check(any(x.startswith("Received Terminated: stopping consumption") for x in msgs), "SIGTERM started the drain")
    check(any(x.startswith("Stopped: everything in flight was settled") for x in msgs),
          "which settled everything in flight before exiting")
    at_stop = case.receiver.counts()["unique_events"]
    log(f"{at_stop} events at the receiver when it stopped")

    pub.join(300)
    check("ids" in published, "the publisher confirmed every event")
    ids = published["ids"]
    ready, unacked = case.queue_counts()
    check(unacked == 0 and ready == N - at_stop,
          f"while it is stopped the rest waits in the broker ({ready} ready, {unacked} unacked)")

    log("-- next start")
    m.systemctl("start", svc.SERVICE)
    events = case.wait_delivered(ids, timeout=180)
    counts = case.receiver.counts()
    check(counts["unique_events"] == N, f"after the next start every event published has arrived ({N})")
    check(counts["duplicates"] == 0 and not events["duplicates"], "none twice")
    case.wait_settled()
    check(True, "the queue is empty and nothing is unacked")
    rows = case.sql("SELECT status, count(*), sum(item_count) FROM transmitter.batches GROUP BY status")
    check(rows == [["sent", str(len(case.receiver.batches())), str(N)]], f"every row 'sent', {N} events: {rows}")


if __name__ == "__main__":
    import sys

    sys.exit(run_case("systemd_stop", body))
