#!/usr/bin/env python3
"""PostgreSQL stopped for 20 s mid-stream (architecture §6): batches already formed may still be delivered,
but their rows wait in memory and their acks wait for the commit; consumption pauses once the
prefetch window is full; on reconnect the rows are written in order and the acks follow. Nothing
is lost, every batch the receiver accepted has its row afterwards, and no event is acked before
its row is committed: while the database is down the broker's acked count does not move, and at
any moment the events acked at the broker are no more than those in committed 'sent' rows.

The database server is shared by every integration test: it is left running, even on failure."""

import time

from harness import HealthProbe, Sampler, check, log, main

N = 8000
BATCH_SIZE = 50
MAX_IN_FLIGHT = 2
WINDOW = BATCH_SIZE * (MAX_IN_FLIGHT + 1)
OUTAGE_S = 20


def outage(case, t, mark, acked, at_stop):
    """Stops PostgreSQL for OUTAGE_S and checks what happens meanwhile; returns (when it stopped,
    events delivered meanwhile). The database is started again whatever happens."""
    try:
        log("stopping PostgreSQL")
        case.devenv.database("stop")
        t0 = time.monotonic()
        t.wait_log(r"PostgreSQL unavailable", 10, since=mark)
        # Counted from when the daemon knew: until PostgreSQL has shut down (pg_ctl stop takes its
        # time) deliveries are acked as usual, and a fast pipeline delivers many meanwhile.
        at_stop = case.receiver.counts()["unique_events"]
        st, ready = t.ready()
        check(st == 503 and ready["database"] == "disconnected", f"/ready says database disconnected ({ready})")
        # What was committed before the stop may still be acked in the first moments.
        time.sleep(2)
        base_acked, _ = acked()
        base_received = case.receiver.counts()["unique_events"]
        with Sampler(lambda: (acked(), case.receiver.counts()["unique_events"], t.stats()["database"]), 0.5) as s:
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t0)))
        samples = [v for _, v in s.samples if isinstance(v, tuple)]
        check(samples, "sampled during the outage")
        check(all(v[0][0] == base_acked for v in samples),
              f"nothing acked while the database was down (acked stayed {base_acked}: "
              f"{sorted({v[0][0] for v in samples})})")
        check(all(v[0][1] <= WINDOW for v in samples), f"never more than the prefetch window ({WINDOW}) unacked")
        grown = samples[-1][1] - at_stop
        # At most the window in use when it went, and the window freed by the acks of the
        # last commits before it went.
        check(0 <= samples[-1][1] - base_received and grown <= 2 * WINDOW,
              f"{grown} events delivered while the database was down: bounded by the prefetch window "
              f"({WINDOW}), not by the queue's depth ({N - at_stop} left)")
        check(max(v[2]["backlog"] for v in samples) > 0, "stats show tracking records waiting in memory "
              f"(backlog up to {max(v[2]['backlog'] for v in samples)})")
        last = [v[1] for v in samples[-4:]]
        check(len(set(last)) == 1, f"consumption paused: the receiver's count stood still at the end ({last})")
    finally:
        log("starting PostgreSQL again")
        case.devenv.database("start")
        case.devenv.heal()
    return t0, grown


def body(case):
    case.declare()
    ids = case.publish(N, prefix="db")
    case.receiver.fault(delay_s=0.05)  # ~2000 events/s: the outage lands mid-stream
    t = case.transmitter(BATCH_SIZE=BATCH_SIZE, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=MAX_IN_FLIGHT,
                         CONNECT_TIMEOUT_S=3)
    t.start()
    t.wait_ready()

    def acked():
        ready, unacked = case.queue_counts()
        return N - ready - unacked, unacked

    # Acked at the broker, then committed in the ledger: the first can never pass the second.
    def compare():
        a, _ = acked()
        committed = int(case.sql("SELECT coalesce(sum(item_count), 0) FROM transmitter.batches "
                                 "WHERE status = 'sent'")[0][0])
        check(a <= committed, f"acked at the broker {a} <= events in committed 'sent' rows {committed}")

    case.wait_for_count(1500, 60)
    compare()
    mark = t.log_offset()
    at_stop = case.receiver.counts()["unique_events"]
    with HealthProbe(t.base + "/health", interval=0.2, timeout=5) as probe:
        t0, grown = outage(case, t, mark, acked, at_stop)
        t.wait_log(r"Connection to PostgreSQL regained", 60, since=mark)
        log(f"reconnected {time.monotonic() - t0:.1f} s after the stop")
    slow = probe.failures(limit=1.0)
    log(f"/health: {len(probe.samples)} probes, worst {probe.worst() * 1000:.0f} ms")
    check(not slow, f"/health answered 200 within 1 s throughout ({len(slow)} slow or failed: {slow[:5]})")
    for _ in range(3):
        compare()
        time.sleep(0.5)
    case.wait_delivered(ids, timeout=120)
    case.wait_settled(timeout=60)
    compare()
    fig = case.account(ids)
    check(fig["dead_letter_queue"] == 0, "nothing dead-lettered")

    rows = {r["id"]: r for r in case.rows()}
    accepted = {b["batch_id"] for b in case.receiver.batches()}
    missing = accepted - set(rows)
    check(not missing, f"every one of the {len(accepted)} batches the receiver accepted has its row")
    check(all(rows[b]["status"] == "sent" for b in accepted), "and each of those rows is 'sent'")
    sent = sum(1 for r in rows.values() if r["status"] == "sent")
    check(sent >= len(accepted), f"rows sent ({sent}) >= batches the receiver acknowledged ({len(accepted)})")
    stats = t.stats()
    check(stats["database"]["backlog"] == 0 and stats["database"]["reconnects"] >= 1,
          f"backlog written, reconnect counted ({stats['database']})")
    log(f"FIGURE fault_database: {fig}; {len(rows)} rows; {grown} events delivered while the database was down")
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("fault_database", body)
