#!/usr/bin/env python3
"""10,000 events from RabbitMQ to the HTTPS receiver: each exactly once, in batches of at most
BATCH_SIZE, each a valid gzip + JSON envelope with the right headers and token (the receiver
refuses anything else); the queue ends empty and fully acked; one 'sent' row per batch. With
BATCH_TIMELINE on, each batch's timeline is logged once, every span up to its ack on the wire
measured."""

import re
import time

from harness import check, log, main, wait_for

N = 10_000
BATCH_SIZE = 100


def body(case):
    case.declare()
    ids = case.publish(N, prefix="flow")
    t = case.transmitter(BATCH_SIZE=BATCH_SIZE, BATCH_INTERVAL_S=2, BATCH_TIMELINE="true")
    t0 = time.monotonic()
    t.start()
    events = case.wait_delivered(ids, timeout=120)
    elapsed = time.monotonic() - t0
    log(f"FIGURE flow: {N} events delivered in {elapsed:.2f} s from start = {N / elapsed:.0f} events/s")

    counts = case.receiver.counts()
    check(counts["rejected"] == 0, f"the receiver refused no request ({counts['requests_by_status']})")
    check(counts["duplicates"] == 0 and not events["duplicates"], "no event arrived twice")
    check(counts["unique_events"] == N, f"the receiver has exactly {N} distinct events")
    batches = case.receiver.batches()
    check(all(b["events"] <= BATCH_SIZE for b in batches), f"every batch holds at most {BATCH_SIZE} events")
    check(all(b["idempotency_key"] == b["batch_id"] for b in batches), "Idempotency-Key equals batch_id")
    check(all(b["token"] == "test-token" for b in batches), "every batch carried the token")

    case.wait_settled()
    check(True, "queue has 0 ready and 0 unacked")

    rows = case.sql("SELECT id, status, item_count, payload_size FROM transmitter.batches")
    by_id = {r[0]: r for r in rows}
    check(len(rows) == len(batches), f"one row per batch ({len(rows)} rows, {len(batches)} batches)")
    check(all(r[1] == "sent" for r in rows), "every row is 'sent'")
    check(sum(int(r[2]) for r in rows) == N, f"item_count sums to {N}")
    check(all(b["batch_id"] in by_id and int(by_id[b["batch_id"]][3]) == b["compressed_bytes"] for b in batches),
          "payload_size equals the compressed bytes the receiver got")

    # The last batches' lines wait for the AMQP thread's ack report, sent within its idle wait (1 s).
    timeline = re.compile(r"Batch (\S+) timeline \(ms\): fill [0-9.]+ flush [0-9.]+ encode [0-9.]+ slot [0-9.]+ "
                          r"http [0-9.]+ commit [0-9.]+ ack [0-9.]+ wire [0-9.]+ refill (?:[0-9.]+|-) window [0-9.]+$",
                          re.M)
    wait_for(lambda: len(timeline.findall(t.log_text())) >= len(batches), 10, "a timeline line for every batch")
    lines = timeline.findall(t.log_text())
    check(sorted(lines) == sorted(b["batch_id"] for b in batches),
          f"one complete timeline line per batch ({len(lines)} lines, {len(batches)} batches)")

    stats = t.stats()
    check(stats["events"]["received"] == N and stats["events"]["sent"] == N, "stats count every event")
    check(stats["batches_sent"] == len(batches), "stats batches_sent equals the receiver's batches")

    rc = t.stop()
    check(rc == 0, f"SIGTERM: exit status 0 (got {rc})")


if __name__ == "__main__":
    main("flow", body)
