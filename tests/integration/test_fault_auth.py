#!/usr/bin/env python3
"""The destination refuses the token with 401 (architecture §5): retriable, never dead-lettered; logged at
error level as a token problem; the circuit opens; a batch whose attempts are spent while nothing
gets through is held, not returned to the queue (§12: an outage must not spend the delivery
limit). Once the token file is fixed and SIGHUP sent, everything is delivered with the new token."""

import os
import signal
import time

from harness import check, log, main

N = 500


def body(case):
    token_file = os.path.join(case.workdir, "transmitter-token")
    with open(token_file, "w") as f:
        f.write("wrong-token\n")
    case.declare()
    ids = case.publish(N, prefix="auth")
    t = case.transmitter(AUTH_TOKEN_FILE=token_file, BATCH_SIZE=50, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=2,
                         RETRY_MAX_ATTEMPTS=2, RETRY_BACKOFF_MULTIPLIER=1, RETRY_MAX_DELAY_S=1,
                         CIRCUIT_FAILURE_THRESHOLD=3, CIRCUIT_RESET_TIMEOUT_S=2, SHUTDOWN_TIMEOUT_S=20)
    t.start()
    t.wait_log(r"^<3>Circuit breaker opened", 30)
    t.wait_log(r"^<3>Batch \S+ attempt 1/2 failed: HTTP 401.*fix it and reload", 5)
    st, ready = t.ready()
    check(st == 503 and ready["circuit_breaker"] in ("open", "half_open"), f"/ready is 503 ({ready})")
    # Long enough for batches to spend their attempts: they are held, not requeued.
    t.wait_log(r"^<3>Batch \S+ failed after 2 attempt\(s\): HTTP 401.*nothing else gets through, so its \d+ "
               r"events stay here", 30)
    time.sleep(3)
    check(t.stats()["events"]["requeued"] == 0, "nothing was returned to the queue while the token was wrong")
    check(t.stats()["batches"]["held"] >= 1, f"held batches counted ({t.stats()['batches']['held']})")
    counts = case.receiver.counts()
    check(counts["batches"] == 0 and counts["requests_by_status"].get("401", 0) >= 3,
          f"nothing accepted with the wrong token ({counts['requests_by_status']})")
    check(case.queue_counts(case.dead_queue) == (0, 0), "nothing dead-lettered while the token was wrong")
    check(t.stats()["events"]["dead_lettered"]["total"] == 0, "stats: nothing dead-lettered")

    # SIGTERM while the circuit is open: what waits for it goes back to the queue at once, not at
    # the shutdown timeout; nothing is lost across the restart.
    t0 = time.monotonic()
    rc = t.stop()
    took = time.monotonic() - t0
    check(rc == 0 and took < 10, f"SIGTERM with the circuit open: exit status {rc} after {took:.1f} s "
          "(SHUTDOWN_TIMEOUT_S is 20)")
    check("Stopped: everything in flight was settled" in t.log_text(), "a clean stop, everything settled")
    check(case.queue_counts() == (N, 0), f"all {N} events back in the queue ({case.queue_counts()})")
    mark = t.log_offset()
    t.start()
    t.wait_log(r"^<3>Circuit breaker opened", 30, since=mark)

    with open(token_file, "w") as f:
        f.write("test-token\n")
    mark = t.log_offset()
    t.signal(signal.SIGHUP)
    t.wait_log(r"Configuration reloaded", 10, since=mark)
    case.wait_delivered(ids, timeout=60)
    t.wait_log(r"^<5>Circuit breaker closed", 15, since=mark)
    check(all(b["token"] == "test-token" for b in case.receiver.batches()), "every accepted batch had the new token")
    text = t.log_text()
    check("wrong-token" not in text and "test-token" not in text, "the token never appears in the log")

    case.wait_settled()
    fig = case.account(ids)
    check(fig["dead_letter_queue"] == 0, "nothing dead-lettered")
    rows = case.rows()
    failed401 = [r for r in rows if r["http_status"] == "401"]
    log(f"rows: {len(rows)}; rows that ended 'failed' with 401 and were re-formed later: "
        f"{sum(1 for r in rows if r['status'] == 'sent' and int(r['retry_count']) >= 2)}")
    check(all(r["status"] == "sent" for r in rows if r["id"] in {b["batch_id"] for b in case.receiver.batches()}),
          "every accepted batch's row is 'sent'")
    check(not failed401 or all(r["status"] == "failed" for r in failed401), "401 rows are 'failed'")
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("fault_auth", body)
