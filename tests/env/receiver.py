#!/usr/bin/env python3
"""Test HTTPS destination for transmitter (python3 stdlib only).

It plays the external discovery API of architecture §3: every POST must carry
  Authorization: Bearer <token>      (when a token is configured; else 401)
  Content-Type: application/json     (else 415)
  Content-Encoding: gzip             (else 415)
  Idempotency-Key: <batch_id>        (a UUID, equal to the body's batch_id; else 400)
  User-Agent: transmitter/...        (else 400)
and a gzip body {"batch_id": "<uuid>", "discoveries": [<object>, ...]} (else 400). An accepted batch is
answered 200 {"status":"accepted",...} and recorded: the batch, and every event by its CloudEvents id
(duplicates counted), with its receive time and, when data.published_at_us is present (see publish.c),
its latency. Rejected requests are recorded too, their events are not counted.

  receiver.py --port 0 --admin-port 0 --cert server.pem --key server.key --token-file token \
              --state-file receiver.json

Without --cert it serves plain HTTP (for TRANSMITTER_ALLOW_INSECURE_HTTP tests). With --client-ca it
demands a client certificate from that CA (mTLS). --token-file is re-read on every request; each
non-empty line is an accepted token, so a test can rotate tokens by rewriting the file. With neither
--token nor --token-file, requests without Authorization are accepted.

Admin endpoint (plain HTTP, 127.0.0.1:--admin-port), all JSON:
  GET  /counts     batches, events, unique_events, duplicates, requests (total, by_status), rejected,
                   last_token, bytes, in-flight (current and max), connections, ...
  GET  /events     {"ids": [...], "duplicates": {id: count>1}}; ?detail=1 for every event's count,
                   received_at, latency_ms, batch_id
  GET  /batches    every accepted batch; ?since=<epoch s>; with --batch-ids each has its event_ids
  GET  /requests   every request (time, status, batch_id, reason, fault...); ?since=<epoch s>
  GET  /latency    {"count", "p50_ms", "p90_ms", "p99_ms", "max_ms", "min_ms", "mean_ms"}
  GET  /faults     the active fault rules
  GET  /body?batch_id=ID   decompressed body of an accepted batch (only with --keep-bodies)
  GET  /health     {"status": "ok"}
  POST /reset      forget every record and every fault rule
  POST /faults     add a fault rule (JSON body), answered with the list of active rules:
     {"status": 503, "count": N}           answer 503 to the next N requests
     {"status": 503, "for_s": 30}          ... to every request for 30 s
     {"status": 503}                       ... until cleared
     "retry_after": "2"                    add a Retry-After header (with status)
     "headers": {"Location": "https://elsewhere/"}  add headers (e.g. for a 3xx)
     "body": "text"                        the response body for that status
     {"delay_s": 35}                       sleep before answering (then answer as usual or with status)
     {"drop": true}                        close the connection without an answer
     "after_accept": true                  first accept and record the batch, then apply the fault
                                           (response lost / late: the sender will retry, duplicates)
     {"reject_marker": "BAD"}              answer 400 with an explanation to any batch whose
                                           decompressed body contains "BAD" (status may override)
     {"max_body_bytes": N}                 answer 413 to batches whose uncompressed body exceeds N
     {"clear": true}                       remove every rule (may be combined with a new rule)
   count / for_s apply to any rule. Rules are checked in the order they were added; the first that
   matches applies. Rules without reject_marker/max_body_bytes apply before any validation (the server
   is "down"); marker and size rules apply to otherwise valid batches.

--light (for benchmarks) skips the JSON parse: event ids and published_at_us of publish.c events are
found by regex (6x faster for 1000-event batches); bodies that do not look like that are parsed fully.

On start it prints one JSON line {"pid", "port", "admin_port", "scheme"} to stdout (and to --state-file).
SIGTERM or SIGINT stops it. No per-request logging unless --verbose.
"""

