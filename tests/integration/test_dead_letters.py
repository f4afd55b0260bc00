#!/usr/bin/env python3
"""transmitter dead-letters (docs/architecture.md §13, transmitter-dead-letters(8)) against a real broker, database and receiver.

2,000 events, 20 of them refused by the destination (400 marker) and 7 malformed: `list` shows the 27
with their reasons and leaves the queue as it was, in order; `show` prints one; `replay --reason
http_400`, once the destination takes them, republishes exactly those 20 (headers renamed, a replay
count, routing key, properties and body kept) and they are delivered, while the 7 stay, in order;
`purge` deletes by reason. Then 5,000 dead letters: a replay killed with SIGKILL half-way and a
second replay deliver every one, leave none, and send at most one twice. Bad input (unknown options,
a --reason that matches nothing, a broker that is down, a body that is no JSON) gives one clear line
and the daemon's exit statuses (0, 1, 64 usage, 78 configuration)."""

import json
import os
import signal
import subprocess
import time

from harness import TRANSMITTER_BIN, check, log, main, wait_for

MARKER = "POISONPILL"
N = 2000
EVERY = 100
MALFORMED = [
    (b"", "empty"),
    (b"hello, world", "not_json"),
    (b'{"specversion":"1.0","id":"trunc-1","data":{', "not_json"),
    (b"[1,2,3]", "not_object"),
    (b'"just a string"', "not_object"),
    (b"42", "not_object"),
    (b'{"specversion":"1.0","id":"utf-1","data":{"name":"caf\xc3\x28"}}', "invalid_utf8"),
]
KILL_N = 5000
SECRET = "s3cr3t-never-shown"


def identity(m):
    """What tells dead letters apart, event id or not: the body."""
    return m["body"]


def reasons_of(msgs):
    out = {}
    for m in msgs:
        r = m["headers"].get("x-transmitter-reason")
        out[r] = out.get(r, 0) + 1
    return out


def produce(case, t):
    """2,000 events (every 100th carries the marker) with the 7 malformed bodies mixed in; returns
    (ids, marked ids)."""
    case.receiver.fault(reject_marker=MARKER)
    marker = ["--marker", MARKER, "--marker-every", str(EVERY)]
    ids = []
    chunk = N // len(MALFORMED)
    for body, _ in MALFORMED:
        ids += case.publish(chunk, prefix="dl", start=len(ids) + 1, extra=marker)
        case.publish_raw(body)
    ids += case.publish(N - len(ids), prefix="dl", start=len(ids) + 1, extra=marker)
    return ids, {f"dl-{i:06d}" for i in range(EVERY, N + 1, EVERY)}


