#!/usr/bin/env python3
"""Halving of refused batches (architecture §5). Phase 1: the destination answers 400 to every batch
holding a marker event: batches are split in halves down to single events, so that only the
marker events end in <queue>.dead, with x-transmitter-reason http_400, x-transmitter-http-status
and x-transmitter-batch-id; the refused batches' rows are 'failed' with http_status 400 and the
first 1 KiB of the response body; every other event is delivered. Phase 2: the same with 413 for
batches over a size the receiver is told to refuse: only the events too big on their own are
dead-lettered (http_413)."""

import json
import time

from harness import check, log, main

MARKER = "POISONPILL"
N1 = 1000
EVERY = 250
N2 = 500
LIMIT = 20000
BIG = 2
REFUSAL = "refused: " + "0123456789abcdef" * 200  # longer than the 1 KiB kept in error_message


def big_event(i):
    return json.dumps({"specversion": "1.0", "id": f"big-{i:06d}", "source": "/test/split",
                       "type": "com.example.discovery.server.approved",
                       "data": {"pad": "x" * (LIMIT + 5000)}}).encode()


def check_dead(case, dead, ids, reason, status):
    for m in dead:
        h = m["headers"]
        check(h.get("x-transmitter-reason") == reason and h.get("x-transmitter-http-status") == status
              and len(h.get("x-transmitter-batch-id", "")) == 36,
              f"{m['event_id']} dead-lettered with reason {reason}, status {status}, batch id "
              f"{h.get('x-transmitter-batch-id')}")
        check(m["routing_key"].startswith("approved.") and m["content_type"] == "application/json",
              f"{m['event_id']}: routing key and properties kept ({m['routing_key']}, {m['content_type']})")
    rows = {r["id"]: r for r in case.rows()}
    for m in dead:
        r = rows.get(m["headers"]["x-transmitter-batch-id"])
        check(r and r["status"] == "failed" and r["http_status"] == str(status) and r["item_count"] == "1",
              f"the single-event batch of {m['event_id']} has a 'failed' row with {status}")


def check_counted(t, stats, reason, n):
    """Counted per reason in stats and metrics: per status (http_400, as in x-transmitter-reason),
    or, where the API does not break them down, under the one reason "http"."""
    by_reason = stats["events"]["dead_lettered"]["by_reason"]
    label = reason if reason in by_reason else "http"
    check(by_reason.get(label) == n, f"stats: {n} dead-lettered with reason {label} ({by_reason})")
    check(t.metric("transmitter_events_dead_lettered_total", reason=label) == n,
          f"metric transmitter_events_dead_lettered_total{{reason=\"{label}\"}} = {n}")


def body(case):
    case.declare()
    t = case.transmitter(BATCH_SIZE=64, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=2, CIRCUIT_FAILURE_THRESHOLD=20)

    # Phase 1: 400 for batches holding the marker.
    case.receiver.fault(reject_marker=MARKER, body=REFUSAL)
    ids = case.publish(N1, prefix="split", extra=["--marker", MARKER, "--marker-every", str(EVERY)])
    marked = {f"split-{i:06d}" for i in range(EVERY, N1 + 1, EVERY)}
    t.start()
    case.wait_delivered(set(ids) - marked, timeout=90)
    case.wait_settled(timeout=60)
    dead = case.dead_letters()
    fig1 = case.account(ids, expect_dead=marked, name="fault_split 400")
    check({m["event_id"] for m in dead} == marked and len(dead) == len(marked),
          f"only the {len(marked)} marker events are in {case.dead_queue}")
    check_dead(case, dead, marked, "http_400", 400)

    rows = case.rows()
    refused = [r for r in rows if r["http_status"] == "400"]
    splits = [r for r in refused if int(r["item_count"]) > 1]
    check(all(r["status"] == "failed" for r in refused), f"every refused batch's row is 'failed' ({len(refused)})")
    check(all(r["error_message"] == REFUSAL[:1024] for r in refused),
          "each holds exactly the first 1 KiB of the response body in error_message")
    check(len(splits) >= len(marked) * 6, f"the batches were halved down to single events ({len(splits)} split rows)")
    stats = t.stats()
    check(stats["batches"]["split"] == len(splits), f"stats count {len(splits)} splits")
    check_counted(t, stats, "http_400", len(marked))
    check(t.metric("transmitter_batches_total", outcome="split") == len(splits), "metric of splits")
    check(t.log_text().count("refused with HTTP 400; splitting") == len(splits), "every split is logged")

    # Phase 2: 413 above LIMIT bytes of uncompressed body; two events too big on their own.
    case.receiver.clear_faults()
    case.receiver.fault(max_body_bytes=LIMIT)
    phase2 = time.time()
    ids2 = case.publish(N2 // 2, prefix="size")
    for i in range(1, BIG + 1):
        case.publish_raw(big_event(i))
    ids2 += case.publish(N2 - N2 // 2, prefix="size", start=N2 // 2 + 1)
    bigs = {f"big-{i:06d}" for i in range(1, BIG + 1)}
    case.wait_delivered(ids2, timeout=90)
    case.wait_settled(timeout=60)
    dead2 = [m for m in case.dead_letters() if m["event_id"] in bigs]
    fig2 = case.account(ids2 + sorted(bigs), expect_dead=bigs, name="fault_split 413")
    check(len(dead2) == BIG and len(case.dead_letters()) == len(marked) + BIG,
          f"only the {BIG} events too big on their own were added to {case.dead_queue}")
    check_dead(case, dead2, bigs, "http_413", 413)
    stats = t.stats()
    if "http_413" in stats["events"]["dead_lettered"]["by_reason"]:
        check_counted(t, stats, "http_413", BIG)
    else:
        check_counted(t, stats, "http", len(marked) + BIG)
    big_batches = [b for b in case.receiver.batches(since=phase2) if b["uncompressed_bytes"] > LIMIT]
    check(not big_batches, "no batch over the limit was accepted")
    refused413 = [r for r in case.rows() if r["http_status"] == "413"]
    check(all(r["status"] == "failed" and "exceeds" in r["error_message"] for r in refused413),
          f"the {len(refused413)} refused batches' rows are 'failed' with the receiver's reason")

    # Phase 3: another permanent status (404): no halving, the whole batch is dead-lettered.
    case.receiver.clear_faults()
    case.receiver.fault(status=404, count=1, body="no such endpoint")
    ids3 = case.publish(20, prefix="gone")
    t.wait_log(r"^<3>Batch \S+ failed after 1 attempt\(s\): HTTP 404: no such endpoint; dead-lettering", 30)
    case.wait_settled(timeout=60)
    dead3 = [m for m in case.dead_letters() if m["event_id"] in set(ids3)]
    fig3 = case.account(ids3, expect_dead=ids3, name="fault_split 404")
    check(len(dead3) == len(ids3) and len({m["headers"]["x-transmitter-batch-id"] for m in dead3}) == 1,
          "all 20 events of the refused batch dead-lettered, with its one batch id")
    check(all(m["headers"].get("x-transmitter-reason") == "http_404" for m in dead3), "reason http_404")
    row = {r["id"]: r for r in case.rows()}[dead3[0]["headers"]["x-transmitter-batch-id"]]
    check(row["status"] == "failed" and row["http_status"] == "404" and row["item_count"] == "20"
          and row["error_message"] == "no such endpoint", f"its row: failed, 404, the body ({row})")
    log(f"FIGURE fault_split: phase 400 {fig1}; phase 413 {fig2}; phase 404 {fig3}")
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("fault_split", body)
