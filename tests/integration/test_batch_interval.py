#!/usr/bin/env python3
"""The age rule: an idle transmitter sends nothing; a lone event arrives BATCH_INTERVAL_S after
being published, 0.1 s more at most (the way through broker, daemon and receiver; a timer of
sd-event's default accuracy could add up to 0.25 s)."""

import time

from harness import check, log, main

INTERVAL = 2


def body(case):
    t = case.transmitter(BATCH_SIZE=100, BATCH_INTERVAL_S=INTERVAL)
    t.start()
    t.wait_ready()
    time.sleep(INTERVAL + 1)
    check(case.receiver.counts()["requests"] == 0, f"idle for {INTERVAL + 1} s: no request was made")

    published = time.time()
    ids = case.publish(1, prefix="lone")
    case.wait_delivered(ids, timeout=INTERVAL + 5)
    batch = case.receiver.batches()[0]
    delay = batch["received_at"] - published
    log(f"FIGURE lone event arrived {delay:.2f} s after publishing (interval {INTERVAL} s)")
    check(batch["events"] == 1, "the lone event travelled in a batch of its own")
    check(delay <= INTERVAL + 0.1, f"it arrived within BATCH_INTERVAL_S + 0.1 s ({delay:.2f} s)")
    check(delay >= INTERVAL - 0.5, f"it waited for the interval rather than going at once ({delay:.2f} s)")

    time.sleep(INTERVAL + 1)
    check(case.receiver.counts()["requests"] == 1, "idle again: no further request")
    check(t.stop() == 0, "exit status 0")


if __name__ == "__main__":
    main("batch-interval", body)
