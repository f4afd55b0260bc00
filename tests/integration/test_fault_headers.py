#!/usr/bin/env python3
"""Messages whose header table holds an entry with an empty name, which RabbitMQ passes on and
rabbitmq-c decodes, but whose amqp_table_clone() refuses it (found by tests/fuzz/fuzz-amqp-headers):
the daemon copied every delivery's headers with it, took the refusal for a broken connection, and
reconnected to get the same message again, forever; nothing behind it was consumed. Such a message
is delivered like any other, or dead-lettered with its headers kept, and the rest flows."""

from harness import check, main

N = 100


def body(case):
    case.declare()
    t = case.transmitter(BATCH_SIZE=20, BATCH_INTERVAL_S=1)
    t.start()
    t.wait_ready()
    ids = case.publish(N, prefix="before")
    ids += case.publish(1, prefix="nameless", extra=["--header", "=x", "--header", "trace=1"])
    case.publish_raw(b"not json", extra=["--header", "=y"])
    ids += case.publish(N, prefix="after")

    case.wait_delivered(ids, timeout=60)
    case.wait_settled(timeout=60)
    check(t.running(), "the service keeps running")
    check(t.log_text().count("Connected to RabbitMQ") == 1, "it never reconnected")
    dead = case.dead_letters()
    check(len(dead) == 1 and dead[0]["body"] == b"not json", "the message that is not JSON is dead-lettered")
    h = dead[0]["headers"]
    check(h.get("x-transmitter-reason") == "not_json" and h.get("") == "y",
          f"with its reason and its own headers, the nameless one too ({h})")
    fig = case.account(ids)
    check(fig["delivered"] == len(ids), f"all {len(ids)} events delivered, the one with a nameless header too")
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("fault_headers", body)
