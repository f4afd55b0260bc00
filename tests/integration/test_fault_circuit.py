#!/usr/bin/env python3
"""Destination answers 503 for 30 s, then 200 (architecture §5): the circuit breaker opens after
CIRCUIT_FAILURE_THRESHOLD consecutive failures (/ready 503, transmitter_circuit_state 1, the
"Circuit breaker opened" log line); while it is open no request reaches the receiver (its request
log proves it), after CIRCUIT_RESET_TIMEOUT_S exactly one probe goes out; once the destination
answers again it closes and everything is delivered, nothing dead-lettered. Batches re-formed
from requeued events keep their id: their row is upserted and retry_count accumulates (§2).
While half open, its probe out, /ready answers 503 as well (§8): the destination has not proved
itself, and between two failed probes of an outage that goes on /ready must not flap to 200."""

import calendar
import time

from harness import Sampler, check, log, main, wait_for

N = 1000
FAULT_S = 30
THRESHOLD = 3
RESET_S = 3
MAX_IN_FLIGHT = 2
MAX_ATTEMPTS = 3
# Requests that reach the receiver later than their send, or are recorded earlier than the
# transition the daemon logs: a generous margin on each side of an open interval.
MARGIN = 0.4


def body(case):
    case.declare()
    ids = case.publish(N, prefix="circ")
    case.receiver.fault(status=503, for_s=FAULT_S)
    fault_start = time.time()
    t = case.transmitter(BATCH_SIZE=50, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=MAX_IN_FLIGHT,
                         RETRY_MAX_ATTEMPTS=MAX_ATTEMPTS, RETRY_BACKOFF_MULTIPLIER=1, RETRY_MAX_DELAY_S=1,
                         CIRCUIT_FAILURE_THRESHOLD=THRESHOLD, CIRCUIT_RESET_TIMEOUT_S=RESET_S)

    def sample():
        st = t.stats()["circuit_breaker"]
        status, ready = t.ready()
        return st["state"], st["since"], status, ready and ready.get("circuit_breaker")

    opened_metric = None
    with Sampler(sample, 0.2) as sampler:
        t.start()
        t.wait_log(r"^<3>Circuit breaker opened", 20)
        st, ready = t.ready()
        check(st == 503 and ready["circuit_breaker"] == "open",
              f"/ready answers 503 with circuit_breaker open while it is open ({st}, {ready})")
        opened_metric = t.metric("transmitter_circuit_state")
        check(opened_metric in (1.0, 2.0),
              f"transmitter_circuit_state shows open (1) or half_open (2): {opened_metric}")
        events = case.wait_delivered(ids, timeout=FAULT_S + 90)
        t.wait_log(r"^<5>Circuit breaker closed", 10)
    fault_end = fault_start + FAULT_S

    # The open intervals, from the stats' "since" of every sample that saw the circuit open
    # (each lasts RESET_S, far longer than the sampling interval, so none is missed).
    def epoch(iso):
        return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + iso[19:-1])

    opens = sorted({epoch(v[1]) for _, v in sampler.samples if isinstance(v, tuple) and v[0] == "open"})
    log(f"circuit opened {len(opens)} times, at +" + ", +".join(f"{o - fault_start:.2f}" for o in opens))
    check(len(opens) >= 3, f"the circuit opened again after each failed probe ({len(opens)} openings in {FAULT_S} s)")
    ready_open = [v for _, v in sampler.samples if isinstance(v, tuple) and v[0] == "open"]
    check(all(v[2] == 503 and v[3] == "open" for v in ready_open),
          f"/ready said 503 circuit_breaker open in all {len(ready_open)} samples taken while open")
    ready_half = [v for _, v in sampler.samples if isinstance(v, tuple) and v[3] == "half_open"]
    check(all(v[2] == 503 for v in ready_half),
          f"/ready said 503 in all {len(ready_half)} answers that said circuit_breaker half_open")

    requests = case.receiver.requests()
    times = sorted(r["time"] for r in requests)
    for i, o in enumerate(opens):
        inside = [x for x in times if o + MARGIN < x < o + RESET_S - MARGIN]
        check(not inside, f"opening {i + 1}: no request in the {RESET_S} s it was open ({len(inside)} seen)")
        if i + 1 < len(opens):
            probes = [x for x in times if o + RESET_S - MARGIN <= x <= opens[i + 1] + MARGIN]
            check(len(probes) == 1, f"opening {i + 1}: exactly one probe before it opened again ({len(probes)})")

    during = [r for r in requests if r["time"] < fault_end]
    bound = THRESHOLD + MAX_IN_FLIGHT + FAULT_S // RESET_S + 2
    check(len(during) <= bound,
          f"{len(during)} requests during the {FAULT_S} s outage (at most {bound}; without the breaker ~"
          f"{FAULT_S * MAX_IN_FLIGHT})")
    check(all(r["status"] == 503 for r in during), "every request during the outage was answered 503")

    st, ready = t.ready()
    check(st == 200 and ready["circuit_breaker"] == "closed", f"/ready is 200, circuit closed, at the end ({ready})")
    check(t.metric("transmitter_circuit_state") == 0.0, "transmitter_circuit_state is 0 (closed) at the end")
    stats = t.stats()
    check(stats["circuit_breaker"]["opened_total"] >= len(opens),
          f"stats count the openings ({stats['circuit_breaker']['opened_total']})")
    log_text = t.log_text()
    check(log_text.count("Circuit breaker half-open") >= len(opens) - 1, "every half-open transition is logged")

    case.wait_settled()
    fig = case.account(ids)
    check(fig["dead_letter_queue"] == 0, "nothing dead-lettered")
    check(stats["events"]["dead_lettered"]["total"] == 0, "stats: nothing dead-lettered")

    rows = case.rows()
    accepted = {b["batch_id"] for b in case.receiver.batches()}
    by_id = {r["id"]: r for r in rows}
    check(all(b in by_id and by_id[b]["status"] == "sent" for b in accepted),
          f"every accepted batch has a 'sent' row ({len(accepted)} batches)")
    reformed = [r for r in rows if int(r["retry_count"]) >= MAX_ATTEMPTS]
    log(f"rows: {len(rows)}, re-formed with the same id after a requeue (retry_count >= {MAX_ATTEMPTS}): "
        f"{len(reformed)}, max retry_count {max(int(r['retry_count']) for r in rows)}")
    check(reformed, "a batch re-formed from requeued events kept its id: one row, retry_count accumulated")
    check(not [r for r in rows if r["status"] in ("pending", "sending")], "no row left pending or sending")
    log(f"FIGURE fault_circuit: {len(during)} requests while the destination was down, {len(opens)} openings, "
        f"{events and len(events['ids'])} events at the receiver")
    check(t.stop() == 0, "SIGTERM: exit status 0")
    straggler(case)
    stop_while_open(case)
    half_open_not_ready(case)


