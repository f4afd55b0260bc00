#!/usr/bin/env python3
"""Malformed messages mixed into a valid stream (architecture §4, §5): empty, not JSON, not an object,
invalid UTF-8, larger than BATCH_MAX_BYTES (20 MiB), binary. Each is dead-lettered at once to
<queue>.dead with its body, properties and x-transmitter-reason; the service keeps running; the
valid events are delivered exactly once, unaffected; the counts per reason show in stats and
metrics."""

import json

from harness import check, log, main

BAD = [
    ("empty", b"", {"empty"}),
    ("not json", b"hello, world", {"not_json"}),
    ("truncated object", b'{"specversion":"1.0","id":"trunc-1","data":{', {"not_json"}),
    ("trailing garbage", b'{"specversion":"1.0","id":"trail-1"} and more', {"not_json"}),
    ("array", b'[{"id":"a-1"},{"id":"a-2"}]', {"not_object"}),
    ("string", b'"just a string"', {"not_object"}),
    ("number", b"42", {"not_object"}),
    ("invalid utf-8", b'{"specversion":"1.0","id":"utf-1","data":{"name":"caf\xc3\x28 \xff\xfe"}}', {"invalid_utf8"}),
    ("overlong utf-8", b'{"specversion":"1.0","id":"utf-2","data":{"slash":"\xc0\xaf"}}', {"invalid_utf8"}),
    ("20 MiB", None, {"too_large"}),
    ("binary", bytes(range(256)) * 64, {"not_json", "invalid_utf8"}),
]
BIG = 20 * 1024 * 1024
N = 300


def big_body():
    head = b'{"specversion":"1.0","id":"huge-1","source":"/test","type":"t","data":{"pad":"'
    tail = b'"}}'
    return head + b"y" * (BIG - len(head) - len(tail)) + tail


def body(case):
    case.declare()
    t = case.transmitter(BATCH_SIZE=50, BATCH_INTERVAL_S=1)
    t.start()
    t.wait_ready()
    ids = []
    bodies = []
    for i, (name, raw, _) in enumerate(BAD):
        ids += case.publish(N // 3, prefix="ok", start=len(ids) + 1)
        raw = big_body() if raw is None else raw
        bodies.append(raw)
        case.publish_raw(raw, routing_key="approved.server")
    ids += case.publish(N, prefix="ok", start=len(ids) + 1)

    case.wait_delivered(ids, timeout=120)
    case.wait_settled(timeout=120)
    check(t.running() and t.get("/health")[0] == 200, "the service keeps running and answers /health")
    events = case.receiver.events()
    check(not events["duplicates"], "no valid event arrived twice")
    check(set(events["ids"]) == set(ids), f"the receiver has exactly the {len(ids)} valid events")

    dead = case.dead_letters()
    check(len(dead) == len(BAD), f"{len(BAD)} messages in {case.dead_queue} ({len(dead)})")
    by_reason = {}
    for (name, _, reasons), raw in zip(BAD, bodies):
        match = [m for m in dead if m["body_len"] == len(raw) and raw.startswith(m["body"])]
        check(len(match) == 1, f"{name}: dead-lettered once, its body kept ({len(raw)} bytes)")
        h = match[0]["headers"]
        reason = h.get("x-transmitter-reason")
        check(reason in reasons and "x-transmitter-http-status" not in h and "x-transmitter-batch-id" not in h,
              f"{name}: x-transmitter-reason {reason}, no HTTP status, no batch id")
        check(match[0]["content_type"] == "application/json" and match[0]["routing_key"] == "approved.server",
              f"{name}: properties and routing key kept")
        by_reason[reason] = by_reason.get(reason, 0) + 1
        text = t.log_text()
        check(f"Dead-lettering a message of {len(raw)} bytes" in text and reason in text,
              f"{name}: logged with its reason")

    stats = t.stats()["events"]["dead_lettered"]
    check(stats["total"] == len(BAD), f"stats: {len(BAD)} dead-lettered")
    for reason, n in by_reason.items():
        check(stats["by_reason"][reason] == n, f"stats: {n} dead-lettered as {reason}")
        check(t.metric("transmitter_events_dead_lettered_total", reason=reason) == n,
              f"metric transmitter_events_dead_lettered_total{{reason=\"{reason}\"}} = {n}")
    fig = case.account(ids)
    rows = case.rows()
    check(all(r["status"] == "sent" for r in rows) and sum(int(r["item_count"]) for r in rows) == len(ids),
          "every batch row is 'sent' and they hold exactly the valid events")
    log(f"FIGURE fault_malformed: {fig}, malformed {len(BAD)} by reason {json.dumps(by_reason)}")

    # An operator deletes <queue>.dead while the service runs: the next dead-letter publish is
    # unroutable. Rejecting the original then would send it to the same exchange, where it
    # would vanish; instead the service reconnects, declares the queue again, and the
    # redelivered message lands there.
    case.devenv.rabbitmqctl("delete_queue", case.dead_queue)
    check(case.queue_counts(case.dead_queue) is None, f"{case.dead_queue} deleted")
    mark = t.log_offset()
    orphan = b'{"specversion":"1.0","id":"orphan-1"'
    case.publish_raw(orphan)
    more = case.publish(100, prefix="after", start=1)
    case.wait_delivered(more, timeout=60)
    t.wait_log(r"routed the message to no queue", 30, since=mark)
    case.wait_settled(timeout=60)
    dead = case.dead_letters()
    check(len(dead) == 1 and dead[0]["body"] == orphan and dead[0]["headers"].get("x-transmitter-reason") == "not_json",
          f"the message dead-lettered after the queue was deleted is in the re-declared {case.dead_queue}")
    case.account(more, name="fault_malformed after the dead-letter queue was deleted")
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("fault_malformed", body)
