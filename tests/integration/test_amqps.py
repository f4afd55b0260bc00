#!/usr/bin/env python3
"""amqps://: the consumer verifies the broker's certificate against RABBITMQ_CA_FILE (peer and
host name) and delivers as over plain AMQP; a broker certificate from another CA is refused
with a clear reason and nothing is consumed."""

import sys
import time

from harness import Devenv, check, log, main
import os


def body(case):
    tls_url = case.devenv.env.get("RABBITMQ_TLS_URL")
    tls = case.devenv["TLS_DIR"]

    case.declare()
    ids = case.publish(500, prefix="tls")
    bad = case.transmitter(RABBITMQ_URL=tls_url, RABBITMQ_CA_FILE=os.path.join(tls, "other-ca.pem"))
    bad.start()
    time.sleep(3)
    check(case.receiver.counts()["events"] == 0, "with the wrong CA nothing is consumed")
    check(case.queue_counts() == (500, 0), "the events stay ready in the queue")
    text = bad.log_text()
    check("Cannot connect to RabbitMQ" in text and "discovery:discovery" not in text,
          "the failure is logged, without the password")
    check(bad.stop() == 0, "exit status 0")

    good = case.transmitter(RABBITMQ_URL=tls_url, RABBITMQ_CA_FILE=os.path.join(tls, "ca.pem"),
                            BATCH_INTERVAL_S=1)
    good.start()
    good.wait_ready()
    case.wait_delivered(ids, timeout=60)
    case.wait_settled()
    log(f"FIGURE amqps: {len(ids)} events delivered over TLS")
    check(good.stop() == 0, "exit status 0")


if __name__ == "__main__":
    if not Devenv().env.get("RABBITMQ_TLS_URL"):
        print("SKIP: the shared environment has no amqps:// listener (started before it existed); "
              "tests/env/devenv.sh down it to get one")
        sys.exit(77)
    main("amqps", body)
