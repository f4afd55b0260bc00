#!/usr/bin/env python3
"""Broker loss (architecture §2, §11): (1) RabbitMQ restarted mid-stream, (2) RabbitMQ frozen with SIGSTOP
for 20 s mid-stream, (3) SIGTERM while RabbitMQ is frozen. The transmitter notices (heartbeats),
reconnects with capped backoff, /health keeps answering within 1 s throughout, deliveries of the
old channel are never acked on the new one (the broker redelivers them: duplicates, printed), a
stop is not held up by the frozen broker, and every event is delivered.

The broker is shared by every integration test: it is left running and thawed, even on failure."""

import re
import signal
import time

from harness import HealthProbe, check, log, main

HEARTBEAT_S = 2
FREEZE_S = 20


def restart_phase(case, t, probe):
    ids = case.publish(10_000, prefix="rst1")
    t0 = time.monotonic()
    case.wait_for_count(1000, 60)
    mark = t.log_offset()
    log("restarting the broker")
    case.devenv.broker("restart")
    log(f"broker back after {time.monotonic() - t0:.1f} s")
    t.wait_log(r"Connection to RabbitMQ lost", 5, since=mark)
    # Published once the broker is back: the stream goes on across the restart.
    ids += case.publish(5_000, prefix="rst2")
    t.wait_log(r"Connection to RabbitMQ regained", 90, since=mark)
    log(f"reconnected after {time.monotonic() - t0:.1f} s")
    case.wait_delivered(ids, timeout=120)
    case.wait_settled(timeout=60)
    return case.account(ids, name="fault_broker restart")


def freeze_phase(case, t, probe):
    ids = case.publish(6_000, prefix="frz")
    case.wait_for_count(15_000 + 1000, 60)
    mark = t.log_offset()
    before = case.receiver.counts()["unique_events"]
    # The next two requests are held well past the moment the lost connection is noticed: their
    # batches finish after it and must not be acked (the broker redelivers them).
    case.receiver.clear_faults()
    case.receiver.fault(delay_s=4 * HEARTBEAT_S + 4, count=2)
    case.receiver.fault(delay_s=0.05)
    held_since = time.time()
    log("freezing the broker (SIGSTOP)")
    case.devenv.broker("pause")
    t0 = time.monotonic()
    try:
        t.wait_log(r"Connection to RabbitMQ lost", 6 * HEARTBEAT_S + 5, since=mark)
        log(f"the transmitter noticed after {time.monotonic() - t0:.1f} s")
        st, ready = t.ready()
        check(st == 503 and ready["rabbitmq"] == "disconnected", f"/ready says rabbitmq disconnected ({ready})")
        time.sleep(max(0.0, FREEZE_S - (time.monotonic() - t0)))
        during = case.receiver.counts()["unique_events"] - before
    finally:
        case.devenv.broker("resume")
    log(f"broker thawed after {time.monotonic() - t0:.1f} s; {during} events reached the receiver meanwhile "
        f"(at most the prefetch window)")
    t.wait_log(r"Connection to RabbitMQ regained", 90, since=mark)
    log(f"reconnected {time.monotonic() - t0:.1f} s after the freeze began")
    case.wait_delivered(ids, timeout=120)
    case.wait_settled(timeout=60)
    late = [m.group(1) for m in re.finditer(r"^<5>Batch (\S+) was sent after its connection to RabbitMQ was lost",
                                            t.log_since(mark), re.M)]
    check(late, f"batches on the wire when the connection was lost finished their request ({len(late)})")
    counts = case.receiver.event_counts()
    held = list({b["batch_id"]: b for b in reversed(case.receiver.batches(since=held_since))
                 if b["batch_id"] in late}.values())
    check(held, "the receiver accepted them")
    fig = case.account(ids, name="fault_broker freeze")
    # Their events came again in other batches: they had not been acked on the new channel.
    late_events = [e for e, n in counts.items() if n > 1]
    check(fig["duplicated"] >= sum(b["events"] for b in held) and len(late_events) >= sum(b["events"] for b in held),
          f"the events of the {len(held)} batches that finished late were redelivered, not acked")
    return fig


