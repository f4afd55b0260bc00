#!/usr/bin/env python3
"""A slow DNS server for the database's host name (architecture §11: the loop never waits on the
network). libpq looks host names up with a blocking getaddrinfo() inside PQconnectPoll(); the
daemon must look them up elsewhere, so /health answers within 1 s while every lookup takes
LOOKUP_S, at start and at each reconnect. Then a name the DNS does not know: /ready says why,
the service goes on. Every event is delivered and tracked.

Needs root (a mount namespace with its own /etc/resolv.conf, and port 53 on a 127.x address)."""

import os
import subprocess
import time

from harness import TRANSMITTER_BIN, HealthProbe, TestFailure, check, log, main, wait_for
from slow_dns import SlowDns

LOOKUP_S = 3
NAME = "db.transmitter.test"


def body(case):
    if os.geteuid() != 0 or subprocess.run(["unshare", "--mount", "true"], stderr=subprocess.DEVNULL).returncode:
        print("SKIP: needs root and mount namespaces (its own /etc/resolv.conf, port 53)")
        return
    url = case.base_settings["TRANSMITTER_DATABASE_URL"]
    scheme, rest = url.split("://", 1)
    userinfo, hostport_path = rest.rsplit("@", 1)
    hostport, path = hostport_path.split("/", 1)
    port = hostport.rsplit(":", 1)[1]
    case.declare()
    # The schema first, by the IP address: DATABASE_MIGRATE=true migrates before the event loop
    # runs (before READY=1), where a slow lookup only delays the start.
    r = subprocess.run([TRANSMITTER_BIN, "--config", "/dev/null", "--migrate"], env=case.transmitter().environment(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise TestFailure(f"transmitter --migrate: {r.stdout}")
    with SlowDns(case.workdir, {NAME: "127.0.0.1"}, LOOKUP_S) as dns:
        t = case.transmitter(DATABASE_URL=f"{scheme}://{userinfo}@{NAME}:{port}/{path}", BATCH_SIZE=50,
                             BATCH_INTERVAL_S=1, CONNECT_TIMEOUT_S=10, DATABASE_MIGRATE="false")
        t.wrapper = dns.wrapper()
        t0 = time.monotonic()
        t.start()
        with HealthProbe(t.base + "/health", interval=0.1, timeout=10) as probe:
            t.wait_ready(timeout=30)
            log(f"ready {time.monotonic() - t0:.1f} s after start (each lookup takes {LOOKUP_S} s)")
            check(any(q[0] == NAME for q in dns.queries), f"the daemon asked the test DNS server for {NAME}")
            ids = case.publish(2000, prefix="dns")
            case.wait_for_count(500, 60)

            # The database drops the connection: the reconnect looks the name up again, slowly.
            mark = t.log_offset()
            n_queries = len(dns.queries)
            case.devenv.psql_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   f"WHERE datname = '{case.database}' AND application_name = 'transmitter'")
            t.wait_log(r"Connection to PostgreSQL regained", 30, since=mark)
            check(len(dns.queries) > n_queries, "the reconnect looked the name up again")
            case.wait_delivered(ids, timeout=120)
            case.wait_settled(timeout=60)
        fig = case.account(ids, name="fault_dns")
        check(fig["dead_letter_queue"] == 0, "nothing dead-lettered")
        rows = case.sql("SELECT status, count(*), sum(item_count) FROM transmitter.batches GROUP BY status")
        log(f"ledger: {rows}")
        check(sum(int(r[2]) for r in rows if r[0] == "sent") >= len(ids), "every event is in a 'sent' row")
        slow = probe.failures(limit=1.0)
        log(f"/health: {len(probe.samples)} probes, worst {probe.worst() * 1000:.0f} ms")
        check(not slow, f"/health answered within 1 s throughout the slow lookups ({len(slow)} slow: {slow[:3]})")
        check(t.stop() == 0, "SIGTERM: exit status 0")

        # A name the DNS does not know: not ready, with the reason; the API keeps answering.
        unknown = "nx." + NAME
        t = case.another_transmitter("nxdomain", DATABASE_URL=f"{scheme}://{userinfo}@{unknown}:{port}/{path}",
                                     DATABASE_MIGRATE="false")
        t.wrapper = dns.wrapper()
        t.start()
        with HealthProbe(t.base + "/health", interval=0.1, timeout=10) as probe:
            t.wait_log(rf'could not translate host name "{unknown}" to address', 30)
            status, ready = t.ready()
            check(status == 503 and ready["database"] == "disconnected",
                  f"/ready: 503, database disconnected ({ready.get('reasons')})")
            wait_for(lambda: len(probe.samples) >= 20, 10, "20 probes")
        check(not probe.failures(limit=1.0), f"/health within 1 s (worst {probe.worst() * 1000:.0f} ms)")
        check(t.stop() == 0, "SIGTERM: exit status 0")


if __name__ == "__main__":
    main("fault_dns", body)
