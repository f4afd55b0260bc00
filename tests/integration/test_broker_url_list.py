#!/usr/bin/env python3
"""RABBITMQ_URL as a comma-separated list (architecture §10, issue 12): the daemon connects with the
parser the configuration checked the list with. Before, a list passed --check-config and the
consumer then logged "cannot parse RABBITMQ_URL" for ever. For now the first URL is the one used;
moving on to the next when the node is lost comes with the broker failover work."""

from harness import check, free_port, main


def body(case):
    url = case.devenv["RABBITMQ_URL"]
    # The same broker, spelled with its vhost percent-encoded, then a node that does not answer.
    first = url.rstrip("/") + "/%2F"
    urls = f"{first} , amqp://discovery:other-secret@127.0.0.1:{free_port()}/"
    case.declare()
    ids = case.publish(500, prefix="list")
    t = case.transmitter(RABBITMQ_URL=urls, BATCH_INTERVAL_S=1).start()
    case.wait_delivered(ids, timeout=60)
    t.wait_ready(30)
    case.wait_settled()
    check(True, "every event delivered and acked through the first URL of the list")
    log = t.log_text()
    check("cannot parse" not in log, "no 'cannot parse RABBITMQ_URL'")
    check("discovery@" not in log.replace("discovery:***@", "") and "other-secret" not in log,
          "no password of the list in the log")
    check(t.stop() == 0, "stops cleanly")


if __name__ == "__main__":
    main("broker_url_list", body)