import argparse
import array
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RE_BATCH_ID = re.compile(rb'"batch_id"\s*:\s*"([^"\\]*)"')
RE_EVENT_ID = re.compile(rb'"specversion"\s*:\s*"1\.0"\s*,\s*"id"\s*:\s*"([^"\\]*)"')
RE_PUBLISHED = re.compile(rb'"published_at_us"\s*:\s*(\d+)')


class Rule:
    KEYS = {"status", "count", "for_s", "retry_after", "headers", "body", "delay_s", "drop",
            "after_accept", "reject_marker", "max_body_bytes"}

    def __init__(self, spec):
        unknown = set(spec) - self.KEYS
        if unknown:
            raise ValueError("unknown fault keys: %s" % ", ".join(sorted(unknown)))
        self.spec = dict(spec)
        self.status = spec.get("status")
        if self.status is not None and not (isinstance(self.status, int) and 100 <= self.status <= 599):
            raise ValueError("status must be an integer 100..599")
        self.count = spec.get("count")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise ValueError("count must be a positive integer")
        for_s = spec.get("for_s")
        if for_s is not None and (not isinstance(for_s, (int, float)) or for_s <= 0):
            raise ValueError("for_s must be a positive number")
        self.until = time.monotonic() + for_s if for_s is not None else None
        self.retry_after = spec.get("retry_after")
        if self.retry_after is not None:
            self.retry_after = str(self.retry_after)
        self.headers = spec.get("headers") or {}
        if not isinstance(self.headers, dict):
            raise ValueError("headers must be an object")
        self.body = spec.get("body")
        self.delay_s = spec.get("delay_s") or 0
        if not isinstance(self.delay_s, (int, float)) or self.delay_s < 0:
            raise ValueError("delay_s must be a non-negative number")
        self.drop = bool(spec.get("drop"))
        self.after_accept = bool(spec.get("after_accept"))
        marker = spec.get("reject_marker")
        if marker is not None and (not isinstance(marker, str) or not marker):
            raise ValueError("reject_marker must be a non-empty string")
        self.marker = marker.encode() if marker else None
        self.max_body = spec.get("max_body_bytes")
        if self.max_body is not None and (not isinstance(self.max_body, int) or self.max_body < 0):
            raise ValueError("max_body_bytes must be a non-negative integer")
        self.content = self.marker is not None or self.max_body is not None
        if not (self.status or self.delay_s or self.drop or self.content):
            raise ValueError("a fault needs status, delay_s, drop, reject_marker or max_body_bytes")
        self.hits = 0

    def active(self, now):
        if self.count is not None and self.count <= 0:
            return False
        if self.until is not None and now >= self.until:
            return False
        return True

    def consume(self):
        self.hits += 1
        if self.count is not None:
            self.count -= 1

    def describe(self):
        d = dict(self.spec)
        d["hits"] = self.hits
        if self.count is not None:
            d["remaining"] = self.count
        if self.until is not None:
            d["remaining_s"] = round(max(0.0, self.until - time.monotonic()), 3)
        return d


