#!/usr/bin/env python3
"""Broker failover on a three-node cluster of the test's own (architecture §10, issue 12): RABBITMQ_URL is
the list of the three nodes, the queue a quorum queue, events published through node 3 while the
daemon consumes from node 1.

1. kill -9: 20,000 events; mid-flow the node the daemon consumes from is killed. A killed node's
   sockets reset at once: the daemon moves to the next URL of the list and consumes again.
2. SIGSTOP: node 1 back, 5,000 more events; mid-flow the node now in use is frozen (one that does
   not lead the quorum queue: see off_the_leader()). Its sockets stay open and nothing answers:
   the daemon notices only because its liveness probe goes unanswered (the heartbeat, 30 s by
   default, would take a minute), and moves on. The node is thawed afterwards: what it held
   unacked comes back to the queue.

Each phase prints its failover time (the fault to consuming again on the next node: the stats show
another node and deliveries arriving) and its duplicates, accounts for every event id, and ends
with the queue empty and /ready 200. The failover must take under 10 s."""

import re
import threading
import time
import urllib.parse

import harness
from harness import RabbitCluster, Sampler, TestFailure, check, log, wait_for

N = 20_000
N_FREEZE = 5_000
RATE = 1000
FAILOVER_MAX_S = 10


def watch(t):
    st = t.stats()
    return st["rabbitmq"]["state"], st["rabbitmq"]["url"], st["events"]["received"]


def failover(samples, t_fault, old_url):
    """(seconds to connected elsewhere, seconds to the first delivery received there) after the fault."""
    before = [v for ts, v in samples if ts < t_fault and isinstance(v, tuple)]
    base = before[-1][2] if before else 0
    connected = None
    for ts, v in samples:
        if ts < t_fault or not isinstance(v, tuple):
            continue
        state, url, received = v
        if state != "connected" or url == old_url:
            base = max(base, received)  # what came through the old node, or nothing new
            continue
        if connected is None:
            connected = ts - t_fault
        if received > base:
            return connected, ts - t_fault
    raise TestFailure(f"no delivery through another node than {old_url} after the fault")


def in_use(t, cluster):
    state, url, _ = watch(t)
    return cluster.node_of_url(url) if state == "connected" else None


def wait_members_online(case, cluster, n=3, timeout=120):
    def online():
        out = cluster.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "online")
        for line in out.splitlines():
            if line.startswith(case.queue + "\t"):
                return line.count("@") >= n
        return False
    wait_for(online, timeout, f"{n} members of the quorum queue online", interval=1)


def wait_moved_on(t, cluster, node):
    """Waits until the daemon consumes from another node than node, and events come through it."""
    wait_for(lambda: in_use(t, cluster) not in (None, node), 30, "the daemon consuming from another node")
    received = watch(t)[2]
    wait_for(lambda: watch(t)[2] > received, 30, "deliveries through the next node")
    time.sleep(1)  # for the sampler (every 0.1 s) to see them too


def settle_phase(case, t, publisher, published, count, fault, moved_to, times):
    """After a fault: every event published, delivered and acked; prints the figures."""
    reconnected, consuming = times
    publisher.join(300)
    check(not publisher.is_alive() and len(published) == count, f"all {count} events published")
    case.wait_delivered(published, timeout=240)
    case.wait_settled(120)
    fig = case.account(published, name=f"broker_failover {fault.split(';')[0]}")
    log(f"FIGURE broker_failover {fault}; connected to node {moved_to} after {reconnected:.2f} s, consuming "
        f"again after {consuming:.2f} s; {fig['duplicated']} of {count} events duplicated "
        f"({fig['extra_copies']} extra copies)")
    check(consuming < FAILOVER_MAX_S, f"failover under {FAILOVER_MAX_S} s ({consuming:.2f} s)")


def publish_in_background(case, count, prefix, start, url, rate=RATE):
    out = []
    th = threading.Thread(target=lambda: out.extend(case.publish(count, prefix=prefix, rate=rate, start=start,
                                                                 url=url)))
    th.start()
    return th, out


