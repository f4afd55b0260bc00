#!/usr/bin/env python3
"""transmitter dead-letters on a quorum dead-letter queue (RABBITMQ_QUEUE_TYPE=quorum): list and a
replay of some leave the others in their order. A quorum queue requeues a closed channel's
messages in any order, and returned ones in order only 32 at a time; the tool returns them in
windows (src/amqp/dead-letter-queue.c). Also: the warning once the queue has counted many
deliveries of a dead letter (x-delivery-count), which a delivery limit would turn into a loss."""

import json

from harness import check, log, main, wait_for

N = 150


def order(case):
    return [m["event_id"] for m in case.dead_letters()]


def body(case):
    t = case.transmitter(RABBITMQ_QUEUE_TYPE="quorum", BATCH_SIZE=10, BATCH_INTERVAL_S=1,
                         CIRCUIT_FAILURE_THRESHOLD=10000)
    t.start()
    t.wait_ready()
    case.receiver.fault(reject_marker="QQ", status=404)
    ids = case.publish(N, prefix="qq", extra=["--marker", "QQ"])
    wait_for(lambda: case.queue_counts(case.dead_queue) == (N, 0), 120, f"{N} dead letters", interval=1)
    check(t.stop() == 0, "daemon stopped: the replayed messages stay in its queue")
    before = order(case)
    check(sorted(before) == sorted(ids), f"the {N} events are in the quorum dead-letter queue")
    check(order(case) == before, "reading it (amqp-get) keeps the order")

    rc, out, _ = case.cli("dead-letters", "list", "--json", "--limit", "0")
    check(rc == 0 and [m["event_id"] for m in json.loads(out)["messages"]] == before, "list sees them in order")
    check(order(case) == before, f"list leaves all {N} in their order")

    pick = before[5::7]
    args = [a for i in pick for a in ("--event-id", i)]
    rc, out, _ = case.cli("dead-letters", "replay", *args)
    check(rc == 0 and out.startswith(f"Replayed {len(pick)} dead letters"), f"replay of {len(pick)} by event id")
    check(order(case) == [i for i in before if i not in pick], "the others stay, in their order")
    check(sorted(m["event_id"] for m in case.queue_messages(case.queue)) == sorted(pick),
          "the replayed ones are in the main queue")

    counts = [m["headers"].get("x-delivery-count", 0) for m in case.dead_letters()]
    while max(counts) < 10:
        case.cli("dead-letters", "list", "--limit", "1")
        counts = [m["headers"].get("x-delivery-count", 0) for m in case.dead_letters()]
    rc, out, err = case.cli("dead-letters", "list", "--limit", "1")
    check(rc == 0 and "warning: " in err and "delivery-limit -1" in err,
          f"x-delivery-count {max(counts) + 1}: list warns about delivery limits")
    log(f"FIGURE dead_letters_quorum: {N} dead letters, {len(pick)} replayed, order kept")


if __name__ == "__main__":
    main("dead_letters_quorum", body)
