#!/usr/bin/env python3
"""A poison event on a quorum queue with a delivery limit (architecture §12): the destination answers
500 to the one batch holding a marked event, and accepts everything else. The failing batch is
split down to that event alone, which goes back to the queue until its x-delivery-count reaches
RABBITMQ_DELIVERY_LIMIT - 1; then the daemon dead-letters it itself, reason retries_exhausted
with its last status, before the broker would drop it. Every other event is delivered. The
marked event is the last one published, so that it ends alone, with no other traffic to show
that the destination is well: the hardest case."""

import re

from harness import check, log, main

N = 1000
LIMIT = 4


def body(case):
    case.publish(0, declare=True, extra=["--queue-type", "quorum"])
    case.devenv.rabbitmqctl("set_policy", f"limit-{case.queue}", f"^{re.escape(case.queue)}$",
                            f'{{"delivery-limit":{LIMIT}}}', "--apply-to", "queues")
    ids = case.publish(N, prefix="poi", extra=["--marker", "POISON", "--marker-every", str(N)])
    poison = ids[-1]
    case.receiver.fault(reject_marker="POISON", status=500)
    t = case.transmitter(RABBITMQ_QUEUE_TYPE="quorum", RABBITMQ_DELIVERY_LIMIT=LIMIT, BATCH_SIZE=50,
                         BATCH_INTERVAL_S=1, RETRY_MAX_ATTEMPTS=2, RETRY_BACKOFF_MULTIPLIER=1, RETRY_MAX_DELAY_S=1,
                         CIRCUIT_FAILURE_THRESHOLD=3, CIRCUIT_RESET_TIMEOUT_S=2)
    t.start()

    good = [i for i in ids if i != poison]
    case.wait_delivered(good, timeout=120)
    log("every event but the marked one delivered")
    case.wait_settled(timeout=240)
    fig = case.account(ids, expect_dead=[poison])
    check(fig["dead_letter_queue"] == 1, f"exactly one message dead-lettered ({fig['dead_letter_queue']})")
    dead = case.dead_letters()[0]
    h = dead["headers"]
    check(dead["event_id"] == poison, f"it is the marked event {poison}")
    check(h.get("x-transmitter-reason") == "retries_exhausted",
          f"reason retries_exhausted ({h.get('x-transmitter-reason')})")
    check(str(h.get("x-transmitter-http-status")) == "500", f"with its last status, 500 ({h})")
    check("x-death" not in h or all(d.get("reason") != "delivery_limit" for d in h["x-death"]),
          "dead-lettered by the daemon, not by the broker's delivery limit")

    st = t.stats()
    check(st["events"]["dead_lettered"]["by_reason"].get("retries_exhausted") == 1,
          f"stats: one retries_exhausted ({st['events']['dead_lettered']['by_reason']})")
    check(st["events"]["max_delivery_count"] == LIMIT - 1,
          f"stats: the highest x-delivery-count seen is {LIMIT - 1} ({st['events']['max_delivery_count']})")
    check(t.metric("transmitter_message_returns_count") >= N,
          "transmitter_message_returns counts every delivery")
    rows = case.rows()
    check(not [r for r in rows if r["status"] in ("pending", "sending")], "no row left pending or sending")
    log(f"FIGURE limit_poison: {fig}; {st['batches']['split']} splits, {st['events']['requeued']} returns of "
        f"the marked event, {len(rows)} rows")
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("limit_poison", body)
