#!/usr/bin/env python3
"""The HTTP API after real traffic (architecture §8): 1,000 events of which 4 are refused by the destination
(400, split down to themselves), 3 bodies that are not JSON and 1 empty body. Then:
- /metrics parses, promtool check metrics finds nothing, every family has HELP and TYPE, and the counters
  equal what the receiver and PostgreSQL saw (events, batches by outcome, requests by code, bytes,
  histogram counts and sums); the process_* metrics agree with /proc;
- /api/v1/stats has the Python service's fields and the rest, equal to the same sources, and the
  PostgreSQL totals by status once read;
- the routes: Content-Type on every answer, 404 and 405 (with Allow) and 413 as JSON, HEAD without a body,
  keep-alive on plain GETs, and a request body refused without being read."""

import re
import time

from harness import (TestFailure, api_parse_metrics, api_promtool, api_raw, api_request, check, log, main,
                     wait_for)

N = 1000
MARK_EVERY = 250  # events 250, 500, 750, 1000 carry the marker the receiver refuses
BATCH_SIZE = 100
MAX_IN_FLIGHT = 2
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def wait_quiet(case, t, timeout=120):
    """Until the queue is settled and the daemon holds nothing: its counters are final."""
    def quiet():
        if case.queue_counts() != (0, 0):
            return False
        s = t.stats()
        return s["pending_items"] == 0 and s["batches"]["in_flight"] == 0 and s["database"]["backlog"] == 0
    wait_for(quiet, timeout, "the queue settled and nothing held in the daemon", interval=0.5)