def straggler(case):
    """A request let out before the circuit opened and answered after the probe closed it (or
    while the probe is out) says nothing about the destination now: it must not open the circuit
    again, nor stand in for the probe."""
    case.receiver.clear_faults()
    # Both batches are on the wire before the first answer (held 1 s) opens the circuit; the
    # other answer comes long after the probe closed it again.
    case.receiver.fault(status=503, count=1, delay_s=1)
    case.receiver.fault(status=503, count=1, delay_s=3 * RESET_S)
    ids = case.publish(100, prefix="strag")  # two full batches, waiting in the queue
    t = case.transmitter(BATCH_SIZE=50, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=2, RETRY_MAX_ATTEMPTS=3,
                         RETRY_BACKOFF_MULTIPLIER=1, RETRY_MAX_DELAY_S=1, CIRCUIT_FAILURE_THRESHOLD=1,
                         CIRCUIT_RESET_TIMEOUT_S=RESET_S)
    mark = t.log_offset()
    started = time.time()
    t.start()
    case.wait_delivered(ids, timeout=60)
    reqs = sorted(case.receiver.requests(since=started), key=lambda r: r["time"])
    check(len(reqs) >= 2 and reqs[1]["time"] - reqs[0]["time"] < 0.9,
          "both batches left before the first answer came")
    t.wait_log(r"^<6>Batch \S+ sent: .*attempt 2", 30, since=mark)
    text = t.log_since(mark)
    opened = text.count("Circuit breaker opened")
    log(f"straggler: circuit opened {opened} time(s), closed {text.count('Circuit breaker closed')} time(s)")
    check(opened == 1, "the slow answer of a request let out before the opening did not open the circuit again")
    check(t.stats()["circuit_breaker"]["state"] == "closed", "the circuit is closed")
    fig = case.account(ids, name="fault_circuit straggler")
    check(fig["dead_letter_queue"] == 0, "nothing dead-lettered")
    check(t.stop() == 0, "SIGTERM: exit status 0")


