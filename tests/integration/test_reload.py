#!/usr/bin/env python3
"""SIGHUP mid-flow (architecture §7): MAX_IN_FLIGHT and BATCH_SIZE from the re-read file take effect on
the running flow, with no request left waiting inside the HTTP client past its timeout, and no
event lost. The destination holds each request 1 s, so the number of requests on the wire at once
is what the receiver sees."""

import re
import signal

from harness import check, log, main, wait_for

HOLD_S = 1.0


def body(case):
    case.declare()
    case.receiver.fault(delay_s=HOLD_S)
    # A prefetch window large enough for 4 batches of 20 from the start (the default is pinned to
    # the settings at start).
    t = case.transmitter(RABBITMQ_PREFETCH=200, BATCH_INTERVAL_S=1, REQUEST_TIMEOUT_S=3)
    t.write_config(MAX_IN_FLIGHT=1, BATCH_SIZE=20)
    ids = case.publish(3000, prefix="rld")
    t.start()
    t.wait_ready()
    case.wait_for_count(100, 30)
    seen = case.receiver.counts()["max_in_flight"]
    check(seen == 1, f"MAX_IN_FLIGHT=1: one request at a time at the receiver ({seen})")

    t.write_config(MAX_IN_FLIGHT=4, BATCH_SIZE=40)
    mark = t.log_offset()
    t.signal(signal.SIGHUP)
    t.wait_log(r"Configuration reloaded", 10, since=mark)
    wait_for(lambda: case.receiver.counts()["max_in_flight"] >= 4, 15, "4 requests on the wire at once")
    log(f"after the reload: {case.receiver.counts()['max_in_flight']} requests at once at the receiver")
    wait_for(lambda: any(b["events"] == 40 for b in case.receiver.batches()), 15, "a batch of the new size 40")

    case.receiver.clear_faults()
    case.wait_delivered(ids, timeout=120)
    case.wait_settled(timeout=60)
    fig = case.account(ids, name="reload")
    check(fig["dead_letter_queue"] == 0, "nothing dead-lettered")
    log_text = t.log_since(mark)
    failed = re.findall(r"^<\d>Batch \S+ attempt \d+/\d+ failed.*$", log_text, re.M)
    check(not failed, f"no request failed after the reload (none waited past its timeout): {failed[:3]}")
    sizes = [b["events"] for b in case.receiver.batches()]
    check(max(sizes) == 40, f"no batch larger than BATCH_SIZE ({max(sizes)})")
    log(f"FIGURE reload: {fig}")
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("reload", body)
