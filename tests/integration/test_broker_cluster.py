#!/usr/bin/env python3
"""The daemon on a three-node RabbitMQ cluster of the test's own (tests/env/rabbitmq-cluster.sh;
architecture §10): RABBITMQ_URL is the list of the three nodes, the queue a quorum queue. Mid-flow a node
the daemon does not use (it connects to the list's first) is killed with kill -9 and brought back:
the quorum queue keeps its majority, every event is delivered and the queue ends empty. Killing or
freezing the node in use is test_broker_failover's."""

import threading

import harness
from harness import RabbitCluster, check, log

N = 5_000


def body(case, cluster):
    # The daemon declares the topology (the publisher would make <queue>.dead a classic queue, which
    # a quorum setting then trips over: issue 12, for the broker work).
    t = case.transmitter(RABBITMQ_QUEUE_TYPE="quorum", BATCH_INTERVAL_S=1).start()
    t.wait_ready(60)
    out = cluster.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "type")
    check(f"{case.queue}\tquorum" in out, "the queue is a quorum queue")

    published = []
    publisher = threading.Thread(target=lambda: published.extend(case.publish(N, prefix="cl", rate=1000)))
    publisher.start()
    case.wait_for_count(N // 5, 60)
    cluster.kill(3)
    case.wait_for_count(N // 2, 60)
    cluster.start(3)
    publisher.join(120)
    check(not publisher.is_alive() and len(published) == N, f"all {N} events published")
    case.wait_delivered(published, timeout=120)
    case.wait_settled(60)
    figures = case.account(published)
    log(f"FIGURE broker cluster: {N} events through node 1 while node 3 was killed and restarted, "
        f"{figures['duplicated']} duplicated")
    check(t.ready()[0] == 200, "/ready 200")
    check("discovery:discovery@" not in t.log_text(), "no broker password in the log")
    check(t.stop() == 0, "stops cleanly")


if __name__ == "__main__":
    raise SystemExit(harness.run_own("broker_cluster", RabbitCluster, body))