def kill_phase(case, cluster, t):
    check(in_use(t, cluster) == 1, "consuming from node 1, the list's first URL")
    publisher, published = publish_in_background(case, N, "fo", 1, cluster.url(3))
    with Sampler(lambda: watch(t), 0.1) as s:
        case.wait_for_count(N // 5, 90)
        old = watch(t)[1]
        t_fault = time.time()
        cluster.kill(1)
        wait_moved_on(t, cluster, 1)
        case.wait_for_count(N // 2, 90)
    node = in_use(t, cluster)
    settle_phase(case, t, publisher, published, N, "kill -9: node 1 killed mid-flow", node,
                 failover(s.samples, t_fault, old))
    # Node 2 may refuse the consume while the cluster is still electing (541 INTERNAL_ERROR): the
    # daemon then goes on down the list, as it should, and says so in its log.
    node2 = urllib.parse.urlsplit(cluster.url(2)).netloc.rsplit("@", 1)[-1]
    node2_refused = any("Cannot connect to RabbitMQ at " in line and f"@{node2}/" in line
                        for line in t.log_text().splitlines())
    check(node == 2 or (node == 3 and node2_refused),
          f"moved to node 2, the next URL of the list, or on to node 3 after node 2 refused (node {node})")
    check(t.ready()[0] == 200, "/ready 200")
    return published, node


def leader(case, cluster):
    """The node (1-3) that leads the quorum queue."""
    out = cluster.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "leader")
    for line in out.splitlines():
        name, _, lead = line.partition("\t")
        if name == case.queue:
            for n in (1, 2, 3):
                if lead.strip() == cluster[f"RABBITMQ_NODE{n}_NAME"]:
                    return n
    return None


def off_the_leader(case, cluster, t, node):
    """Makes sure the daemon does not consume from the quorum queue's leader, by closing its
    connection there (it moves to the next URL), and returns the node it consumes from. RabbitMQ
    3.x takes new consumers of a quorum queue whose leader is frozen only once it gives that node
    up itself (net_ticktime, a minute): no client can fail over faster, so this test freezes a
    node that does not lead."""
    lead = leader(case, cluster)
    log(f"the quorum queue's leader is node {lead}, the daemon consumes from node {node}")
    if lead != node:
        return node
    out = cluster.rabbitmqctl("list_connections", "-q", "--no-table-headers", "pid", "client_properties")
    pid = next(line.split("\t", 1)[0] for line in out.splitlines()
               if f"transmitter@{t.settings['TRANSMITTER_INSTANCE_ID']}" in line)
    cluster.rabbitmqctl("close_connection", pid, "test: off the leader")
    wait_for(lambda: in_use(t, cluster) not in (None, node), 30, "the daemon consuming from another node")
    return in_use(t, cluster)


def freeze_phase(case, cluster, t, node):
    log("node 1 back")
    cluster.start(1)
    wait_members_online(case, cluster)
    node = off_the_leader(case, cluster, t, node)
    # Through a node that stays up; slower: events must still be coming when the daemon has moved on.
    through = next(n for n in (3, 2, 1) if n != node)
    publisher, published = publish_in_background(case, N_FREEZE, "frz", 1, cluster.url(through), rate=RATE // 4)
    frozen = False
    try:
        with Sampler(lambda: watch(t), 0.1) as s:
            case.wait_for_count(N + N_FREEZE // 5, 90)
            old = watch(t)[1]
            t_fault = time.time()
            cluster.pause(node)
            frozen = True
            wait_moved_on(t, cluster, node)
        times = failover(s.samples, t_fault, old)
        now_on = in_use(t, cluster)
    finally:
        if frozen:
            cluster.resume(node)
    log(f"node {node} thawed after {time.time() - t_fault:.1f} s")
    settle_phase(case, t, publisher, published, N_FREEZE, f"SIGSTOP: node {node} frozen mid-flow", now_on, times)
    check(now_on == node % 3 + 1, f"moved to node {node % 3 + 1}, the URL after node {node}'s")
    check(re.search(r"Connection to RabbitMQ lost at .*: the broker did not answer for \d+ s", t.log_text()),
          "the frozen node was given up for not answering the liveness probe")
    return published


def body(case, cluster):
    t = case.transmitter(RABBITMQ_QUEUE_TYPE="quorum", BATCH_INTERVAL_S=1).start()
    t.wait_ready(60)
    out = cluster.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "type")
    check(f"{case.queue}\tquorum" in out, "the queue is a quorum queue")

    published, node = kill_phase(case, cluster, t)
    published += freeze_phase(case, cluster, t, node)
    case.account(published, name="broker_failover")
    check(t.ready()[0] == 200, "/ready 200")
    text = t.log_text()
    check("discovery:discovery@" not in text and "discovery:***@" in text, "the log shows each URL, no password")
    check(t.stop() == 0, "stops cleanly")


if __name__ == "__main__":
    raise SystemExit(harness.run_own("broker_failover", RabbitCluster, body))