def check_metrics(case, t, started_at):
    status, headers, body, _ = api_request(t.port, path="/metrics")
    check(status == 200, "/metrics answers 200")
    check(headers.get("content-type") == "text/plain; version=0.0.4; charset=utf-8",
          f"/metrics Content-Type is the 0.0.4 text format ({headers.get('content-type')})")
    text = body.decode()
    samples, families = api_parse_metrics(text)

    result = api_promtool(text)
    if result is None:
        raise TestFailure("promtool not found (Debian package prometheus): the check cannot run")
    rc, said = result
    check(rc == 0 and said == "", f"promtool check metrics finds nothing (status {rc}, said {said!r})")

    for name, (kind, help_text) in families.items():
        check(kind in ("counter", "gauge", "histogram") and help_text, f"{name}: TYPE {kind} and a HELP")
    for (name, _labels) in samples:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if not (name in families or (base in families and families[base][0] == "histogram")):
            raise TestFailure(f"sample {name} has no HELP/TYPE family")
    check(True, f"every one of {len(samples)} samples belongs to a family with HELP and TYPE")
    for name in ("transmitter_events_received_total", "transmitter_events_sent_total",
                 "transmitter_events_dead_lettered_total", "transmitter_batches_total",
                 "transmitter_http_requests_total", "transmitter_payload_bytes_total", "transmitter_reconnects_total",
                 "transmitter_circuit_state", "transmitter_in_flight_batches", "transmitter_pending_events",
                 "transmitter_up", "transmitter_http_request_duration_seconds", "transmitter_batch_events",
                 "transmitter_batch_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_start_time_seconds", "process_max_fds"):
        if name not in families:
            raise TestFailure(f"family {name} missing from /metrics")
    check(True, "every family the issue names is there")

    def m(name, **labels):
        v = samples.get((name, frozenset(labels.items())))
        if v is None:
            raise TestFailure(f"no sample {name}{labels}")
        return v

    counts = case.receiver.counts()
    rows = case.sql("SELECT status, item_count, payload_size FROM transmitter.batches")
    rows_sent = [r for r in rows if r[0] == "sent"]
    rows_failed = [r for r in rows if r[0] == "failed"]
    by_status = counts["requests_by_status"]

    check(m("transmitter_events_received_total") == N + 4, f"events_received_total = {N + 4} published")
    check(m("transmitter_events_sent_total") == counts["unique_events"] == N - 4,
          f"events_sent_total = the receiver's {counts['unique_events']} events")
    check(m("transmitter_events_dead_lettered_total", reason="not_json") == 3, "dead_lettered{not_json} = 3")
    check(m("transmitter_events_dead_lettered_total", reason="empty") == 1, "dead_lettered{empty} = 1")
    for reason in ("not_object", "invalid_utf8", "too_large"):
        check(m("transmitter_events_dead_lettered_total", reason=reason) == 0, f"dead_lettered{{{reason}}} at 0")
    if ("transmitter_events_dead_lettered_total", frozenset({("reason", "http_400")})) in samples:
        check(m("transmitter_events_dead_lettered_total", reason="http_400") == 4,
              "dead_lettered{http_400} = 4, the x-transmitter-reason of the refused events")
        others = [dict(k[1])["reason"] for k in samples if k[0] == "transmitter_events_dead_lettered_total"
                  and dict(k[1])["reason"].startswith("http")]
        check(others == ["http_400"], f"no other per-status series than the status seen ({others})")
    else:
        log("note: the pipeline counts destination refusals as one reason, \"http\" (no per-status counts)")
        check(m("transmitter_events_dead_lettered_total", reason="http") == 4, "dead_lettered{http} = 4")

    check(m("transmitter_batches_total", outcome="sent") == len(rows_sent) == counts["batches"],
          f"batches_total{{sent}} = {len(rows_sent)} rows 'sent' = the receiver's batches")
    check(m("transmitter_batches_total", outcome="failed") == len(rows_failed),
          f"batches_total{{failed}} = {len(rows_failed)} rows 'failed'")
    split = sum(1 for r in rows_failed if int(r[1]) > 1)
    check(m("transmitter_batches_total", outcome="split") == split,
          f"batches_total{{split}} = {split} refused batches of more than one event")
    check(m("transmitter_http_requests_total", code="200") == by_status.get("200", 0),
          f"http_requests_total{{200}} = the receiver's {by_status.get('200', 0)}")
    check(m("transmitter_http_requests_total", code="400") == by_status.get("400", 0),
          f"http_requests_total{{400}} = the receiver's {by_status.get('400', 0)}")
    codes = sorted(dict(k[1])["code"] for k in samples if k[0] == "transmitter_http_requests_total")
    check(codes == sorted(by_status), f"a series per code the receiver answered ({codes})")
    check(m("transmitter_http_request_duration_seconds_count") == counts["requests"],
          f"request duration histogram counts the receiver's {counts['requests']} requests")
    check(m("transmitter_http_request_duration_seconds_bucket", le="+Inf") == counts["requests"],
          "its +Inf bucket equals its count")
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in samples.items()
                     if k[0] == "transmitter_http_request_duration_seconds_bucket")
    check(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "its buckets are cumulative")
    check(0 < m("transmitter_http_request_duration_seconds_sum") < 60 * counts["requests"], "its sum is plausible")

    check(m("transmitter_payload_bytes_total", stage="compressed") == sum(int(r[2]) for r in rows),
          "payload_bytes_total{compressed} = the sum of payload_size over every row")
    check(m("transmitter_payload_bytes_total", stage="raw") > m("transmitter_payload_bytes_total", stage="compressed"),
          "raw bytes exceed compressed bytes")
    check(m("transmitter_batch_events_count") == len(rows), f"batch_events histogram counts the {len(rows)} rows")
    check(m("transmitter_batch_events_sum") == sum(int(r[1]) for r in rows), "batch_events_sum = sum of item_count")
    check(m("transmitter_batch_bytes_sum") == sum(int(r[2]) for r in rows), "batch_bytes_sum = sum of payload_size")

    check(m("transmitter_up", peer="rabbitmq") == 1 and m("transmitter_up", peer="postgresql") == 1, "both peers up")
    check(m("transmitter_reconnects_total", peer="rabbitmq") == 0
          and m("transmitter_reconnects_total", peer="postgresql") == 0, "no reconnects")
    check(m("transmitter_circuit_state") == 0, "circuit closed (0)")
    check(m("transmitter_in_flight_batches") == 0 and m("transmitter_pending_events") == 0, "nothing in flight")

    pid = t.proc.pid
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    check(abs(m("process_start_time_seconds") - started_at) < 3,
          f"process_start_time_seconds {m('process_start_time_seconds'):.2f} is when the test started it "
          f"({started_at:.2f})")
    check(0.5 * rss_kb * 1024 < m("process_resident_memory_bytes") < 2 * rss_kb * 1024,
          f"process_resident_memory_bytes {m('process_resident_memory_bytes'):.0f} agrees with VmRSS {rss_kb} kB")
    check(0 < m("process_cpu_seconds_total") < time.time() - started_at + 1, "process_cpu_seconds_total plausible")
    check(m("process_open_fds") > 3 and m("process_open_fds") <= m("process_max_fds"), "process_open_fds plausible")
    return samples


