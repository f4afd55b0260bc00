#!/usr/bin/env python3
"""basic.cancel from the broker (architecture §12, issue 12): the queue is deleted under a consuming
daemon, twice. RabbitMQ cancels the consumer (consumer_cancel_notify); AMQP's basic.cancel says no
why, so the daemon looks the queue up, logs that it was deleted, declares the topology again (the
queue comes back, empty, with its binding) and consumes again on the same connection. Events
published afterwards are delivered.

The second time the daemon holds deliveries when the queue goes (the destination answers slowly):
they are still delivered, their acks go to a channel whose queue is gone and are taken without a
channel error, and nothing is lost. Every event id is accounted for: those published before each
deletion were all with the daemon by then (fewer than the prefetch window)."""

import re

from harness import check, log, main, wait_for

HELD = 200  # two batches, on the wire (prefetch window 300): all with the daemon when the queue goes


def delete_queue(case, t, expect_cancels):
    mark = t.log_offset()
    case.broker.rabbitmqctl("delete_queue", case.queue)
    log(f"deleted {case.queue}")
    m = t.wait_log(r"^<4>RabbitMQ at (\S+) cancelled the consumer of " + re.escape(case.queue) +
                   r": queue \S+ was deleted(; the oldest delivery held arrived \d+ s ago)?; declaring the topology "
                   r"and consuming again$", 15, since=mark)
    log(f"the daemon said: {m.group(0)[3:]}")
    wait_for(lambda: case.queue_counts() is not None, 15, "the queue declared again")
    wait_for(lambda: t.stats()["rabbitmq"]["consumer_cancels"] == expect_cancels, 10,
             f"rabbitmq.consumer_cancels {expect_cancels} in /api/v1/stats")
    return mark


def body(case):
    case.declare()
    ids = case.publish(1000, prefix="before")
    t = case.transmitter(BATCH_SIZE=100, BATCH_INTERVAL_S=1).start()
    case.wait_delivered(ids, timeout=60)
    case.wait_settled()

    # 1. Nothing held: deleted, declared again, consumed again.
    mark = delete_queue(case, t, 1)
    after = case.publish(1000, prefix="after")
    case.wait_delivered(after, timeout=60)
    case.wait_settled()
    ids += after

    # 2. Deliveries held: two requests answered only after the queue is gone.
    case.receiver.fault(delay_s=6, count=2)
    held = case.publish(HELD, prefix="held")
    wait_for(lambda: case.queue_counts() == (0, HELD), 20, f"all {HELD} events with the daemon, unacked")
    delete_queue(case, t, 2)
    case.receiver.clear_faults()
    after2 = case.publish(1000, prefix="after2")
    case.wait_delivered(held + after2, timeout=60)
    case.wait_settled()
    ids += held + after2

    fig = case.account(ids)
    log(f"FIGURE broker_cancel: queue deleted twice under the daemon, {fig['published']} events, "
        f"{fig['duplicated']} duplicated")
    text = t.log_since(mark)
    check("Connection to RabbitMQ lost" not in text, "the same connection throughout: no channel error, no reconnect")
    st = t.stats()
    check(st["rabbitmq"]["reconnects"] == 0, "no reconnect")
    check(t.metric("transmitter_broker_consumer_cancels_total") == 2, "transmitter_broker_consumer_cancels_total 2")
    check(t.ready()[0] == 200, "/ready 200")
    check(t.stop() == 0, "stops cleanly")


if __name__ == "__main__":
    main("broker_cancel", body)