def phase_list_show(case, t, ids, marked):
    before = case.dead_letters()
    want = {"http_400": 20, "not_json": 2, "not_object": 3, "empty": 1, "invalid_utf8": 1}
    check(len(before) == 27 and reasons_of(before) == want, f"27 dead letters: {reasons_of(before)}")

    rc, out, err = case.cli("dead-letters", "list")
    check(rc == 0 and err == "", "list: exit 0, nothing on stderr")
    check(out.startswith(f"{case.dead_queue}: 27 dead letters ("), "list: says 27 dead letters")
    block = out.split("By reason:\n", 1)[1].split("\n\n", 1)[0]
    shown = {line.split()[0]: int(line.split()[1]) for line in block.splitlines()}
    check(shown == want, f"list: counts by reason {shown}")
    check("By HTTP status:\n  400       20\n" in out, "list: 20 by HTTP status 400")
    rows = out.split("\nPOS ", 1)[1].splitlines()[1:]
    check(len(rows) == 27, "list: a row for each of the 27")
    check("  oldest: " in out and "  newest: " in out and " without a time" not in out,
          "list: oldest and newest, every message with the time it was dead-lettered")
    check(all(any(i in r for r in rows) for i in marked), "list: every refused event's id is in a row")
    after = case.dead_letters()
    check([identity(m) for m in after] == [identity(m) for m in before], "list changed nothing, not even the order")

    rc, out, _ = case.cli("dead-letters", "list", "--json", "--limit", "0")
    doc = json.loads(out)
    check(rc == 0 and doc["matched"] == 27 and doc["by_reason"] == want and doc["by_http_status"] == {"400": 20},
          "list --json: the same counts")
    check([m["position"] for m in doc["messages"]] == list(range(1, 28)), "list --json: positions 1..27 in order")
    check([m["reason"] for m in doc["messages"]] == [m["headers"]["x-transmitter-reason"] for m in before],
          "list --json: each message's reason, in queue order")
    refused = [m for m in doc["messages"] if m["reason"] == "http_400"]
    check({m["event_id"] for m in refused} == marked and all(m["http_status"] == 400 and len(m["batch_id"]) == 36
                                                              for m in refused),
          "list --json: the 20 refused: their event ids, status 400, a batch id")

    rc, out, _ = case.cli("dead-letters", "list", "--reason", "not_json,empty", "--json")
    doc = json.loads(out)
    check(rc == 0 and doc["matched"] == 3 and doc["in_queue"] == 27, "list --reason not_json,empty: 3 of 27")
    now = time.time()
    stamps = [m["headers"].get("x-transmitter-dead-lettered-at") for m in before]
    check(all(isinstance(x, int) and now - 600 < x <= now + 1 for x in stamps),
          "every dead letter carries x-transmitter-dead-lettered-at, the time it was dead-lettered")
    rc, out, _ = case.cli("dead-letters", "list", "--older-than", "1h", "--json")
    check(rc == 0 and json.loads(out)["matched"] == 0, "list --older-than 1h: none (they are minutes old)")
    time.sleep(2)
    rc, out, _ = case.cli("dead-letters", "list", "--older-than", "1s", "--json")
    check(rc == 0 and json.loads(out)["matched"] == 27, "list --older-than 1s: all 27")

    one = sorted(marked)[0]
    rc, out, _ = case.cli("dead-letters", "show", one)
    check(rc == 0 and f"Event id:      {one}\n" in out and "Reason:        http_400\n" in out
          and "HTTP status:   400\n" in out and "content_type: application/json" in out
          and "x-transmitter-batch-id: " in out and f'\n  "id": "{one}",\n' in out,
          f"show {one}: reason, status, properties, headers, the body pretty-printed")
    rc, out, _ = case.cli("dead-letters", "show", "--json", one)
    doc = json.loads(out)
    check(rc == 0 and doc["body"]["id"] == one and doc["headers"]["x-transmitter-reason"] == "http_400",
          "show --json: the body as JSON, the headers")

    pos = next(n for n, m in enumerate(before, 1) if m["body"] == b"hello, world")
    rc, out, err = case.cli("dead-letters", "show", f"@{pos}")
    check(rc == 0 and "Reason:        not_json\n" in out and
          "\nBody: not a JSON object, shown as text:\nhello, world\n" in out,
          f"show @{pos}: a body that is no JSON is shown as text, and said so")
    rc, out, err = case.cli("dead-letters", "show", "no-such-event")
    check(rc == 1 and out == "" and err.strip() == "transmitter dead-letters: no dead letter with event id "
          f"'no-such-event' among the 27 messages of {case.dead_queue}", "show of an unknown id: exit 1, one line")
    check([identity(m) for m in case.dead_letters()] == [identity(m) for m in before], "show changed nothing")
    return before


def phase_replay(case, t, ids, marked, before):
    delivered_before = set(case.receiver.events()["ids"])
    check(delivered_before == set(ids) - marked, "before the replay the receiver has all but the 20 refused")

    rc, out, err = case.cli("dead-letters", "replay", "--reason", "http_500")
    check(rc == 1 and err.strip().startswith("transmitter dead-letters: no dead letter matches the filter (27 read: "),
          "replay --reason http_500: matches nothing, exit 1, says what there is")
    rc, out, err = case.cli("dead-letters", "replay", "--reason", "http_400", "--dry-run")
    check(rc == 0 and "Would replay 20 of the 27 dead letters" in out, "replay --dry-run: would replay 20")
    check(len(case.dead_letters()) == 27, "the dry run changed nothing")

    # Stopped, the daemon leaves the replayed messages in its queue, where their headers show.
    check(t.stop() == 0, "daemon stopped for the replay")
    case.receiver.clear_faults()
    rc, out, err = case.cli("dead-letters", "replay", "--reason", "http_400")
    check(rc == 0 and out.strip() == f"Replayed 20 dead letters to exchange {case.exchange}; 7 of the 27 read "
          f"stay in {case.dead_queue}.", "replay --reason http_400: 20 replayed, 7 stay")
    left = case.dead_letters()
    check([identity(m) for m in left] == [identity(m) for m in before if m["headers"]["x-transmitter-reason"] !=
                                           "http_400"], "the 7 malformed stay in the dead-letter queue, in order")
    queued = case.queue_messages(case.queue)
    by_id = {m["event_id"]: m for m in before}
    check({m["event_id"] for m in queued} == marked, "the 20 refused events are back in the main queue")
    for m in queued:
        h, old = m["headers"], by_id[m["event_id"]]
        ok = (h.get("x-transmitter-replayed-reason") == "http_400" and h.get("x-transmitter-replayed-http-status") == 400
              and h.get("x-transmitter-replayed-batch-id") == old["headers"]["x-transmitter-batch-id"]
              and h.get("x-transmitter-replay-count") == 1 and "x-transmitter-reason" not in h
              and "x-transmitter-batch-id" not in h and m["body"] == old["body"]
              and m["routing_key"] == old["routing_key"] and m["content_type"] == "application/json"
              and m["delivery_mode"] == 2)
        if not ok:
            check(False, f"replayed {m['event_id']}: headers renamed, routing key, properties, body kept: {m}")
    check(True, "each replayed message: x-transmitter-* renamed to x-transmitter-replayed-*, replay count 1, "
          "routing key, content type, persistence and body kept")

    t.start()
    case.wait_delivered(marked, timeout=60)
    case.wait_settled(timeout=60)
    events = case.receiver.events()
    check(set(events["ids"]) - delivered_before == marked, "the receiver got exactly the 20 replayed events")
    check(not events["duplicates"], "and nothing twice")

    rc, out, _ = case.cli("dead-letters", "purge", "--reason", "not_object", "--yes")
    check(rc == 0 and out.strip() == f"Deleted 3 dead letters from {case.dead_queue}; 4 of the 7 read stay.",
          "purge --reason not_object --yes: 3 deleted")
    check(reasons_of(case.dead_letters()) == {"not_json": 2, "empty": 1, "invalid_utf8": 1}, "4 left, those not purged")


