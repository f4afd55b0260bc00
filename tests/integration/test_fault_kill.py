#!/usr/bin/env python3
"""kill -9 of the transmitter at random moments while it works through 50,000 events, restarted each
time (architecture §2: a crash at any moment loses nothing, unacked messages are redelivered): every event
is delivered; the duplicates are counted and printed; at each start the rows the killed instance
left 'pending' or 'sending' become 'failed' ("interrupted"); the queue ends empty and fully acked.
FAULT_KILL_SEED=N repeats a run's kill moments."""

import os
import random
import time

from harness import check, log, main

N = 50_000
KILLS = 6
MIN_KILLS = 5


def body(case):
    seed = int(os.environ.get("FAULT_KILL_SEED") or time.time())
    rnd = random.Random(seed)
    log(f"kill moments from seed {seed} (FAULT_KILL_SEED={seed} repeats them)")
    case.declare()
    ids = case.publish(N, prefix="kill")
    # Every answer takes 50 ms: delivery takes ~25 s, so that every kill lands mid-stream.
    case.receiver.fault(delay_s=0.05)
    t = case.transmitter(BATCH_SIZE=50, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=2, SHUTDOWN_TIMEOUT_S=5)
    want = set(ids)
    kills = []
    for k in range(KILLS):
        t.start()
        time.sleep(rnd.uniform(0.5, 2.5))
        got = case.receiver.counts()["unique_events"]
        if got >= N:
            break
        t.kill9()
        kills.append(got)
        unfinished = case.sql("SELECT count(*) FROM transmitter.batches WHERE status IN ('pending', 'sending')")
        log(f"kill -9 #{k + 1}: {got} distinct events at the receiver so far, {unfinished[0][0]} rows left "
            f"'pending' or 'sending'")
    check(len(kills) >= MIN_KILLS, f"{len(kills)} kills while events were still on their way (at least {MIN_KILLS})")

    t.start()
    events = case.wait_delivered(ids, timeout=180)
    case.wait_settled(timeout=60)
    check(want <= set(events["ids"]), f"all {N} events delivered")
    fig = case.account(ids)
    check(fig["dead_letter_queue"] == 0, "nothing dead-lettered")
    redelivered = t.metric("transmitter_events_redelivered_total")
    check(redelivered and redelivered > 0, f"the last instance counted {redelivered} redelivered messages")
    check(t.stop() == 0, "SIGTERM: exit status 0")

    # A row a killed instance left unfinished is either marked failed 'interrupted' by the next
    # start, or, when the redelivered events form the same batch again (same id), upserted by it
    # with one more retry_count.
    rows = case.rows()
    interrupted = [r for r in rows if r["error_message"] == "interrupted"]
    reformed = [r for r in rows if int(r["retry_count"]) > 0]
    left = [r for r in rows if r["status"] in ("pending", "sending")]
    check(not left, f"no row left 'pending' or 'sending' ({len(left)})")
    log(f"rows: {len(rows)}, marked 'interrupted' at a restart: {len(interrupted)}, re-formed with the same id "
        f"after a kill: {len(reformed)}")
    check(interrupted or reformed, "rows the killed instances left unfinished were taken care of")
    check(len({r["id"] for r in rows}) == len(rows), "one row per batch id")
    # Every event was acked at last, and only after a committed 'sent' row of its batch.
    sent = [r for r in rows if r["status"] == "sent"]
    check(sum(int(r["item_count"]) for r in sent) >= N, "the 'sent' rows account for every event at least once")
    log(f"FIGURE fault_kill: {len(kills)} kills at {kills} distinct events; {fig}; {len(sent)} sent rows, "
        f"{len(case.receiver.batches())} batches accepted")


if __name__ == "__main__":
    main("fault_kill", body)