def stop_while_open(case):
    """SIGTERM while the circuit is open: the batches waiting for it go back to the queue at once
    (architecture §9), instead of holding the shutdown until SHUTDOWN_TIMEOUT_S."""
    case.receiver.clear_faults()
    case.receiver.fault(status=503)
    ids = case.publish(150, prefix="stop")  # three batches: two take the send slots, one waits
    t = case.transmitter(BATCH_SIZE=50, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=2, RETRY_MAX_ATTEMPTS=3,
                         RETRY_BACKOFF_MULTIPLIER=1, RETRY_MAX_DELAY_S=1, CIRCUIT_FAILURE_THRESHOLD=1,
                         CIRCUIT_RESET_TIMEOUT_S=60, SHUTDOWN_TIMEOUT_S=20)
    mark = t.log_offset()
    t.start()
    t.wait_log(r"^<3>Circuit breaker opened", 20, since=mark)
    time.sleep(2)
    t0 = time.monotonic()
    rc = t.stop()
    took = time.monotonic() - t0
    check(rc == 0 and took < 10, f"SIGTERM with the circuit open: exit status {rc} after {took:.1f} s "
          "(SHUTDOWN_TIMEOUT_S 20, CIRCUIT_RESET_TIMEOUT_S 60)")
    check("Stopped: everything in flight was settled" in t.log_since(mark), "a clean stop, everything settled")
    check(case.queue_counts() == (len(ids), 0), f"all {len(ids)} events back in the queue ({case.queue_counts()})")
    case.receiver.clear_faults()
    t.start()
    case.wait_delivered(ids, timeout=60)
    case.wait_settled(timeout=60)
    fig = case.account(ids, name="fault_circuit stop while open")
    check(fig["dead_letter_queue"] == 0, "nothing dead-lettered")
    check(t.stop() == 0, "SIGTERM: exit status 0")


def half_open_not_ready(case):
    """An outage that goes on, with slow answers: the probe is out 2 s each time, so /ready is
    asked many times while half open. It answers 503 every time, saying why."""
    case.receiver.clear_faults()
    case.receiver.fault(status=503, delay_s=2)
    ids = case.publish(20, prefix="half")
    t = case.transmitter(BATCH_SIZE=10, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=1, RETRY_MAX_ATTEMPTS=3,
                         RETRY_BACKOFF_MULTIPLIER=1, RETRY_MAX_DELAY_S=1, CIRCUIT_FAILURE_THRESHOLD=1,
                         CIRCUIT_RESET_TIMEOUT_S=1)
    mark = t.log_offset()
    t.start()
    t.wait_log(r"^<3>Circuit breaker opened", 20, since=mark)
    status, r = wait_for(lambda: (lambda s, b: (s, b) if b and b["circuit_breaker"] == "half_open" else None)(
        *t.ready()), 20, "/ready to say circuit_breaker half_open", interval=0.05)
    log(f"/ready while half open: {status} {r}")
    check(status == 503 and r["status"] == "not_ready" and r["reasons"] == ["circuit_breaker: half_open, probing"]
          and r["checks"]["circuit_breaker"] == {"ok": False, "state": "half_open"},
          "half open, the probe out: 503, not_ready, 'circuit_breaker: half_open, probing'")
    answers = {}
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        s, b = t.ready()
        key = (s, b and b["circuit_breaker"])
        answers[key] = answers.get(key, 0) + 1
        time.sleep(0.05)
    log(f"/ready over 6 s of outage: {answers}")
    check(answers.get((503, "half_open"), 0) >= 10 and set(answers) <= {(503, "half_open"), (503, "open")},
          "every answer during the outage was 503, open or half open; never 200")
    case.receiver.clear_faults()
    case.wait_delivered(ids, timeout=60)
    wait_for(lambda: t.ready()[0] == 200, 20, "/ready 200 once the probe succeeded")
    check(True, "200 again once a probe succeeded and closed the circuit")
    case.wait_settled(timeout=60)
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("fault_circuit", body)