def check_stats(case, t, samples):
    rows = case.sql("SELECT status, count(*), sum(item_count) FROM transmitter.batches GROUP BY status")
    db = {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def totals_current():
        s = t.stats()
        tot = s["database"]["totals"]
        return tot and all(tot["batches"][k] == db.get(k, (0, 0))[0] for k in tot["batches"]) and s

    s = wait_for(totals_current, 15, "the stats' PostgreSQL totals to match the table")
    log(f"/api/v1/stats: {s}")
    counts = case.receiver.counts()

    check(s["service"] == "transmitter" and s["version"] and s["instance"].startswith("test-"), "who it is")
    check(s["pending_items"] == 0, "pending_items (Python service) is 0")
    check(s["batches_sent"] == counts["batches"] == samples[("transmitter_batches_total",
                                                               frozenset({("outcome", "sent")}))],
          "batches_sent (Python service) = the receiver's batches = the metric")
    check(s["batches_failed"] == db.get("failed", (0, 0))[0], "batches_failed (Python service) = rows 'failed'")
    check(s["events"]["received"] == N + 4 and s["events"]["sent"] == counts["unique_events"], "events received/sent")
    dead = s["events"]["dead_lettered"]
    http = dead["by_reason"].get("http_400", dead["by_reason"].get("http"))
    check(dead["total"] == 8 and dead["by_reason"]["not_json"] == 3 and dead["by_reason"]["empty"] == 1 and http == 4,
          f"dead-lettered by reason ({dead})")
    check(s["batches"]["sent"] == s["batches_sent"] and s["batches"]["in_flight"] == 0, "batches by status")
    b = s["bytes"]
    check(abs(b["compression_ratio"] - b["raw"] / b["compressed"]) < 1e-9 and b["compression_ratio"] > 1,
          f"bytes raw {b['raw']}, compressed {b['compressed']}, ratio {b['compression_ratio']:.2f}")
    check(s["prefetch"] == {"window": BATCH_SIZE * (MAX_IN_FLIGHT + 1), "in_use": 0, "utilization": 0.0},
          f"prefetch window and its use ({s['prefetch']})")
    check(s["circuit_breaker"]["state"] == "closed" and ISO.match(s["circuit_breaker"]["since"]),
          "circuit state and when it last changed")
    check(ISO.match(s["last_success_at"] or ""), "last success time")
    err = s["last_error"]
    check(err and err["http_status"] == 400 and "400" in err["message"] and ISO.match(err["at"]),
          f"last error with status and message ({err})")
    shown = case.devenv["RABBITMQ_URL"].replace("discovery:discovery@", "discovery:***@")
    check(s["rabbitmq"] == {"state": "connected", "url": shown, "reconnects": 0, "consumer_cancels": 0},
          f"broker state, the node in use with its password hidden, reconnects ({s['rabbitmq']})")
    check(s["database"]["state"] == "connected" and s["database"]["reconnects"] == 0, "database state and reconnects")
    tot = s["database"]["totals"]
    check(all(tot["batches"][k] == db.get(k, (0, 0))[0] and tot["events"][k] == db.get(k, (0, 0))[1]
              for k in ("pending", "sending", "sent", "failed")),
          f"PostgreSQL totals by status equal the table ({tot})")
    check(0 <= tot["age_seconds"] < 10, f"the totals are recent ({tot['age_seconds']:.2f} s)")
    check(s["uptime_seconds"] > 0 and ISO.match(s["started_at"]) and s["ready"] is True, "uptime, start, ready")


def check_routes(t):
    port = t.port
    json_type = "application/json"

    status, h, body, conn = api_request(port, path="/health")
    check(status == 200 and h["content-type"] == json_type and
          body == b'{"status":"healthy","service":"transmitter"}', "/health: 200, the Python service's body")
    sock = conn.sock
    for path in ("/ready", "/api/v1/stats", "/metrics", "/health"):
        status, h, _, conn = api_request(port, path=path, conn=conn)
        check(status == 200 and conn.sock is sock and "close" not in h.get("connection", ""),
              f"GET {path} answered on the same connection (keep-alive)")
    conn.close()

    status, h, body, conn = api_request(port, "HEAD", "/api/v1/stats")
    check(status == 200 and body == b"" and h["content-type"] == json_type and int(h["content-length"]) > 100,
          f"HEAD /api/v1/stats: headers and Content-Length ({h.get('content-length')}), no body")
    status, h, body, conn = api_request(port, "GET", "/health", conn=conn)
    check(status == 200 and body.startswith(b'{"status":"healthy"'), "and the connection goes on after a HEAD")
    conn.close()

    for path in ("/", "/nope", "/health/", "/api/v1/stats/x", "/metrics.txt", "/HEALTH"):
        status, h, body, _ = api_request(port, path=path)
        check(status == 404 and h["content-type"] == json_type and b'"error":"not_found"' in body,
              f"GET {path}: 404 JSON")
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"):
        status, h, body, _ = api_request(port, method, "/health")
        check(status == 405 and h.get("allow") == "GET, HEAD" and h["content-type"] == json_type
              and b'"error":"method_not_allowed"' in body, f"{method} /health: 405 JSON with Allow: GET, HEAD")
    status, h, body, _ = api_request(port, "POST", "/nope", body=b"x" * 100)
    check(status == 405 and h["content-type"] == json_type, "POST with a body: 405 JSON")

    # A body is refused before it is read; MHD then closes the connection, as it cannot know where the
    # next request would start.
    status, h, body, _ = api_request(port, "GET", "/health", body=b"x" * 5000,
                                     headers={"Content-Type": "application/octet-stream"})
    check(status == 413 and h["content-type"] == json_type and b'"error":"request_body_not_accepted"' in body
          and h.get("connection") == "close", "GET with a body: 413 JSON, connection closed")
    data, how = api_raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"5\r\nhello\r\n0\r\n\r\n")
    check(data.startswith(b"HTTP/1.1 413 ") and b"Content-Type: application/json" in data and how == "closed",
          "a chunked body: 413 JSON, closed")
    big = b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + b"y" * 65536
    data, how = api_raw(port, big)
    check(data.startswith(b"HTTP/1.1 413 "), f"a 10 MB body announced: 413 without reading it ({how})")
    data, how = api_raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n")
    check(data.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in data,
          "Expect: 100-continue with a body: 413 at once, no 100 Continue")
    # Pipelined: MHD answers one request per pass and asks, through MHD_get_timeout() = 0, to be
    # run again for the next; a timer left at sd-event's default accuracy (250 ms) made these
    # four take over a second.
    t0 = time.monotonic()
    data, how = api_raw(port, b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode()
                                       for p in ("/health", "/ready", "/metrics"))
                        + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    took = time.monotonic() - t0
    check(data.count(b"HTTP/1.1 200 OK\r\n") == 4 and how == "closed" and took < 0.5,
          f"4 pipelined requests answered in order in {took * 1000:.0f} ms (< 500)")
    data, how = api_raw(port, b"GET /health HTTP/1.0\r\n\r\n")
    check(data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n")[0] and data.endswith(b'"transmitter"}'),
          "HTTP/1.0 without Host: 200")


def body(case):
    case.declare()
    ids = case.publish(N, prefix="api", extra=["--marker", "POISON", "--marker-every", str(MARK_EVERY)])
    for raw in (b"not json", b"{\"truncated\":", b"<xml/>"):
        case.publish_raw(raw)
    case.publish_raw(b"")
    case.receiver.fault(reject_marker="POISON")

    t = case.transmitter(BATCH_SIZE=BATCH_SIZE, BATCH_INTERVAL_S=1, MAX_IN_FLIGHT=MAX_IN_FLIGHT)
    started_at = time.time()
    t.start()
    t.wait_ready()
    good = [i for n, i in enumerate(ids, 1) if n % MARK_EVERY != 0]
    case.wait_delivered(good, timeout=180)
    wait_quiet(case, t)
    dead = case.queue_counts(case.queue + ".dead")
    check(dead is not None and dead[0] == 8, f"8 messages in the dead-letter queue ({dead})")

    samples = check_metrics(case, t, started_at)
    check_stats(case, t, samples)
    check_routes(t)

    rc = t.stop()
    check(rc == 0, f"SIGTERM: exit status 0 (got {rc})")


if __name__ == "__main__":
    main("api", body)
