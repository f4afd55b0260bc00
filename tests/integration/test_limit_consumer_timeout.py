#!/usr/bin/env python3
"""The broker's consumer timeout (architecture §12, issue 12), on a broker of the test's own (its
consumer_timeout is changed): consumer_timeout 60 s (rabbitmqctl eval, the broker checks about once
a minute), RABBITMQ_CONSUMER_TIMEOUT_S=60, the destination answering 503 for 3 minutes. The daemon
holds its batches through the outage (the circuit opens) but never a delivery past its hold limit
(25 s here: 60 s less the request timeout and 5 s): it returns them to the queue itself, logged
once per episode and counted. Before, the broker closed the channel (406 PRECONDITION_FAILED -
delivery acknowledgement on channel 1 timed out). The broker's log shows no consumer timeout, the
connection is never lost, nothing is dead-lettered and every event is delivered after."""

import re
import time

import harness
from harness import RabbitBroker, check, log

N = 2000
OUTAGE_S = 180
TIMEOUT_S = 60


def body(case, broker):
    broker.rabbitmqctl("eval", f"application:set_env(rabbit, consumer_timeout, {TIMEOUT_S * 1000}).")
    check(str(TIMEOUT_S * 1000) in broker.rabbitmqctl("eval", "application:get_env(rabbit, consumer_timeout)."),
          f"the broker's consumer_timeout is {TIMEOUT_S} s")
    case.declare()
    ids = case.publish(N, prefix="ct")
    case.receiver.fault(status=503, for_s=OUTAGE_S)
    t0 = time.monotonic()
    t = case.transmitter(RABBITMQ_CONSUMER_TIMEOUT_S=TIMEOUT_S, BATCH_INTERVAL_S=1, CIRCUIT_RESET_TIMEOUT_S=10)
    t.start()
    t.wait_log(r"^<3>Circuit breaker opened", 60)
    t.wait_log(r"^<4>\d+ event\(s\) held for 25 s come near the broker's consumer timeout", 60)
    case.wait_delivered(ids, timeout=OUTAGE_S + 120)
    log(f"everything delivered {time.monotonic() - t0:.0f} s after the start, the outage lasting {OUTAGE_S} s")
    case.wait_settled(timeout=60)

    fig = case.account(ids)
    st = t.stats()
    returned = st["events"]["returned_before_consumer_timeout"]
    requests = case.receiver.counts()["requests_by_status"]
    log(f"FIGURE limit_consumer_timeout: {fig}; returned before the consumer timeout {returned} times (events), "
        f"requeued {st['events']['requeued']}, held {st['batches']['held']} batches, requests {requests}")
    check(fig["dead_letter_queue"] == 0 and st["events"]["dead_lettered"]["total"] == 0, "nothing dead-lettered")
    check(returned > 0, f"deliveries returned before the consumer timeout ({returned})")
    check(t.metric("transmitter_consumer_timeout_returns_total") == returned,
          "transmitter_consumer_timeout_returns_total counts them")
    episodes = len(re.findall(r"come near the broker's consumer timeout", t.log_text()))
    log(f"{episodes} episode(s) of returns logged")
    check("Connection to RabbitMQ lost" not in t.log_text(), "the connection was never lost")
    broker_log = broker.log_text()
    # 3.10 closes the channel with "delivery acknowledgement on channel 1 timed out"; 4.3 logs
    # "consumer timeout" warnings instead.
    check(not re.search(r"acknowledgement on channel \d+ timed out|consumer timeout", broker_log, re.I),
          "the broker's log shows no consumer timeout")
    check(st["rabbitmq"]["reconnects"] == 0, "no reconnect")
    check(t.stop() == 0, "stops cleanly")


if __name__ == "__main__":
    raise SystemExit(harness.run_own("limit_consumer_timeout", RabbitBroker, body))
