#!/usr/bin/env python3
"""/ready follows the peers (architecture §8, §9): 200 with every check named while RabbitMQ and PostgreSQL
are up; 503 naming rabbitmq (and why) once the broker is stopped, 200 again once it is back; the same
for the database. /health stays 200 and fast throughout, /metrics' transmitter_up{peer} and the
reconnect counters follow, and /api/v1/stats shows the connection states.

This stops the SHARED broker and database (tests run one at a time); whatever happens, they are
started again before the test ends."""

import json
import time

from harness import TestFailure, api_parse_metrics, api_request, check, log, main, wait_for

TIMEOUT_DOWN = 60    # the daemon notices a peer that closed its connections at once; slack for CI
TIMEOUT_UP = 180     # a RabbitMQ start alone takes 7-60 s here, then the daemon's reconnect backoff


def ready(t):
    """(status, body) of /ready; (0, None) when no answer."""
    try:
        status, h, body, _ = api_request(t.port, path="/ready", timeout=2)
    except OSError:
        return 0, None
    if h.get("content-type") != "application/json":
        raise TestFailure(f"/ready Content-Type {h.get('content-type')}")
    return status, json.loads(body)


def metric(t, name, **labels):
    _, _, body, _ = api_request(t.port, path="/metrics")
    samples, _ = api_parse_metrics(body.decode())
    return samples.get((name, frozenset(labels.items())))


def health_fast(t, limit=1.0):
    t0 = time.monotonic()
    status, _, _, _ = api_request(t.port, path="/health", timeout=5)
    took = time.monotonic() - t0
    check(status == 200 and took < limit, f"/health 200 in {took * 1000:.0f} ms (< {limit * 1000:.0f})")


def expect_ready(t, timeout, what):
    t0 = time.monotonic()
    status, r = wait_for(lambda: (lambda s, b: (s, b) if s == 200 else None)(*ready(t)), timeout, what, interval=0.25)
    check(r == {"status": "ready", "database": "connected", "rabbitmq": "connected", "circuit_breaker": "closed",
                "checks": {"rabbitmq": {"ok": True, "state": "connected"},
                           "database": {"ok": True, "state": "connected"},
                           "circuit_breaker": {"ok": True, "state": "closed"}},
                "reasons": []},
          f"{what}: 200 after {time.monotonic() - t0:.1f} s, every check named and ok")


def expect_not_ready(t, peer, field, timeout):
    t0 = time.monotonic()

    def down():
        s, b = ready(t)
        return (s, b) if s == 503 and b and b[field] == "disconnected" else None

    status, r = wait_for(down, timeout, f"/ready to turn 503 with {field} disconnected", interval=0.25)
    log(f"/ready: {r}")
    other = "database" if field == "rabbitmq" else "rabbitmq"
    check(r["status"] == "not_ready" and r[other] == "connected" and r["circuit_breaker"] == "closed",
          f"{peer} stopped: 503 after {time.monotonic() - t0:.1f} s, not_ready, {other} still connected")
    check(r["checks"][field] == {"ok": False, "state": "disconnected"} and r["checks"][other]["ok"] is True,
          f"checks.{field} is the failing one")
    check(any(x.startswith(f"{field}: ") for x in r["reasons"]) and len(r["reasons"]) == 1,
          f"the reason names {field}: {r['reasons']}")


def body(case):
    devenv = case.devenv
    t = case.transmitter(BATCH_SIZE=10, BATCH_INTERVAL_S=1)
    t.start()
    expect_ready(t, 60, "/ready at start")
    check(metric(t, "transmitter_up", peer="rabbitmq") == 1, "transmitter_up{rabbitmq} 1")

    try:
        log("stopping the shared broker")
        devenv.broker("stop")
        expect_not_ready(t, "broker", "rabbitmq", TIMEOUT_DOWN)
        health_fast(t)
        check(metric(t, "transmitter_up", peer="rabbitmq") == 0, "transmitter_up{rabbitmq} 0")
        check(t.stats()["rabbitmq"]["state"] == "disconnected", "stats: rabbitmq disconnected")
        # Still not ready a while later: no flapping while it retries.
        time.sleep(3)
        check(ready(t)[0] == 503, "still 503 a few seconds later")
        log("starting the shared broker again")
        devenv.broker("start")
        expect_ready(t, TIMEOUT_UP, "/ready once the broker is back")
        check(metric(t, "transmitter_reconnects_total", peer="rabbitmq") >= 1, "reconnects_total{rabbitmq} >= 1")
        s = t.stats()
        check(s["rabbitmq"]["state"] == "connected" and s["rabbitmq"]["reconnects"] >= 1,
              f"stats: rabbitmq connected, reconnects {s['rabbitmq']['reconnects']}")

        log("stopping the shared database")
        devenv.database("stop")
        expect_not_ready(t, "database", "database", TIMEOUT_DOWN)
        health_fast(t)
        check(metric(t, "transmitter_up", peer="postgresql") == 0, "transmitter_up{postgresql} 0")
        check(t.stats()["database"]["state"] == "disconnected", "stats: database disconnected")
        time.sleep(3)
        check(ready(t)[0] == 503, "still 503 a few seconds later")
        log("starting the shared database again")
        devenv.database("start")
        expect_ready(t, TIMEOUT_UP, "/ready once the database is back")
        check(metric(t, "transmitter_reconnects_total", peer="postgresql") >= 1, "reconnects_total{postgresql} >= 1")
        s = t.stats()
        check(s["database"]["state"] == "connected" and s["database"]["reconnects"] >= 1,
              f"stats: database connected, reconnects {s['database']['reconnects']}")
    finally:
        # Both idempotent: a no-op for a peer that is running.
        devenv.broker("start")
        devenv.database("start")

    # And the pipeline works after both came back.
    case.declare()
    ids = case.publish(50, prefix="ready")
    case.wait_delivered(ids, timeout=120)
    check(True, "events flow after both peers came back")
    rc = t.stop()
    check(rc == 0, f"SIGTERM: exit status 0 (got {rc})")


if __name__ == "__main__":
    main("api_ready", body)
