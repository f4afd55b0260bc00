#!/usr/bin/env python3
"""A destination outage on a quorum queue with a delivery limit of 4 (architecture §12): the
destination answers 503 for 90 s with quick retries and a quick circuit breaker. An outage must
not spend the delivery limit: nothing is returned to the queue, nothing is dead-lettered (by the
daemon or by the broker), and once the destination is back everything is delivered."""

import re
import time

from harness import check, log, main

N = 2000
LIMIT = 4
OUTAGE_S = 90


def body(case):
    case.publish(0, declare=True, extra=["--queue-type", "quorum"])
    case.devenv.rabbitmqctl("set_policy", f"limit-{case.queue}", f"^{re.escape(case.queue)}$",
                            f'{{"delivery-limit":{LIMIT}}}', "--apply-to", "queues")
    ids = case.publish(N, prefix="out")
    case.receiver.fault(status=503, for_s=OUTAGE_S)
    t0 = time.monotonic()
    t = case.transmitter(RABBITMQ_QUEUE_TYPE="quorum", RABBITMQ_DELIVERY_LIMIT=LIMIT, BATCH_SIZE=50,
                         BATCH_INTERVAL_S=1, RETRY_MAX_ATTEMPTS=2, RETRY_BACKOFF_MULTIPLIER=1, RETRY_MAX_DELAY_S=1,
                         CIRCUIT_FAILURE_THRESHOLD=3, CIRCUIT_RESET_TIMEOUT_S=2)
    t.start()
    t.wait_log(r"^<3>Circuit breaker opened", 30)
    case.wait_delivered(ids, timeout=OUTAGE_S + 120)
    log(f"everything delivered {time.monotonic() - t0:.0f} s after the start, the outage lasting {OUTAGE_S} s")
    case.wait_settled(timeout=60)
    fig = case.account(ids)
    check(fig["dead_letter_queue"] == 0, "nothing dead-lettered")
    st = t.stats()
    check(st["events"]["dead_lettered"]["total"] == 0, "stats: nothing dead-lettered")
    check(st["events"]["requeued"] == 0, f"nothing returned to the queue ({st['events']['requeued']})")
    check(st["events"]["max_delivery_count"] == 0,
          f"no message came back with a delivery count ({st['events']['max_delivery_count']})")
    check(st["batches"]["held"] > 0, f"batches were held through the outage ({st['batches']['held']})")
    requests = case.receiver.counts()["requests_by_status"]
    log(f"FIGURE limit_outage: {fig}; requests {requests}; held {st['batches']['held']}, split "
        f"{st['batches']['split']}, circuit opened {st['circuit_breaker']['opened_total']} times")
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("limit_outage", body)