def phase_refused_again(case, t):
    """Replayed while the destination still refuses it: back in the dead-letter queue, with its new
    reason, once."""
    case.receiver.fault(reject_marker="AGAIN")
    again = case.publish(1, prefix="again", extra=["--marker", "AGAIN"])[0]
    wait_for(lambda: any(m["event_id"] == again for m in case.dead_letters()), 60, f"{again} dead-lettered")
    rc, out, _ = case.cli("dead-letters", "replay", "--event-id", again)
    check(rc == 0 and out.startswith("Replayed 1 dead letters"), f"{again} replayed while still refused")
    dead = wait_for(lambda: [m for m in case.dead_letters() if m["event_id"] == again], 60,
                    f"{again} refused again")
    h = dead[0]["headers"]
    check(len(dead) == 1 and h["x-transmitter-reason"] == "http_400" and h.get("x-transmitter-replay-count") == 1
          and h.get("x-transmitter-replayed-reason") == "http_400",
          f"refused again: dead-lettered again, once, with its new reason and the replay count ({h})")
    rc, out, _ = case.cli("dead-letters", "list", "--event-id", again, "--json")
    check(rc == 0 and json.loads(out)["messages"][0]["replay_count"] == 1, "list shows it was replayed once")
    rc, out, _ = case.cli("dead-letters", "purge", "--event-id", again, "--yes")
    check(rc == 0 and out.startswith("Deleted 1 dead letters"), "purge --event-id")
    case.receiver.clear_faults()


def phase_kill(case, t):
    """A replay of 5,000 dead letters killed half-way, then run again."""
    case.receiver.fault(reject_marker="KILLME", status=404)
    kill_ids = case.publish(KILL_N, prefix="kill", extra=["--marker", "KILLME"])
    wait_for(lambda: case.queue_counts(case.dead_queue) == (KILL_N + 4, 0), 120,
             f"{KILL_N} more dead letters (reason http_404)", interval=1)
    case.receiver.clear_faults()

    err_path = os.path.join(case.workdir, "replay-killed.err")
    with open(err_path, "w") as err:
        p = subprocess.Popen([TRANSMITTER_BIN, "dead-letters", "replay", "--reason", "http_404"],
                             env=case.cli_environment(), stdout=subprocess.DEVNULL, stderr=err)
    wait_for(lambda: p.poll() is not None or case.receiver.counts()["unique_events"] >= N - 3 + KILL_N // 2, 120,
             "half of the replay at the receiver", interval=0.02)
    running = p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait()
    check(running, "kill -9 of the replay while it runs")
    wait_for(lambda: (case.queue_counts(case.dead_queue) or (0, 1))[1] == 0, 30,
             "the killed replay's unacked messages back in the queue", interval=0.5)
    remaining = case.queue_counts(case.dead_queue)[0] - 4
    check(0 < remaining < KILL_N, f"killed half-way: {KILL_N - remaining} replayed, {remaining} still dead")

    rc, out, err = case.cli("dead-letters", "replay", "--reason", "http_404")
    check(rc == 0 and out.startswith(f"Replayed {remaining} dead letters"), f"the second replay: {remaining} more")
    case.wait_delivered(kill_ids, timeout=120)
    case.wait_settled(timeout=60)
    counts = case.receiver.event_counts()
    twice = [i for i in kill_ids if counts.get(i, 0) > 1]
    log(f"FIGURE dead_letters kill -9: {KILL_N} dead letters, replay killed after {KILL_N - remaining}, second "
        f"replay {remaining}; delivered {sum(1 for i in kill_ids if i in counts)}, duplicated {len(twice)}"
        f"{' (' + ', '.join(f'{i}x{counts[i]}' for i in twice) + ')' if twice else ''}, left "
        f"{case.queue_counts(case.dead_queue)[0] - 4}")
    check(all(i in counts for i in kill_ids), f"every one of the {KILL_N} delivered")
    check(case.queue_counts(case.dead_queue) == (4, 0), "none of them left in the dead-letter queue")
    check(len(twice) <= 1 and all(counts[i] <= 2 for i in twice), f"at most one sent twice ({len(twice)})")