class State:
    def __init__(self, keep_bodies, batch_ids=False):
        self.lock = threading.Lock()
        self.keep_bodies = keep_bodies
        self.batch_ids_kept = batch_ids
        self.rules = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.rules = []
            self.batches = []          # accepted batches, in order
            self.batch_ids = {}        # batch_id -> times accepted
            # Per event three flat dicts of ints/floats, not a container per event: the cyclic GC
            # would otherwise walk every recorded event again and again (10x slower at 1M events).
            self.event_count = {}      # event id -> times received
            self.event_batch = {}      # event id -> index in self.batches of its first receipt
            self.event_latency = {}    # event id -> ms from data.published_at_us to first receipt
            self.latencies = array.array("d")  # ms, first receipt of each event carrying published_at_us
            self.events_total = 0
            self.requests = []
            self.by_status = {}
            self.rejected = 0
            self.last_token = None
            self.bytes_compressed = 0
            self.bytes_uncompressed = 0
            self.bodies = {}
            self.max_in_flight = self.in_flight
            self.connections = 0
            self.tls_failures = 0
            self.started = time.time()

    # -- faults
    def add_rule(self, spec):
        with self.lock:
            if spec.get("clear"):
                self.rules = []
            spec = {k: v for k, v in spec.items() if k != "clear"}
            if spec:
                self.rules.append(Rule(spec))
            return [r.describe() for r in self.rules]

    def pick_rule(self, content, body=None):
        """First active rule of the kind asked for (and, for content rules, matching body)."""
        now = time.monotonic()
        with self.lock:
            for r in self.rules:
                if r.content != content or not r.active(now):
                    continue
                if content:
                    why = None
                    if r.marker is not None and r.marker in body:
                        why = "batch contains rejected marker %r" % r.marker.decode()
                    elif r.max_body is not None and len(body) > r.max_body:
                        why = "uncompressed body of %d bytes exceeds %d" % (len(body), r.max_body)
                    if why is None:
                        continue
                    r.consume()
                    return r, why
                r.consume()
                return r, None
        return None, None

    # -- records
    def record_request(self, rec):
        with self.lock:
            self.requests.append(rec)
            key = str(rec["status"]) if rec["status"] else "dropped"
            self.by_status[key] = self.by_status.get(key, 0) + 1
            if not rec.get("accepted"):
                self.rejected += 1
            if rec.get("token") is not None:
                self.last_token = rec["token"]

    def record_batch(self, batch_id, discoveries, compressed, uncompressed, body, meta):
        now = meta["received_at"]
        now_us = int(now * 1_000_000)
        n_events = len(discoveries)
        with self.lock:
            idx = len(self.batches)
            seen = self.batch_ids.get(batch_id, 0)
            self.batch_ids[batch_id] = seen + 1
            count = self.event_count
            first = self.event_batch
            latency = self.event_latency
            lat = self.latencies
            ids = [] if self.batch_ids_kept else None
            if discoveries and type(discoveries[0]) is tuple:   # --light: (id, published_at_us)
                for eid, pub in discoveries:
                    if ids is not None:
                        ids.append(eid)
                    n = count.get(eid)
                    if n is not None:
                        count[eid] = n + 1
                        continue
                    count[eid] = 1
                    first[eid] = idx
                    if pub is not None:
                        ms = (now_us - pub) / 1000.0
                        lat.append(ms)
                        latency[eid] = ms
                discoveries = ()
            for ev in discoveries:
                eid = ev.get("id")
                if type(eid) is not str:
                    eid = ("id:" + json.dumps(eid)) if eid is not None else \
                        "sha256:" + hashlib.sha256(json.dumps(ev, sort_keys=True).encode()).hexdigest()
                if ids is not None:
                    ids.append(eid)
                n = count.get(eid)
                if n is not None:
                    count[eid] = n + 1
                    continue
                count[eid] = 1
                first[eid] = idx
                data = ev.get("data")
                if type(data) is dict:
                    pub = data.get("published_at_us")
                    if type(pub) is int:
                        ms = (now_us - pub) / 1000.0
                        lat.append(ms)
                        latency[eid] = ms
            self.events_total += n_events
            self.bytes_compressed += compressed
            self.bytes_uncompressed += uncompressed
            rec = dict(meta)
            rec.update(batch_id=batch_id, events=n_events, compressed_bytes=compressed,
                       uncompressed_bytes=uncompressed, duplicate_batch=seen > 0)
            if ids is not None:
                rec["event_ids"] = ids
            self.batches.append(rec)
            if self.keep_bodies:
                self.bodies[batch_id] = body

    def counts(self):
        with self.lock:
            unique = len(self.event_count)
            return {
                "batches": len(self.batches),
                "unique_batches": len(self.batch_ids),
                "events": self.events_total,
                "unique_events": unique,
                "duplicates": self.events_total - unique,
                "requests": len(self.requests),
                "requests_by_status": dict(self.by_status),
                "rejected": self.rejected,
                "last_token": self.last_token,
                "bytes_compressed": self.bytes_compressed,
                "bytes_uncompressed": self.bytes_uncompressed,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "connections": self.connections,
                "tls_failures": self.tls_failures,
                "first_request_at": self.requests[0]["time"] if self.requests else None,
                "last_request_at": self.requests[-1]["time"] if self.requests else None,
                "faults_active": sum(1 for r in self.rules if r.active(time.monotonic())),
                "uptime_s": round(time.time() - self.started, 3),
            }

    def enter(self):
        with self.lock:
            self.in_flight += 1
            if self.in_flight > self.max_in_flight:
                self.max_in_flight = self.in_flight

    def leave(self):
        with self.lock:
            self.in_flight -= 1


