#!/usr/bin/env python3
"""Sends hand-made batches to a destination the way transmitter does (architecture §3): for poking
the test receiver by hand, in tests, and to measure its requests/s.

  post_batch.py --url https://127.0.0.1:PORT/v1/discovery --cacert ca.pem --token demo-token \
                --events 100 --requests 1000 --concurrency 2

Every batch is {"batch_id": <uuid5 over its event ids>, "discoveries": [...]}, gzip-compressed, with
Authorization, Content-Type, Content-Encoding, Idempotency-Key and User-Agent: transmitter/test.
Connections are kept alive (one per worker thread). Bodies are built before the clock starts.
Prints one JSON line: requests, seconds, requests_per_s, events_per_s, by_status, errors.
Exit status: 0 if every response had the --expect status (default 200), else 1.

Overrides for negative tests: --no-token, --user-agent, --content-type, --content-encoding (identity
sends the body uncompressed), --idempotency-key, --batch-id, --raw FILE (send FILE's bytes as the
body, unchanged), --marker STRING --marker-every K (put STRING into data.note of every Kth event),
--id-prefix (event ids PREFIX-000001...; same prefix twice = the same events again), --verbose
(print each response).
"""

import argparse
import gzip
import random
import socket
import http.client
import json
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

BATCH_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")  # RFC 4122 URL namespace


PKGS = ["openssl", "libc6", "systemd", "nginx", "curl", "zlib1g", "libpq5", "bash", "tzdata", "sudo"]


def make_event(eid, marker=None):
    r = random.Random(eid)
    data = {"kind": "server", "hostname": "host-%s-%08x.dc1.example.com" % (eid, r.getrandbits(32)),
            "ip_addresses": ["10.%d.%d.%d" % (r.randrange(256), r.randrange(256), r.randrange(256))],
            "packages": [{"name": r.choice(PKGS), "version": "%d.%d.%d-%d" % (
                r.randrange(10), r.randrange(30), r.randrange(100), r.randrange(1, 9))}
                for _ in range(r.randrange(4, 30))],
            "published_at_us": int(time.time() * 1e6)}
    if marker:
        data["note"] = marker
    return {"specversion": "1.0", "id": eid, "source": "/discovery/post-batch",
            "type": "com.example.discovery.server.approved", "time": "2024-01-01T00:00:00Z",
            "datacontenttype": "application/json", "data": data}


def build(args, n):
    """Returns [(batch_id, body bytes)] for request n (0-based)."""
    if args.raw:
        with open(args.raw, "rb") as f:
            return args.batch_id or str(uuid.uuid4()), f.read()
    ids, events = [], []
    for k in range(args.events):
        i = n * args.events + k + 1
        eid = "%s-%06d" % (args.id_prefix, i)
        ids.append(eid)
        events.append(make_event(eid, args.marker if args.marker and i % args.marker_every == 0 else None))
    batch_id = args.batch_id or str(uuid.uuid5(BATCH_NS, "\n".join(ids)))
    body = json.dumps({"batch_id": batch_id, "discoveries": events}, separators=(",", ":")).encode()
    if args.content_encoding == "gzip":
        body = gzip.compress(body, compresslevel=args.level)
    return batch_id, body


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--cacert")
    p.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    p.add_argument("--token", default="demo-token")
    p.add_argument("--no-token", action="store_true")
    p.add_argument("--events", type=int, default=100)
    p.add_argument("--requests", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--id-prefix", default="post")
    p.add_argument("--marker")
    p.add_argument("--marker-every", type=int, default=1)
    p.add_argument("--level", type=int, default=6)
    p.add_argument("--user-agent", default="transmitter/test")
    p.add_argument("--content-type", default="application/json")
    p.add_argument("--content-encoding", default="gzip")
    p.add_argument("--idempotency-key", help="default: the batch id; '' to omit the header")
    p.add_argument("--batch-id")
    p.add_argument("--raw")
    p.add_argument("--expect", type=int, default=200)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()

    url = urllib.parse.urlsplit(args.url)
    path = url.path or "/"
    if url.scheme == "https":
        ctx = ssl.create_default_context(cafile=args.cacert)
        if args.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    bodies = [build(args, n) for n in range(args.requests)]

    lock = threading.Lock()
    by_status, errors = {}, []
    next_req = [0]
    events_ok = [0]

    def connect():
        if url.scheme == "https":
            c = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=args.timeout, context=ctx)
        else:
            c = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=args.timeout)
        c.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c

    def worker():
        conn = connect()
        while True:
            with lock:
                n = next_req[0]
                if n >= len(bodies):
                    break
                next_req[0] += 1
            batch_id, body = bodies[n]
            headers = {"Content-Type": args.content_type, "User-Agent": args.user_agent}
            if args.content_encoding != "identity":
                headers["Content-Encoding"] = args.content_encoding
            if not args.no_token:
                headers["Authorization"] = "Bearer " + args.token
            key = batch_id if args.idempotency_key is None else args.idempotency_key
            if key:
                headers["Idempotency-Key"] = key
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                text = resp.read()
                status = resp.status
                if args.verbose:
                    print("%d %s %s" % (status, dict(resp.getheaders()).get("Retry-After", ""),
                                        text.decode(errors="replace")), file=sys.stderr)
            except (OSError, http.client.HTTPException) as e:
                status = type(e).__name__
                conn.close()
                conn = connect()
                with lock:
                    errors.append(str(e) or status)
            with lock:
                by_status[str(status)] = by_status.get(str(status), 0) + 1
                if status == 200:
                    events_ok[0] += args.events
        conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(max(1, args.concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    out = {"requests": len(bodies), "events_per_request": args.events, "seconds": round(secs, 3),
           "requests_per_s": round(len(bodies) / secs, 1) if secs > 0 else None,
           "events_per_s": round(events_ok[0] / secs, 1) if secs > 0 else None,
           "bytes_per_request": round(sum(len(b) for _, b in bodies) / max(1, len(bodies))),
           "by_status": by_status, "errors": errors[:5]}
    print(json.dumps(out))
    return 0 if by_status.get(str(args.expect), 0) == len(bodies) else 1


if __name__ == "__main__":
    sys.exit(main())
