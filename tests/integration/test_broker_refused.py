#!/usr/bin/env python3
"""A broker that takes the connection and then refuses a binding (architecture §10): the daemon binds
without waiting (a frozen node of a cluster holds bindings up), so the refusal comes once it is
connected and consuming, and closes the connection. A connection that ends that soon counts as a
failed attempt: the daemon backs off (0.5 s doubling to 10 s) rather than reconnecting in a tight
loop, logs why, stays unready, and consumes once the operator grants the permission. The user is
the test's own, on the shared broker; it may read the queues, not the exchanges."""

import re
import time

from harness import check, log, main

WATCH_S = 20


def body(case):
    user, password = f"u-{case.queue}", "refused-secret"
    ctl = case.broker.rabbitmqctl
    ctl("add_user", user, password)
    try:
        ctl("set_permissions", "-p", "/", user, ".*", ".*", f"^{re.escape(case.queue)}(\\.dead)?$")
        port = case.devenv["RABBITMQ_PORT"]
        case.declare()
        ids = case.publish(300, prefix="refused")
        t = case.transmitter(RABBITMQ_URL=f"amqp://{user}:{password}@127.0.0.1:{port}/", BATCH_INTERVAL_S=1).start()
        t.wait_log(r"^<4>Connection to RabbitMQ lost at \S+: channel 3 closed by broker: 403 ACCESS_REFUSED", 15)
        time.sleep(WATCH_S)
        lost = len(re.findall(r"^<4>Connection to RabbitMQ lost", t.log_text(), re.M))
        log(f"{lost} connections lost in the first {WATCH_S} s after the first")
        check(lost <= 8, f"backs off: {lost} connections in about {WATCH_S} s (0.5, 1, 2, 4, 8, 10 s apart)")
        check(t.ready()[0] == 503, "/ready 503 meanwhile")

        ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
        log("permission granted")
        case.wait_delivered(ids, timeout=30)
        case.wait_settled()
        case.account(ids)
        t.wait_ready(10)
        check(password not in t.log_text(), "no password in the log")
        check(t.stop() == 0, "stops cleanly")
    finally:
        ctl("delete_user", user)


if __name__ == "__main__":
    main("broker_refused", body)