def stop_frozen_phase(case):
    """SIGTERM and a frozen broker whose connection is not yet known to be lost (heartbeats 30 s),
    both ways round: (a) frozen, then SIGTERM: basic.cancel gets no answer; (b) SIGTERM (cancel
    answered), then frozen while a held request drains: connection.close gets no answer. Either
    waits as long as CONNECT_TIMEOUT_S (60 s here) unless the stop cuts it short. The next start
    delivers everything."""
    shutdown_s = 15
    hold_s = 6
    ids = []
    for order in ("freeze-then-stop", "stop-then-freeze"):
        case.receiver.clear_faults()
        case.receiver.fault(delay_s=0.05)
        t = case.another_transmitter(order, BATCH_SIZE=50, BATCH_INTERVAL_S=1, RABBITMQ_HEARTBEAT_S=30,
                                     CONNECT_TIMEOUT_S=60, SHUTDOWN_TIMEOUT_S=shutdown_s)
        t.start()
        t.wait_ready()
        before = case.receiver.counts()["unique_events"]
        ids += case.publish(6_000, prefix=order)
        case.wait_for_count(before + 500, 60)
        try:
            if order == "freeze-then-stop":
                case.devenv.broker("pause")
                t0 = time.monotonic()
                t.signal(signal.SIGTERM)
            else:
                case.receiver.clear_faults()
                case.receiver.fault(delay_s=hold_s, count=2)
                time.sleep(0.5)  # the next requests are on the wire, held
                t0 = time.monotonic()
                t.signal(signal.SIGTERM)
                t.wait_log(r"Received Terminated", 5)
                time.sleep(0.5)  # basic.cancel answered
                case.devenv.broker("pause")
            status = t.wait_exit(120)
            took = time.monotonic() - t0
        finally:
            case.devenv.broker("resume")
        log(f"{order}: the transmitter exited {status} {took:.1f} s after SIGTERM")
        check(status == 0, f"{order}: exit status 0")
        check(took < shutdown_s + 5, f"{order}: exited within SHUTDOWN_TIMEOUT_S + 5 s ({took:.1f} s), "
              f"not after CONNECT_TIMEOUT_S")
    case.receiver.clear_faults()
    t = case.another_transmitter("after-frozen-stop", BATCH_SIZE=50, BATCH_INTERVAL_S=1)
    t.start()
    case.wait_delivered(ids, timeout=120)
    case.wait_settled(timeout=60)
    fig = case.account(ids, name="fault_broker stop while frozen")
    check(t.stop() == 0, "the next transmitter: SIGTERM, exit status 0")
    return fig


def body(case):
    case.declare()
    case.receiver.fault(delay_s=0.05)  # ~2000 events/s: each fault lands mid-stream
    t = case.transmitter(BATCH_SIZE=50, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=2, RABBITMQ_HEARTBEAT_S=HEARTBEAT_S,
                         CONNECT_TIMEOUT_S=3)
    t.start()
    t.wait_ready()
    try:
        with HealthProbe(t.base + "/health", interval=0.2, timeout=5) as probe:
            f1 = restart_phase(case, t, probe)
            f2 = freeze_phase(case, t, probe)
    finally:
        case.devenv.heal()
    slow = probe.failures(limit=1.0)
    log(f"/health: {len(probe.samples)} probes, worst {probe.worst() * 1000:.0f} ms")
    check(not slow, f"/health answered 200 within 1 s throughout ({len(slow)} slow or failed: {slow[:5]})")
    stats = t.stats()
    check(stats["rabbitmq"]["reconnects"] >= 2, f"stats count the reconnects ({stats['rabbitmq']['reconnects']})")
    check(t.metric("transmitter_reconnects_total", peer="rabbitmq") >= 2, "metric transmitter_reconnects_total")
    check(f1["dead_letter_queue"] == 0 and f2["dead_letter_queue"] == 0, "nothing dead-lettered")
    text = t.log_text()
    check("PRECONDITION_FAILED" not in text and "unknown delivery tag" not in text,
          "no ack went out with a delivery tag the channel did not know")
    check(t.stop() == 0, "SIGTERM: exit status 0")
    try:
        f3 = stop_frozen_phase(case)
    finally:
        case.devenv.heal()
    check(f3["dead_letter_queue"] == 0, "nothing dead-lettered")
    log(f"FIGURE fault_broker: restart {f1}; freeze {f2}; stop while frozen {f3}")


if __name__ == "__main__":
    main("fault_broker", body)
