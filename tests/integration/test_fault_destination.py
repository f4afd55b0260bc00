#!/usr/bin/env python3
"""Transport faults of the destination (architecture §5: connection errors, TLS errors and timeouts are
retriable): (1) slower than REQUEST_TIMEOUT_S, (2) its port closed, (3) a certificate from another
CA. Each is retried and logged with a clear reason, nothing is dead-lettered, and everything is
delivered once the destination is healthy again. The receiver is restarted between phases (its
records start empty), so each phase is accounted for on its own."""

import os
import time

from harness import check, log, main, wait_for

REQUEST_TIMEOUT_S = 2


def phase(case, t, name, prefix, n, reason_rx, break_it, heal, hold_s):
    mark = t.log_offset()
    t0 = time.monotonic()
    break_it()
    ids = case.publish(n, prefix=prefix)
    m = t.wait_log(r"^<4>Batch \S+ attempt \d/\d failed: " + reason_rx + r".*; retrying in", 30, since=mark)
    log(f"{name}: logged as: {m.group(0)}")
    time.sleep(hold_s)
    check(case.queue_counts(case.dead_queue) == (0, 0), f"{name}: nothing dead-lettered")
    heal()
    case.wait_delivered(ids, timeout=60)
    case.wait_settled(timeout=60)
    fig = case.account(ids, name=f"fault_destination {name}")
    check(fig["dead_letter_queue"] == 0, f"{name}: nothing dead-lettered")
    log(f"{name}: {time.monotonic() - t0:.1f} s")
    return fig


def body(case):
    tls = case.devenv["TLS_DIR"]
    r = case.receiver
    case.declare()
    t = case.transmitter(BATCH_SIZE=50, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=2, REQUEST_TIMEOUT_S=REQUEST_TIMEOUT_S,
                         CONNECT_TIMEOUT_S=2, RETRY_MAX_ATTEMPTS=3, RETRY_BACKOFF_MULTIPLIER=1, RETRY_MAX_DELAY_S=1,
                         CIRCUIT_FAILURE_THRESHOLD=5, CIRCUIT_RESET_TIMEOUT_S=2)
    t.start()
    t.wait_ready()

    # (1) The first requests take twice REQUEST_TIMEOUT_S (and are accepted late: duplicates).
    f1 = phase(case, t, "slow", "slow", 200, r"Timeout was reached",
               lambda: r.fault(delay_s=2 * REQUEST_TIMEOUT_S, count=3), lambda: None, 0)
    # The receiver records a held request once it is done with it, after the client gave up.
    wait_for(lambda: sum(1 for q in r.requests() if q["fault"]) == 3, 4 * REQUEST_TIMEOUT_S,
             "the three held requests in the receiver's log")
    check(True, "three requests were held longer than REQUEST_TIMEOUT_S, each timed out and was retried")

    # (2) Nothing listens on the port.
    f2 = phase(case, t, "port closed", "closed", 200, r"Couldn't connect to server.*\(Connection refused\)",
               r.stop, r.start, 4)

    # (3) A certificate from an unrelated CA: peer verification fails.
    def other_ca():
        r.stop()
        r.start(cert=os.path.join(tls, "other-server.pem"), key=os.path.join(tls, "other-server.key"))

    def right_ca():
        r.stop()
        r.start()

    f3 = phase(case, t, "other CA", "ca", 200, r"SSL peer certificate.*(unable to get local issuer|verif)",
               other_ca, right_ca, 4)
    stats = t.stats()
    check(stats["last_error"] and stats["last_error"]["http_status"] is None, "stats keep the last transport error")
    check(t.stats()["events"]["dead_lettered"]["total"] == 0, "stats: nothing dead-lettered")
    rows = case.rows()
    errors = {r["error_message"] for r in rows if r["status"] == "failed"}
    log(f"failed rows' reasons: {sorted(e[:80] for e in errors)}")
    log(f"FIGURE fault_destination: slow {f1}; port closed {f2}; other CA {f3}")
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("fault_destination", body)
