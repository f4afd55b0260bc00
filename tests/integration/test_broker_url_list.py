#!/usr/bin/env python3
"""RABBITMQ_URL as a comma-separated list (architecture §10, issue 12), on the shared broker spelled
three ways: node A (the broker, its vhost percent-encoded), a node that does not answer (a free
port, with a password of its own), node B (the broker again, plainly). The daemon connects with
the parser the configuration checked the list with (before, a list passed --check-config and the
consumer then logged "cannot parse RABBITMQ_URL" for ever), to the first URL that answers. When
the broker closes its connection (rabbitmqctl close_connection: a loss that stops nothing shared)
it moves on to the next URL, finds it dead, and takes the one after it. The node in use shows in
/api/v1/stats, /metrics and the log, each URL with its password hidden."""

import re
import time

from harness import check, free_port, log, main, wait_for

SECRET = "other-secret"


def connection_pid(case, instance):
    """The broker's pid of the daemon's connection (named transmitter@<instance>), or None."""
    out = case.broker.rabbitmqctl("list_connections", "-q", "--no-table-headers", "pid", "client_properties")
    for line in out.splitlines():
        if f"transmitter@{instance}" in line:
            return line.split("\t", 1)[0]
    return None


def shown_url(t):
    st = t.stats()
    return st["rabbitmq"]["state"], st["rabbitmq"]["url"]


def body(case):
    url = case.devenv["RABBITMQ_URL"]
    node_a = url.rstrip("/") + "/%2F"
    dead_port = free_port()
    dead = f"amqp://discovery:{SECRET}@127.0.0.1:{dead_port}/"
    node_b = url
    shown_a = re.sub(r"discovery:discovery@", "discovery:***@", node_a)
    shown_dead = f"amqp://discovery:***@127.0.0.1:{dead_port}/"
    shown_b = re.sub(r"discovery:discovery@", "discovery:***@", node_b)
    case.declare()
    ids = case.publish(500, prefix="list")
    t = case.transmitter(RABBITMQ_URL=f"{node_a} , {dead},{node_b}", BATCH_INTERVAL_S=1).start()
    case.wait_delivered(ids, timeout=60)
    t.wait_ready(30)
    check(shown_url(t) == ("connected", shown_a), f"/api/v1/stats: connected to the first URL, shown {shown_a}")
    check(t.metric("transmitter_broker_connected_info", url=shown_a) == 1
          and t.metric("transmitter_broker_connected_info", url=shown_dead) == 0
          and t.metric("transmitter_broker_connected_info", url=shown_b) == 0,
          "/metrics: transmitter_broker_connected_info 1 for the first URL, 0 for the others")
    t.wait_log(r"^<6>Connected to RabbitMQ at " + re.escape(shown_a) + ", consuming from", 10)

    log("closing the daemon's connection on the broker")
    mark = t.log_offset()
    t0 = time.monotonic()
    pid = wait_for(lambda: connection_pid(case, t.settings["TRANSMITTER_INSTANCE_ID"]), 30,
                   "the daemon's connection in rabbitmqctl list_connections")
    case.broker.rabbitmqctl("close_connection", pid, "test: moving on")
    t.wait_log(r"^<4>Connection to RabbitMQ lost at " + re.escape(shown_a) + r": .*moving on; trying the next URL",
               15, since=mark)
    t.wait_log(r"^<4>Cannot connect to RabbitMQ at " + re.escape(shown_dead) + r" \(retrying in the background\)",
               15, since=mark)
    t.wait_log(r"^<5>Connection to RabbitMQ regained at " + re.escape(shown_b) + "$", 15, since=mark)
    log(f"consuming again through the third URL {time.monotonic() - t0:.1f} s after the close")
    wait_for(lambda: shown_url(t) == ("connected", shown_b), 10, "/api/v1/stats showing the third URL")
    check(t.metric("transmitter_broker_connected_info", url=shown_b) == 1
          and t.metric("transmitter_broker_connected_info", url=shown_a) == 0,
          "/metrics: the third URL 1, the first 0")
    ids += case.publish(500, prefix="list2")
    case.wait_delivered(ids, timeout=60)
    case.wait_settled()
    case.account(ids)

    text = t.log_text()
    check("cannot parse" not in text, "no 'cannot parse RABBITMQ_URL'")
    check(text.count(f"Cannot connect to RabbitMQ at {shown_dead}") == 1, "the dead URL's error logged once")
    stats = t.get("/api/v1/stats")[1].decode()
    metrics = t.get("/metrics")[1].decode()
    for where, what in (("the log", text), ("/api/v1/stats", stats), ("/metrics", metrics)):
        check(SECRET not in what and "discovery:discovery@" not in what, f"no password of the list in {where}")
    check(t.stop() == 0, "stops cleanly")


if __name__ == "__main__":
    main("broker_url_list", body)