class Rejection(Exception):
    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def read_tokens(args):
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                return {line.strip() for line in f if line.strip()}
        except OSError:
            return set()   # unreadable file: nothing is accepted (401), the test will notice
    if args.token is not None:
        return {args.token}
    return None


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return round(sorted_values[k], 3)


class DestinationHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "transmitter-test-receiver/1"
    sys_version = ""
    wbufsize = 65536   # status line, headers and body leave in one write (flushed per request)

    def setup(self):
        # Without TCP_NODELAY a response split over two segments waits for the peer's delayed ACK
        # (40 ms a request on Linux).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
        with STATE.lock:
            STATE.connections += 1

    def log_message(self, fmt, *a):
        if ARGS.verbose:
            sys.stderr.write("receiver: %s %s\n" % (self.address_string(), fmt % a))

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise Rejection(411, "Content-Length required")
        n = int(length)
        if n > ARGS.max_request_bytes:
            self.close_connection = True
            raise Rejection(413, "request body of %d bytes exceeds %d" % (n, ARGS.max_request_bytes))
        return self.rfile.read(n)

    def send_json(self, status, obj, extra_headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, str(v))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def send_fault(self, rule, status, why=None):
        headers = dict(rule.headers)
        if rule.retry_after is not None:
            headers["Retry-After"] = rule.retry_after
        if rule.body is not None:
            data = str(rule.body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, str(v))
            self.end_headers()
            self.wfile.write(data)
        else:
            self.send_json(status, {"error": why or "injected fault", "status": status}, headers)

    def drop(self):
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self):
        body = b'{"error":"use POST"}'
        self.send_response(405)
        self.send_header("Allow", "POST")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        STATE.enter()
        try:
            self.handle_post()
        finally:
            STATE.leave()

    def handle_post(self):
        h = self.headers
        rec = {"time": None, "path": self.path, "status": None, "batch_id": None,
               "idempotency_key": h.get("Idempotency-Key"), "token": None, "events": 0,
               "compressed_bytes": 0, "accepted": False, "reason": None, "fault": False,
               "peer": self.client_address[0]}
        auth = h.get("Authorization")
        if auth is not None:
            rec["token"] = auth[7:] if auth.startswith("Bearer ") else auth
        if CLIENT_CERT and hasattr(self.connection, "getpeercert"):
            cert = self.connection.getpeercert() or {}
            rec["client_cn"] = next((v for rdn in cert.get("subject", ()) for k, v in rdn
                                     if k == "commonName"), None)
        try:
            raw = self.read_body()
        except Rejection as e:
            rec.update(time=time.time(), status=e.status, reason=e.reason)
            STATE.record_request(rec)
            self.send_json(e.status, {"error": e.reason})
            return
        except (ValueError, OSError) as e:
            rec.update(time=time.time(), status=0, reason="bad request body: %s" % e)
            STATE.record_request(rec)
            self.drop()
            return
        rec["time"] = time.time()
        rec["compressed_bytes"] = len(raw)

        # Faults that make the server "down", before any validation.
        rule, _ = STATE.pick_rule(False)
        if rule is not None and not rule.after_accept:
            rec["fault"] = True
            if rule.delay_s:
                time.sleep(rule.delay_s)
            if rule.drop:
                rec.update(status=0, reason="fault: dropped")
                STATE.record_request(rec)
                self.drop()
                return
            if rule.status:
                rec.update(status=rule.status, reason="fault: injected status")
                STATE.record_request(rec)
                self.send_fault(rule, rule.status)
                return
            rule = None   # a pure delay: answer as usual

        try:
            batch_id, discoveries, body = self.validate(raw, rec)
            crule, why = STATE.pick_rule(True, body)
            if crule is not None:
                status = crule.status or (400 if why.startswith("batch contains") else 413)
                rec.update(status=status, reason="fault: " + why, batch_id=batch_id, fault=True,
                           events=len(discoveries))
                STATE.record_request(rec)
                self.send_fault(crule, status, why)
                return
        except Rejection as e:
            rec.update(status=e.status, reason=e.reason)
            STATE.record_request(rec)
            self.send_json(e.status, {"error": e.reason})
            return

        rec.update(status=200, accepted=True, batch_id=batch_id, events=len(discoveries))
        STATE.record_batch(batch_id, discoveries, len(raw), len(body), body,
                           {"received_at": rec["time"], "idempotency_key": rec["idempotency_key"],
                            "token": rec["token"], "path": self.path})
        if rule is not None:   # after_accept: the batch is in, now the answer goes wrong
            rec["fault"] = True
            if rule.delay_s:
                time.sleep(rule.delay_s)
            if rule.drop:
                rec.update(status=0, reason="fault: dropped after accept")
                STATE.record_request(rec)
                self.drop()
                return
            if rule.status:
                rec.update(status=rule.status, reason="fault: injected status after accept")
                STATE.record_request(rec)
                self.send_fault(rule, rule.status)
                return
        STATE.record_request(rec)
        self.send_json(200, {"status": "accepted", "batch_id": batch_id, "received": len(discoveries)})

    def validate(self, raw, rec):
        h = self.headers
        tokens = read_tokens(ARGS)
        if tokens is not None:
            auth = h.get("Authorization")
            if auth is None or not auth.startswith("Bearer "):
                raise Rejection(401, "missing bearer token")
            if auth[7:] not in tokens:
                raise Rejection(401, "wrong bearer token")
        ua = h.get("User-Agent") or ""
        if not ua.startswith("transmitter/"):
            raise Rejection(400, "User-Agent %r does not start with transmitter/" % ua)
        ctype = (h.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Rejection(415, "Content-Type %r is not application/json" % h.get("Content-Type"))
        cenc = (h.get("Content-Encoding") or "").strip().lower()
        if cenc != "gzip":
            raise Rejection(415, "Content-Encoding %r is not gzip" % h.get("Content-Encoding"))
        key = h.get("Idempotency-Key")
        if not key:
            raise Rejection(400, "Idempotency-Key missing")
        try:
            d = zlib.decompressobj(31)
            body = d.decompress(raw, ARGS.max_body_bytes + 1)
            if len(body) > ARGS.max_body_bytes:
                raise Rejection(413, "uncompressed body exceeds %d bytes" % ARGS.max_body_bytes)
            body += d.flush()
            if not d.eof:
                raise Rejection(400, "truncated gzip stream")
            if d.unused_data:
                raise Rejection(400, "data after the end of the gzip stream")
        except zlib.error as e:
            raise Rejection(400, "body is not gzip: %s" % e) from None
        light = ARGS.light and self.light_parse(body)
        if light:
            batch_id, discoveries = light
        else:
            batch_id, discoveries = self.full_parse(body)
        rec["batch_id"] = batch_id if type(batch_id) is str else None
        if type(batch_id) is not str:
            raise Rejection(400, "batch_id missing or not a string")
        try:
            u = uuid.UUID(batch_id)
        except ValueError:
            raise Rejection(400, "batch_id %r is not a UUID" % batch_id) from None
        if len(batch_id) != 36 or str(u) != batch_id.lower():
            raise Rejection(400, "batch_id %r is not in canonical 8-4-4-4-12 form" % batch_id)
        if ARGS.uuid_version and u.version != ARGS.uuid_version:
            raise Rejection(400, "batch_id %s is UUID version %s, not %d" % (batch_id, u.version,
                                                                              ARGS.uuid_version))
        if key != batch_id:
            raise Rejection(400, "Idempotency-Key %r differs from batch_id %r" % (key, batch_id))
        return batch_id, discoveries, body

    @staticmethod
    def full_parse(body):
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise Rejection(400, "body is not JSON: %s" % e) from None
        if type(doc) is not dict:
            raise Rejection(400, "body is not a JSON object")
        extra = set(doc) - {"batch_id", "discoveries"}
        if extra:
            raise Rejection(400, "unexpected envelope keys: %s" % ", ".join(sorted(extra)))
        discoveries = doc.get("discoveries")
        if type(discoveries) is not list:
            raise Rejection(400, "discoveries missing or not an array")
        if not discoveries:
            raise Rejection(400, "discoveries is empty")
        for i, ev in enumerate(discoveries):
            if type(ev) is not dict:
                raise Rejection(400, "discoveries[%d] is not an object" % i)
        return doc.get("batch_id"), discoveries

    @staticmethod
    def light_parse(body):
        """--light: ids and published_at_us of publish.c events found by regex, without parsing the JSON
        (6x faster on 1000-event batches). None (then a full parse) for bodies that do not look so."""
        b = body.strip()
        if not (b.startswith(b"{") and b.endswith(b"}")):
            return None
        m = RE_BATCH_ID.search(body)
        ids = RE_EVENT_ID.findall(body)
        if m is None or not ids:
            return None
        pubs = RE_PUBLISHED.findall(body)
        try:
            ids = [i.decode() for i in ids]
            batch_id = m.group(1).decode()
        except UnicodeDecodeError:
            return None
        if len(pubs) == len(ids):
            return batch_id, list(zip(ids, map(int, pubs)))
        return batch_id, [(i, None) for i in ids]


class AdminHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "transmitter-test-receiver-admin/1"
    sys_version = ""
    wbufsize = 65536

    def setup(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, fmt, *a):
        if ARGS.verbose:
            sys.stderr.write("receiver-admin: %s\n" % (fmt % a))

    def reply(self, status, obj, ctype="application/json"):
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        since = float(q.get("since", 0) or 0)
        if url.path == "/counts":
            return self.reply(200, STATE.counts())
        if url.path == "/health":
            return self.reply(200, {"status": "ok"})
        if url.path == "/events":
            with STATE.lock:
                if q.get("detail"):
                    b, first, lat = STATE.batches, STATE.event_batch, STATE.event_latency
                    out = [{"id": k, "count": n, "batch_id": b[first[k]]["batch_id"],
                            "received_at": b[first[k]]["received_at"], "latency_ms": lat.get(k)}
                           for k, n in STATE.event_count.items()]
                    return self.reply(200, {"events": out})
                return self.reply(200, {"ids": list(STATE.event_count),
                                        "duplicates": {k: n for k, n in STATE.event_count.items()
                                                       if n > 1}})
        if url.path == "/batches":
            with STATE.lock:
                return self.reply(200, {"batches": [b for b in STATE.batches
                                                    if b["received_at"] >= since]})
        if url.path == "/requests":
            with STATE.lock:
                return self.reply(200, {"requests": [r for r in STATE.requests if r["time"] >= since]})
        if url.path == "/latency":
            with STATE.lock:
                values = sorted(STATE.latencies)
            out = {"count": len(values)}
            if values:
                out.update(min_ms=round(values[0], 3), p50_ms=percentile(values, 50),
                           p90_ms=percentile(values, 90), p99_ms=percentile(values, 99),
                           max_ms=round(values[-1], 3), mean_ms=round(sum(values) / len(values), 3))
            return self.reply(200, out)
        if url.path == "/faults":
            with STATE.lock:
                return self.reply(200, {"faults": [r.describe() for r in STATE.rules]})
        if url.path == "/body":
            with STATE.lock:
                body = STATE.bodies.get(q.get("batch_id", ""))
            if body is None:
                return self.reply(404, {"error": "no such batch body (start with --keep-bodies)"})
            return self.reply(200, body)
        return self.reply(404, {"error": "not found"})

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if url.path == "/reset":
            STATE.reset()
            return self.reply(200, {"status": "reset"})
        if url.path == "/faults":
            try:
                spec = json.loads(raw or b"{}")
                if type(spec) is not dict:
                    raise ValueError("fault must be a JSON object")
                rules = STATE.add_rule(spec)
            except ValueError as e:
                return self.reply(400, {"error": str(e)})
            return self.reply(200, {"faults": rules})
        return self.reply(404, {"error": "not found"})


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if ARGS.verbose:
            super().handle_error(request, client_address)


class TLSServer(QuietServer):
    """TLS handshake in the connection's own thread, so a slow or failing client never blocks accept()."""

    ssl_context = None

    def finish_request(self, request, client_address):
        request.settimeout(ARGS.idle_timeout_s)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            with STATE.lock:
                STATE.tls_failures += 1
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


def main():
    global ARGS, STATE, CLIENT_CERT
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    p.add_argument("--admin-port", type=int, default=0, help="plain HTTP on 127.0.0.1; 0: a free port")
    p.add_argument("--cert", help="server certificate (PEM); without it plain HTTP")
    p.add_argument("--key", help="server key (PEM)")
    p.add_argument("--client-ca", help="require client certificates issued by this CA (mTLS)")
    p.add_argument("--token", help="expected bearer token")
    p.add_argument("--token-file", help="file of accepted tokens (one a line), re-read on each request")
    p.add_argument("--uuid-version", type=int, default=0, help="require this UUID version for batch_id")
    p.add_argument("--max-request-bytes", type=int, default=64 << 20)
    p.add_argument("--max-body-bytes", type=int, default=256 << 20,
                   help="limit on the decompressed body (413 beyond)")
    p.add_argument("--idle-timeout-s", type=float, default=300.0)
    p.add_argument("--keep-bodies", action="store_true", help="keep decompressed bodies for GET /body")
    p.add_argument("--batch-ids", action="store_true",
                   help="keep each accepted batch's event ids, in /batches as event_ids (the soak's ledger check)")
    p.add_argument("--light", action="store_true",
                   help="benchmarks: find event ids by regex instead of parsing the JSON (publish.c events)")
    p.add_argument("--state-file", help="write {pid, port, admin_port, scheme} as JSON here")
    p.add_argument("--pid-file")
    p.add_argument("--quiet", action="store_true", default=True, help="no per-request logs (default)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    ARGS = p.parse_args()
    STATE = State(ARGS.keep_bodies, ARGS.batch_ids)
    CLIENT_CERT = bool(ARGS.client_ca)

    if ARGS.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(ARGS.cert, ARGS.key)
        if ARGS.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(ARGS.client_ca)
        TLSServer.ssl_context = ctx
        server_cls, scheme = TLSServer, "https"
    else:
        if ARGS.client_ca:
            p.error("--client-ca needs --cert")
        server_cls, scheme = QuietServer, "http"
    if ":" in ARGS.host:
        server_cls = type("V6" + server_cls.__name__, (server_cls,), {"address_family": socket.AF_INET6})
    dest = server_cls((ARGS.host, ARGS.port), DestinationHandler)
    admin = QuietServer(("127.0.0.1", ARGS.admin_port), AdminHandler)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for srv in (dest, admin):
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    info = {"pid": os.getpid(), "port": dest.server_address[1], "admin_port": admin.server_address[1],
            "scheme": scheme, "host": ARGS.host}
    if ARGS.pid_file:
        with open(ARGS.pid_file + ".tmp", "w") as f:
            f.write("%d\n" % os.getpid())
        os.replace(ARGS.pid_file + ".tmp", ARGS.pid_file)
    if ARGS.state_file:
        with open(ARGS.state_file + ".tmp", "w") as f:
            json.dump(info, f)
            f.write("\n")
        os.replace(ARGS.state_file + ".tmp", ARGS.state_file)
    print(json.dumps(info), flush=True)
    while not stop.wait(1.0):
        pass
    dest.server_close()
    admin.server_close()


ARGS = None
STATE = None
CLIENT_CERT = False

if __name__ == "__main__":
    main()
