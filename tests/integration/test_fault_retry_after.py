#!/usr/bin/env python3
"""Retry-After (architecture §5): a 429 with "Retry-After: 2" makes the next attempt come no earlier
than 2 s later (the backoff alone would be 1 s); an HTTP-date is honoured as well; a value past
RETRY_MAX_DELAY_S is capped at it. Every attempt carries the same batch id (Idempotency-Key)."""

import email.utils
import math
import time

from harness import check, log, main, wait_for

MAX_DELAY_S = 5
# Timer slack, the receiver recording a request a little after it was sent, a loaded machine.
EARLY = 0.05
LATE = 3.0


def body(case):
    case.declare()
    ids = case.publish(10, prefix="ra")
    # One batch, one request at a time; the rules apply in order, one request each.
    case.receiver.fault(status=429, count=1, retry_after="2")
    t = case.transmitter(BATCH_SIZE=10, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=1, RETRY_MAX_ATTEMPTS=5,
                         RETRY_BACKOFF_MULTIPLIER=1, RETRY_MAX_DELAY_S=MAX_DELAY_S, CIRCUIT_FAILURE_THRESHOLD=10)
    t.start()
    # The date is set once the first attempt is in, so that it lies within the cap of the wait
    # that the second attempt's answer starts (about 2 s later).
    wait_for(lambda: case.receiver.requests(), 30, "the first attempt")
    date_at = math.ceil(time.time()) + 4
    case.receiver.fault(status=503, count=1, retry_after=email.utils.formatdate(date_at, usegmt=True))
    case.receiver.fault(status=429, count=1, retry_after="3600")
    check(len(case.receiver.requests()) == 1, "the date rule was in place before the second attempt")
    case.wait_delivered(ids, timeout=60)

    reqs = sorted(case.receiver.requests(), key=lambda r: r["time"])
    log("requests: " + ", ".join(f"{r['status']} at +{r['time'] - reqs[0]['time']:.3f}" for r in reqs))
    check([r["status"] for r in reqs] == [429, 503, 429, 200], "four attempts: 429, 503, 429, then 200")
    keys = {r["idempotency_key"] for r in reqs}
    check(len(keys) == 1 and reqs[-1]["batch_id"] in keys, f"one batch id across every attempt ({keys})")

    g1 = reqs[1]["time"] - reqs[0]["time"]
    check(2 - EARLY <= g1 <= 2 + LATE, f"Retry-After: 2 honoured: the next attempt came {g1:.3f} s later (>= 2)")
    check(reqs[2]["time"] >= date_at - EARLY and reqs[2]["time"] <= date_at + LATE,
          f"Retry-After as an HTTP-date honoured: attempt 3 came {reqs[2]['time'] - date_at:+.3f} s from that date")
    g3 = reqs[3]["time"] - reqs[2]["time"]
    check(MAX_DELAY_S - EARLY <= g3 <= MAX_DELAY_S + LATE,
          f"Retry-After: 3600 capped at RETRY_MAX_DELAY_S={MAX_DELAY_S}: {g3:.3f} s")

    text = t.log_text()
    check("attempt 1/5 failed: HTTP 429" in text and "retrying in 2000 ms" in text,
          "the log names the status and the wait taken from Retry-After")
    case.wait_settled()
    fig = case.account(ids)
    check(fig["dead_letter_queue"] == 0 and fig["duplicated"] == 0, "nothing dead-lettered, nothing duplicated")
    rows = case.rows()
    check(len(rows) == 1 and rows[0]["status"] == "sent" and rows[0]["retry_count"] == "3",
          f"one row, 'sent', retry_count 3 ({rows})")
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("fault_retry_after", body)
