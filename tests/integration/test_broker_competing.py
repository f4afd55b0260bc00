#!/usr/bin/env python3
"""Two daemons on a three-node cluster of the test's own (architecture §10, issue 12), competing
consumers of one quorum queue, each with the three nodes' URLs in its own order: the first
consumes through node 1, the second through node 2. Mid-flow node 1 is killed (kill -9): the
first daemon moves on to node 2, the second does not notice, and every one of 10,000 events
published through node 3 is delivered; the queue ends empty and both daemons ready."""

import threading
import time

import harness
from harness import RabbitCluster, check, log, wait_for

N = 10_000


def node_of(t, cluster):
    st = t.stats()["rabbitmq"]
    return cluster.node_of_url(st["url"]) if st["state"] == "connected" else None


def body(case, cluster):
    settings = dict(RABBITMQ_QUEUE_TYPE="quorum", BATCH_INTERVAL_S=1)
    a = case.transmitter(**settings).start()
    a.wait_ready(60)
    b = case.another_transmitter("b", RABBITMQ_URL=f"{cluster.url(2)},{cluster.url(3)},{cluster.url(1)}",
                                 **settings).start()
    b.wait_ready(60)
    check((node_of(a, cluster), node_of(b, cluster)) == (1, 2), "daemon a consumes through node 1, b through node 2")

    published = []
    publisher = threading.Thread(target=lambda: published.extend(case.publish(N, prefix="cc", rate=1000,
                                                                              url=cluster.url(3))))
    publisher.start()
    case.wait_for_count(N // 5, 90)
    t0 = time.monotonic()
    cluster.kill(1)
    wait_for(lambda: node_of(a, cluster) == 2, 30, "daemon a consuming through node 2")
    log(f"daemon a consumes through node 2 {time.monotonic() - t0:.2f} s after node 1 was killed")
    publisher.join(120)
    check(not publisher.is_alive() and len(published) == N, f"all {N} events published")
    case.wait_delivered(published, timeout=180)
    case.wait_settled(90)
    fig = case.account(published)
    got = {t.settings["TRANSMITTER_INSTANCE_ID"]: t.stats()["events"]["sent"] for t in (a, b)}
    log(f"FIGURE broker_competing: {N} events, node 1 killed under daemon a; sent by each daemon {got}; "
        f"{fig['duplicated']} duplicated ({fig['extra_copies']} extra copies)")
    check(all(n > 0 for n in got.values()), "both daemons delivered events")
    check(b.stats()["rabbitmq"]["reconnects"] == 0, "daemon b kept its connection")
    check(a.ready()[0] == 200 and b.ready()[0] == 200, "/ready 200 on both")
    check(a.stop() == 0 and b.stop() == 0, "both stop cleanly")


if __name__ == "__main__":
    raise SystemExit(harness.run_own("broker_competing", RabbitCluster, body))
