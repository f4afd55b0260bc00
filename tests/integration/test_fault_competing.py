#!/usr/bin/env python3
"""Two transmitters on the same queue (competing consumers, architecture §10), one killed with -9
mid-stream: the broker gives the killed one's unacked messages to the other, and every event is
delivered. Each row names the instance that wrote it; when the killed instance starts again, the
rows it left unfinished are marked failed 'interrupted' (or were taken over by a batch of the
same id from the other instance)."""

import time

from harness import check, log, main

N = 20_000


def body(case):
    case.declare()
    ids = case.publish(N, prefix="cc")
    case.receiver.fault(delay_s=0.05)
    settings = dict(BATCH_SIZE=50, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=2)
    a = case.another_transmitter("a", **settings)
    b = case.another_transmitter("b", **settings)
    a.start()
    b.start()
    a.wait_ready()
    b.wait_ready()
    case.wait_for_count(3000, 60)
    time.sleep(1)
    a_sent_before = a.stats()["events"]["sent"]
    check(a_sent_before > 0 and b.stats()["events"]["sent"] > 0, "both instances were delivering")
    a.kill9()
    log(f"killed instance a after it had sent {a_sent_before} events")
    events = case.wait_delivered(ids, timeout=180)
    case.wait_settled(timeout=60)
    check(set(ids) <= set(events["ids"]), f"all {N} events delivered")
    fig = case.account(ids)
    check(fig["dead_letter_queue"] == 0, "nothing dead-lettered")

    ia, ib = a.settings["TRANSMITTER_INSTANCE_ID"], b.settings["TRANSMITTER_INSTANCE_ID"]
    rows = case.rows("id, status, item_count, instance, error_message")
    by_instance = {}
    for r in rows:
        by_instance.setdefault(r["instance"], []).append(r)
    check(set(by_instance) <= {ia, ib} and ia in by_instance and ib in by_instance,
          f"rows name their instance ({ {k: len(v) for k, v in by_instance.items()} })")
    left_a = [r for r in by_instance.get(ia, []) if r["status"] in ("pending", "sending")]
    log(f"rows the killed instance left unfinished: {len(left_a)}")

    a.start()
    a.wait_ready()
    wait_rows = time.monotonic() + 10
    while time.monotonic() < wait_rows:
        still = case.sql(f"SELECT count(*) FROM transmitter.batches WHERE instance = '{ia}' "
                         "AND status IN ('pending', 'sending')")[0][0]
        if still == "0":
            break
        time.sleep(0.2)
    check(still == "0", "after its restart, none of its rows is left 'pending' or 'sending'")
    interrupted = case.sql(f"SELECT count(*) FROM transmitter.batches WHERE instance = '{ia}' "
                           "AND error_message = 'interrupted'")[0][0]
    check(int(interrupted) <= len(left_a), f"{interrupted} marked 'interrupted'")
    check(not [r for r in by_instance.get(ib, []) if r["status"] in ("pending", "sending")],
          "the surviving instance left no row unfinished")
    log(f"FIGURE fault_competing: {fig}; rows by instance: a {len(by_instance.get(ia, []))}, "
        f"b {len(by_instance.get(ib, []))}; a left {len(left_a)} unfinished, {interrupted} marked interrupted")
    check(a.stop() == 0 and b.stop() == 0, "SIGTERM: both exit with status 0")


if __name__ == "__main__":
    main("fault_competing", body)