def phase_bad_input(case):
    def one_line(err):
        return len(err.strip().splitlines()) <= 2 and err.startswith("transmitter dead-letters: ")

    for args, what in ((["dead-letters", "list", "--bogus"], "an unknown option"),
                       (["dead-letters", "frobnicate"], "an unknown command"),
                       (["dead-letters", "list", "--older-than", "2 hours"], "a bad duration"),
                       (["dead-letters", "purge", "--reason", "empty"], "purge without --yes"),
                       (["dead-letters", "replay", "--reason", "HTTP-400!"], "a --reason that is no reason")):
        rc, out, err = case.cli(*args)
        check(rc == 64 and out == "" and one_line(err) and "Try 'transmitter dead-letters --help'." in err,
              f"{what}: exit 64 and a clear line")
    rc, out, err = case.cli("dead-letters", "replay", "--reason", "too_large")
    check(rc == 1 and one_line(err) and "no dead letter matches" in err, "a --reason that matches nothing: exit 1")
    rc, out, err = case.cli("dead-letters", "list", settings={"BATCH_SIZE": "lots"})
    check(rc == 78 and "TRANSMITTER_BATCH_SIZE=lots" in err, "a bad setting: exit 78, naming it")
    rc, out, err = case.cli("dead-letters", "list",
                            settings={"RABBITMQ_URL": f"amqp://discovery:{SECRET}@127.0.0.1:9/"})
    check(rc == 1 and one_line(err) and "cannot connect to RabbitMQ at 127.0.0.1:9" in err and SECRET not in out + err,
          "a broker that is down: exit 1, one line, no password")
    down = f"amqp://discovery:{SECRET}@127.0.0.1:9/,amqp://discovery:{SECRET}@127.0.0.1:10/"
    rc, out, err = case.cli("dead-letters", "list", settings={"RABBITMQ_URL": down})
    check(rc == 1 and one_line(err) and "127.0.0.1:9: " in err and "127.0.0.1:10: " in err and SECRET not in out + err,
          "every node of a RABBITMQ_URL list down: exit 1, one line naming each, no password")
    rc, out, err = case.cli("dead-letters", "list", "--json",
                            settings={"RABBITMQ_URL": f"amqp://discovery:{SECRET}@127.0.0.1:9/,"
                                                      + case.devenv["RABBITMQ_URL"]})
    check(rc == 0 and json.loads(out)["in_queue"] >= 0, "the first node of a RABBITMQ_URL list down: the next one serves")
    rc, out, err = case.cli("dead-letters", "list", settings={"RABBITMQ_URL": case.devenv["RABBITMQ_URL"].replace(
        "discovery:discovery@", f"discovery:{SECRET}@")})
    check(rc == 1 and one_line(err) and "ACCESS_REFUSED" in err and SECRET not in out + err,
          "a wrong password: exit 1, one line, the password not shown")
    rc, out, err = case.cli("dead-letters", "list", settings={"RABBITMQ_QUEUE": "no.such.queue"})
    check(rc == 1 and "no.such.queue.dead does not exist" in err, "no dead-letter queue: exit 1, says so")


def body(case):
    case.declare()
    t = case.transmitter(BATCH_SIZE=100, BATCH_INTERVAL_S=1, CIRCUIT_FAILURE_THRESHOLD=10000)
    t.start()
    t.wait_ready()
    ids, marked = produce(case, t)
    check(len(marked) == 20, f"20 events carry the marker ({len(marked)})")
    case.wait_delivered(set(ids) - marked, timeout=120)
    case.wait_settled(timeout=60)
    before = phase_list_show(case, t, ids, marked)
    phase_replay(case, t, ids, marked, before)
    phase_refused_again(case, t)
    phase_kill(case, t)
    phase_bad_input(case)
    check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("dead_letters", body)
